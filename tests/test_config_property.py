"""Property test of the matrix-config parser: any config either gives valid cells or raises BenchError.

Random configs (a mix of valid values, wrong types, unknown keys and random strings, numbers, lists and mappings
for every known key, and now and then a file that is not YAML at all) go through the same path as
``bench run --config FILE`` up to the cells: ``matrix_from_args`` → ``expand``. No data, no training.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bench.cli.app import build_parser
from bench.cli.run import matrix_from_args
from bench.config.cell import Budget, Cell
from bench.config.matrix import expand
from bench.config.model import MatrixConfig
from bench.config.parts import BudgetOverrides
from bench.core import registry
from bench.core.errors import BenchError

KEYS = tuple(MatrixConfig.model_fields)


def rule(name: str) -> tuple[bool, float, bool, float | None]:
    """(integer?, lowest allowed, lowest is allowed?, highest allowed or None) of budget setting ``name``, read from
    its declaration in :class:`BudgetOverrides`."""
    declared = BudgetOverrides.model_fields[name]
    integer = "int" in str(declared.annotation) and "float" not in str(declared.annotation)
    limits = {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in declared.metadata
              if type(m).__name__ in ("Gt", "Ge", "Le")}  # fmt: skip
    low = limits.get("Gt", limits.get("Ge"))
    return integer, low, "Ge" in limits, limits.get("Le")


BUDGET_RULES = {name: rule(name) for name in BudgetOverrides.model_fields}


def is_number(value, integer: bool = False) -> bool:
    """A finite int or float (an int where ``integer``); booleans are not numbers."""
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


METHODS = registry.methods.names()
TASKS = registry.tasks.names()
DEFAULTS = {name: dict(registry.methods.get(name).defaults) for name in METHODS}
KNOBS = sorted({"learning_rate", "warmup_ratio", *(k for d in DEFAULTS.values() for k in d)})

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
numbers = st.one_of(st.integers(min_value=-3, max_value=300), st.floats(min_value=-1.0, max_value=10.0), st.floats())


def names(valid: list[str]):
    typo = st.sampled_from(valid).map(lambda n: n[:-1] or "x")
    name = st.one_of(st.sampled_from(valid), typo)
    return st.one_of(
        st.lists(st.sampled_from(valid), min_size=1, max_size=3, unique=True),
        st.lists(name, max_size=3),
        st.lists(name, min_size=1, max_size=3).map(",".join),
        st.just("all"),
        anything,
    )


def mapping_of(keys, values, max_size: int = 3):
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=8)), values, max_size=max_size)


def hparams_of(method: str):
    defaults = DEFAULTS[method]
    typed = {k: (st.sampled_from(["S", "L", "X"]) if isinstance(v, str) else numbers) for k, v in defaults.items()}
    known = st.fixed_dictionaries({}, optional={k: st.one_of(v, anything) for k, v in typed.items()})
    return st.one_of(known, mapping_of(sorted(defaults) or ["x"], anything))


knob_range = st.fixed_dictionaries(
    {}, optional={"low": numbers, "high": numbers, "log": st.one_of(st.booleans(), anything)}
)
split_spec = st.one_of(
    st.sampled_from(["train", "train[:48]", "validation[:10%]", "validation_matched", "bogus[:3]"]), anything
)

FIELDS = {
    "methods": names(METHODS),
    "tasks": names(TASKS),
    "sparsities": st.one_of(
        st.lists(st.floats(min_value=0.0, max_value=0.99), min_size=1, max_size=3),
        st.lists(numbers, max_size=3),
        st.lists(st.floats(min_value=0.0, max_value=0.99), min_size=1, max_size=3).map(lambda v: ",".join(map(str, v))),
        anything,
    ),
    "seeds": st.one_of(
        st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=3), st.lists(numbers), anything
    ),
    "preset": st.one_of(st.sampled_from(["quick", "paper", "quik"]), anything),
    "model": st.one_of(st.sampled_from(["some/model", "./local", ""]), anything),
    "output": st.one_of(st.sampled_from(["results/x", ""]), anything),
    "budget": st.one_of(mapping_of(sorted(BUDGET_RULES), st.one_of(numbers, anything)), anything),
    "splits": st.one_of(
        mapping_of([*TASKS, "*"], st.one_of(mapping_of(["train_split", "eval_split"], split_spec), anything)),
        anything,
    ),
    "method_hparams": st.one_of(
        st.sampled_from(METHODS).flatmap(lambda m: st.fixed_dictionaries({m: hparams_of(m)})), anything
    ),
    "tracking_uri": st.one_of(st.just("sqlite:///x.db"), anything),
    "experiment": st.one_of(st.just("my-experiment"), anything),
    "include_tasks": st.one_of(st.just("no/such/folder"), anything),
    "save_models": st.one_of(st.booleans(), anything),
    "measure_speed": st.one_of(st.booleans(), anything),
    "distill": st.one_of(st.booleans(), anything),
    "distillation": st.one_of(mapping_of(["temperature", "alpha_distil", "alpha_ce"], st.one_of(numbers, anything)),
                              anything),  # fmt: skip
    "trials": st.one_of(st.integers(min_value=-1, max_value=3), anything),
    "timeout": st.one_of(numbers, anything),
    "search_space": st.one_of(mapping_of(KNOBS, st.one_of(numbers, knob_range, anything)), anything),
    "storage": st.one_of(st.just("sqlite:///bench.db"), anything),
    "lease_seconds": st.one_of(numbers, anything),
    "execution": st.one_of(mapping_of(["executor", "ray_address", "cpus_per_cell", "gpus_per_cell"],
                                      st.one_of(st.sampled_from(["local", "ray", "dask", "head:6379"]), numbers,
                                                anything)), anything),  # fmt: skip
}

def typed_value(default):
    if isinstance(default, str):
        return st.sampled_from(["S", "L"])
    if isinstance(default, int):
        return st.integers(min_value=1, max_value=1000)
    return st.floats(min_value=1e-6, max_value=1e3)


def budget_value(name: str):
    integer, low, _, high = BUDGET_RULES[name]
    if integer:
        return st.integers(min_value=int(low), max_value=512)
    return st.floats(min_value=low, max_value=high if high is not None else 10.0, exclude_min=True)


def knob_value(name: str):
    if name in ("learning_rate", "warmup_ratio"):
        low_high = st.tuples(st.floats(1e-6, 1e-2), st.floats(1e-6, 1e-2)).map(sorted)
        return st.one_of(budget_value(name), low_high.map(lambda lh: {"low": lh[0], "high": lh[1]}))
    default = next(d[name] for d in DEFAULTS.values() if name in d)
    return typed_value(default)


VALID = {
    "methods": st.one_of(st.lists(st.sampled_from(METHODS), min_size=1, max_size=3, unique=True), st.just("all")),
    "tasks": st.lists(st.sampled_from(TASKS), min_size=1, max_size=2, unique=True).map(",".join),
    "sparsities": st.lists(st.floats(min_value=0.0, max_value=0.99), min_size=1, max_size=2, unique=True),
    "seeds": st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=1, max_size=2, unique=True),
    "preset": st.sampled_from(["quick", "paper"]),
    "model": st.just("some/model"),
    "output": st.just("results/x"),
    "budget": st.fixed_dictionaries({}, optional={k: budget_value(k) for k in BUDGET_RULES}),
    "splits": st.dictionaries(st.sampled_from([*TASKS, "*"]), st.fixed_dictionaries(
        {}, optional={"train_split": split_spec, "eval_split": split_spec}), max_size=2),  # fmt: skip
    "method_hparams": st.sampled_from(METHODS).flatmap(lambda m: st.fixed_dictionaries(
        {m: st.fixed_dictionaries({}, optional={k: typed_value(v) for k, v in DEFAULTS[m].items()})})),  # fmt: skip
    "tracking_uri": st.just("sqlite:///x.db"),
    "experiment": st.just("my-experiment"),
    "include_tasks": st.none(),  # a folder registers its tasks in the process; tests/test_yaml_tasks.py covers it
    "save_models": st.booleans(),
    "measure_speed": st.booleans(),
    "distill": st.booleans(),
    "distillation": st.fixed_dictionaries({}, optional={"temperature": st.floats(0.1, 5.0),
                                                        "alpha_distil": st.floats(0.0, 1.0)}),  # fmt: skip
    "trials": st.integers(min_value=0, max_value=3),
    "timeout": st.floats(min_value=1.0, max_value=100.0),
    "search_space": st.sampled_from(KNOBS).flatmap(lambda k: st.fixed_dictionaries({k: knob_value(k)})),
    "storage": st.just("sqlite:///bench.db"),
    "lease_seconds": st.floats(min_value=1.0, max_value=100.0),
    "execution": st.one_of(st.just({"executor": "local"}), st.fixed_dictionaries({"executor": st.just("ray")},
        optional={"ray_address": st.just("head:6379"), "cpus_per_cell": st.floats(0.5, 8.0),
                  "gpus_per_cell": st.floats(0.0, 2.0)})),  # fmt: skip
}
valid_configs = st.fixed_dictionaries(
    {k: VALID[k] for k in ("methods", "tasks", "sparsities")},
    optional={k: v for k, v in VALID.items() if k not in ("methods", "tasks", "sparsities")},
)
REQUIRED = st.fixed_dictionaries({k: FIELDS[k] for k in ("methods", "tasks", "sparsities")})


def one_bad(config: dict):
    """``config`` with one key set to a random (often wrong) value."""
    return st.sampled_from(KEYS).flatmap(lambda key: FIELDS[key].map(lambda value: {**config, key: value}))


configs = st.one_of(
    valid_configs,
    valid_configs.flatmap(one_bad),
    st.builds(lambda required, rest: {**required, **rest}, REQUIRED,
              st.fixed_dictionaries({}, optional={k: v for k, v in FIELDS.items()})),  # fmt: skip
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), anything, max_size=4),
    anything,
)
files = st.one_of(configs.map(lambda c: yaml.safe_dump(c, allow_unicode=True)), st.text(max_size=80))


def assert_valid(cell: Cell) -> None:
    """What the runner relies on in a cell."""
    assert isinstance(cell.model, str) and cell.model.strip()
    method = registry.methods.get(cell.method)
    assert cell.task["name"] in TASKS
    assert all(isinstance(cell.task[k], str) and cell.task[k] for k in ("train_split", "eval_split"))
    assert isinstance(cell.sparsity, float) and 0.0 <= cell.sparsity < 1.0
    assert isinstance(cell.seed, int) and not isinstance(cell.seed, bool) and 0 <= cell.seed < 2**32
    assert isinstance(cell.budget, Budget)
    for name, (integer, low, low_ok, high) in BUDGET_RULES.items():
        value = getattr(cell.budget, name)
        assert is_number(value, integer) and (value > low or (low_ok and value == low))
        assert high is None or value <= high
    method(cell.sparsity, **cell.method_hparams)  # the method takes its hyperparameters
    if cell.distillation is not None:
        assert all(is_number(v) for k, v in cell.distillation.items() if k != "teacher")
    if cell.search is not None:
        assert isinstance(cell.search["trials"], int) and cell.search["trials"] > 0
        for spec in cell.search["space"].values():
            if isinstance(spec, dict):
                assert spec["low"] <= spec["high"]
    again = Cell.from_dict(json.loads(cell.canonical_json()))
    assert again.id == cell.id, "the cell survives the queue's JSON round trip"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=files)
def test_random_configs_give_valid_cells_or_a_bench_error(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "matrix.yaml"
        path.write_text(text)
        args = build_parser().parse_args(["run", "--config", str(path)])
        try:
            cells = expand(matrix_from_args(args))
        except BenchError as err:
            assert str(err), "a BenchError says what is wrong"
            event(f"BenchError: {re.sub(r'/tmp/[^ :]*', 'FILE', str(err))[:45]}")
            return
    event("valid")
    assert cells, "a valid matrix has cells"
    for cell in cells:
        assert_valid(cell)
    assert len({c.id for c in cells}) == len(cells)


def test_the_strategies_reach_valid_matrices_too():
    """The property is not vacuous: a sample of the valid part of the space gives cells."""
    config = {"methods": ["dense", "movement"], "tasks": ["sst2"], "sparsities": [0.5], "budget": {"epochs": 1},
              "method_hparams": {"movement": {"mask_lr": 1}}, "trials": 2,
              "search_space": {"learning_rate": {"low": 1e-5}}}  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_text(yaml.safe_dump(config))
        cells = expand(matrix_from_args(build_parser().parse_args(["run", "--config", str(path)])))
    assert [c.method for c in cells] == ["dense", "movement"]
    for cell in cells:
        assert_valid(cell)
    assert not math.isnan(cells[1].method_hparams["mask_lr"])
