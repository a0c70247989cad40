"""Matrix config files (YAML) with the same fields as ``bench run``'s flags, and the checks of every field.

Example::

    methods: [dense, magnitude, movement]    # or "all"
    tasks: [mnli, squad]
    sparsities: [0.5, 0.9]
    seeds: [0, 1]
    preset: quick
    model: sentence-transformers/all-MiniLM-L6-v2
    output: results/my-matrix
    budget: {epochs: 2}
    splits: {mnli: {train_split: "train[:4000]"}, "*": {eval_split: ...}}
    method_hparams: {movement: {mask_lr: 0.02}}
    distill: true
    trials: 8                      # HP-search trials per cell (0: off)
    search_space: {learning_rate: {low: 1.0e-5, high: 1.0e-4}, warmup_ratio: 0.1, mask_lr: {low: 0.005}}
    storage: postgresql://bench@db-host/bench   # default: sqlite:///OUTPUT/bench.db
    distillation: {temperature: 2.0, alpha_distil: 0.9, alpha_ce: 0.1}

A key given as ``null`` (or with no value) takes its default. Numbers may be written ``1e-5`` (read as a float, as
in YAML 1.2; plain PyYAML would read a string). Every bad value is refused with a :class:`BenchError` naming the
key and its line: a wrong type, a value out of range, an unknown name (with "did you mean"), a duplicated key.
:func:`check_field` is the one place that knows what each field accepts; :class:`bench.config.matrix.Matrix` runs the
same checks on values from flags or the Python API.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError

KEYS = (
    "methods", "tasks", "sparsities", "seeds", "preset", "model", "output", "budget", "splits",
    "method_hparams", "tracking_uri", "save_models", "measure_speed", "distill", "distillation", "trials", "timeout",
    "search_space", "storage", "lease_seconds",
)  # fmt: skip
REQUIRED = ("methods", "tasks", "sparsities")
SPLIT_KEYS = ("train_split", "eval_split")
RANGE_KEYS = ("low", "high", "log")
KIND_NAMES = {float: "a float", int: "an integer"}
MAX_SEED = 2**32  # numpy's seed range, exclusive

# Budget fields: (integer?, lowest allowed, lowest is allowed?, highest allowed or None). Every numeric field has an
# upper bound far above any sensible value, so that a typo (1e9 epochs, a batch of a million) fails before any work.
BUDGET_RULES: dict[str, tuple[bool, float, bool, float | None]] = {
    "epochs": (False, 0.0, False, 1000.0),
    "batch_size": (True, 1, True, 65536),
    "learning_rate": (False, 0.0, False, 1.0),
    "warmup_ratio": (False, 0.0, True, 1.0),
    "weight_decay": (False, 0.0, True, 1.0),
    "max_length": (True, 1, True, 8192),
    "doc_stride": (True, 0, True, 8192),
    "eval_batch_size": (True, 1, True, 65536),
}
MAX_TRIALS = 10_000
MAX_TIMEOUT = 30 * 24 * 3600.0  # seconds: 30 days per study
MAX_LEASE = 24 * 3600.0  # seconds: a claim is renewed every quarter of it
MAX_DISTILLATION = {"temperature": 100.0, "alpha_distil": 100.0, "alpha_ce": 100.0}
MAX_CONFIG_BYTES = 2**20  # a matrix config is a small YAML file


class FieldError(BenchError):
    """A bad value of one matrix field.

    Attributes:
        keys: where it sits, e.g. ``("budget", "epochs")`` or ``("sparsities", 1)`` (list positions are ints),
            used to find its line in a config file.
        problem: what is wrong, naming the value and what is valid.
    """

    def __init__(self, keys: tuple, problem: str):
        self.keys = tuple(keys)
        self.problem = problem
        label = ".".join(str(k) for k in self.keys if not isinstance(k, int) or isinstance(k, bool))
        super().__init__(f"{label}: {problem}")


# ---- the YAML loader ----------------------------------------------------------------------------------------
def _loader_class():
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        """SafeLoader that also reads ``1e-5`` (exponent without a dot) as a float, as YAML 1.2 does."""

    ConfigLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return ConfigLoader


def load_config(path: Path) -> dict[str, Any]:
    """Parse and check a matrix config file; keys given as null are left out (they take their defaults).

    Raises:
        BenchError: unreadable file, YAML syntax error (with its line), a top level that is not a mapping, a
            duplicated or unknown key (with its line), or a bad value (naming the key and its line).
    """
    import yaml

    path = config_file(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise BenchError(f"cannot read config {path}: {reason}") from err
    loader = _loader_class()
    try:
        node = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BenchError(f"malformed config {path}{where}: {getattr(err, 'problem', None) or err}") from err
    except RecursionError as err:
        raise BenchError(f"malformed config {path}: nested too deeply") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchError(f"config {path} must be a mapping of matrix fields, got {type(data).__name__}")
    lines: dict[tuple, int] = {}
    _collect_lines(node, (), lines, loader, path, set())
    out = {}
    for key, value in data.items():
        if key not in KEYS:
            from bench.core.registry import did_you_mean

            line = lines.get((key,), "?")
            raise BenchError(
                f"unknown key {key!r} in config {path} at line {line}.{did_you_mean(key, list(KEYS))} "
                f"Valid keys: {', '.join(KEYS)}"
            )
        try:
            checked = check_field(key, value)
        except FieldError as err:
            line = _line_of(lines, err.keys)
            raise BenchError(f"bad value in config {path} at line {line}: {err}") from None
        if checked is not None:
            out[key] = checked
    return out


def config_file(path: str | Path) -> Path:
    """``path`` if it names a readable regular file of at most :data:`MAX_CONFIG_BYTES`.

    Raises:
        BenchError: an empty path, a missing file or a dangling link, a folder, a device, pipe or socket (reading
            one would hang or never end), a file too large to be a matrix config.
    """
    if str(path).strip() in ("", "."):
        raise BenchError(f"--config: expected the path of a YAML file, got {str(path)!r}")
    path = Path(path)
    try:
        if path.is_symlink() and not path.exists():
            raise BenchError(f"cannot read config {path}: it is a dangling symbolic link (to {os.readlink(path)})")
        if not path.exists():
            raise BenchError(f"cannot read config {path}: no such file")
        if path.is_dir():
            raise BenchError(f"cannot read config {path}: it is a folder; give the path of a YAML file")
        if not path.is_file():
            raise BenchError(f"cannot read config {path}: not a regular file (a device, pipe or socket); give the "
                             "path of a YAML file")  # fmt: skip
        size = path.stat().st_size
    except OSError as err:
        raise BenchError(f"cannot read config {path}: {err.strerror or err}") from err
    if size > MAX_CONFIG_BYTES:
        raise BenchError(f"cannot read config {path}: it has {size} bytes; a matrix config is a small YAML file "
                         f"(at most {MAX_CONFIG_BYTES} bytes)")  # fmt: skip
    return path


def _collect_lines(node: Any, path: tuple, lines: dict, loader: type, source: Path, seen: set) -> None:
    """``{key path: line}`` of every mapping key and list item; a key given twice in one mapping is refused."""
    import yaml

    if id(node) in seen:  # an alias of a node already walked (possibly recursive)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = loader("").construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first:
                where = ".".join(str(k) for k in (*path, key))
                raise BenchError(
                    f"malformed config {source}: key {where!r} given twice, at lines {first[key]} and {line}"
                )
            first[key] = line
            lines[(*path, key)] = line
            _collect_lines(value_node, (*path, key), lines, loader, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _collect_lines(item, (*path, index), lines, loader, source, seen)


def _line_of(lines: dict[tuple, int], keys: tuple) -> int | str:
    for end in range(len(keys), 0, -1):
        if keys[:end] in lines:
            return lines[keys[:end]]
    return "?"


# ---- field checks ------------------------------------------------------------------------------------------
def check_field(key: str, value: Any) -> Any:
    """``value`` checked and normalized for matrix field ``key``; None for None (the field's default).

    Raises:
        FieldError: the value does not fit the field; the message names the key, the value and what is valid.
    """
    if value is None:
        if key in REQUIRED:
            raise FieldError((key,), "needs a value")
        return None
    try:
        return CHECKS[key](value)
    except FieldError:
        raise
    except BenchError as err:
        raise FieldError((key,), str(err)) from None


def parse_list(value: Any, kind: type, what: str) -> list:
    """``"0.5,0.9"`` or ``[0.5, 0.9]`` → ``[0.5, 0.9]`` of ``kind``.

    Raises:
        FieldError: an element that is not a ``kind`` (booleans refused; for ``int``, floats with a fraction too).
    """
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, list):
        items = [items]
    out = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, bool) or (kind is int and isinstance(item, float) and not item.is_integer()):
                raise ValueError
            out.append(kind(item))
        except (TypeError, ValueError, OverflowError):
            raise FieldError((what, index), f"{item!r} is not {KIND_NAMES.get(kind, kind.__name__)}") from None
    return out


def describe(value: Any) -> str:
    """``repr`` of a value with its type, shortened, for messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def is_number(value: Any, integer: bool = False) -> bool:
    """A finite int or float (an int where ``integer``); booleans are not numbers."""
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, numbers.Integral)
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _mapping(keys: tuple, value: Any, what: str = "a mapping") -> dict:
    if not isinstance(value, dict):
        raise FieldError(keys, f"expected {what}, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise FieldError(keys, f"keys must be names (strings), got {describe(key)}")
    return value


def _string(keys: tuple, value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise FieldError(keys, f"expected a non-empty string, got {describe(value)}")
    if "\x00" in value:
        raise FieldError(keys, f"contains a NUL character: {value!r}")
    return value


def _number(keys: tuple, value: Any, integer: bool = False, low: float | None = None, low_ok: bool = True,
            high: float | None = None) -> Any:  # fmt: skip
    kind = "an integer" if integer else "a number"
    bounds = ""
    if low is not None:
        bounds = f" {'>=' if low_ok else '>'} {_plain(low)}"
    if high is not None:
        bounds += f"{' and' if bounds else ''} <= {_plain(high)}"
    if not is_number(value, integer):
        raise FieldError(keys, f"expected {kind}{bounds}, got {describe(value)}")
    if (low is not None and (value < low or (value == low and not low_ok))) or (high is not None and value > high):
        raise FieldError(keys, f"expected {kind}{bounds}, got {value!r}")
    return value


def _plain(bound: float) -> str:
    """A bound as people write it: ``2592000``, not ``2.592e+06``; ``1e-05`` stays."""
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e15 else f"{bound:g}"


def _bool(keys: tuple, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError(keys, f"expected true or false, got {describe(value)}")
    return value


def _names(key: str, registry_name: str):
    def check(value: Any) -> list[str]:
        from bench.core import registry

        if isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    raise FieldError((key, index), f"expected a name, got {describe(item)}")
        elif not isinstance(value, str):
            raise FieldError((key,), f"expected a comma list or a list of names (or 'all'), got {describe(value)}")
        return getattr(registry, registry_name).resolve(value)

    return check


def check_sparsities(value: Any) -> list[float]:
    out = parse_list(value, float, "sparsities")
    for index, s in enumerate(out):
        if not 0.0 <= s < 1.0:
            raise FieldError(("sparsities", index), f"sparsity must be a number in [0, 1), got {s!r}")
    if not out:
        raise FieldError(("sparsities",), "no sparsity given; e.g. 0.5,0.9")
    if len(set(out)) != len(out):
        raise FieldError(("sparsities",), f"duplicate sparsities in the matrix: {out}")
    return out


def check_seeds(value: Any) -> list[int]:
    out = parse_list(value, int, "seeds")
    for index, seed in enumerate(out):
        if not 0 <= seed < MAX_SEED:
            raise FieldError(("seeds", index), f"a seed must be an integer in [0, 2**32), got {seed!r}")
    if not out:
        raise FieldError(("seeds",), "no seed given; e.g. 0,1")
    if len(set(out)) != len(out):
        raise FieldError(("seeds",), f"duplicate seeds in the matrix: {out}")
    return out


def check_budget_value(name: str, value: Any, keys: tuple | None = None) -> Any:
    """``value`` for Budget field ``name`` (see :data:`BUDGET_RULES`).

    Raises:
        FieldError: unknown field, wrong type or out of range.
    """
    keys = keys or ("budget", name)
    if name not in BUDGET_RULES:
        from bench.core.registry import unknown_name_message

        raise FieldError(keys, unknown_name_message("budget setting", str(name), sorted(BUDGET_RULES)))
    integer, low, low_ok, high = BUDGET_RULES[name]
    return _number(keys, value, integer=integer, low=low, low_ok=low_ok, high=high)


def check_budget(value: Any) -> dict[str, Any]:
    _mapping(("budget",), value)
    return {name: check_budget_value(name, v) for name, v in value.items()}


def check_splits(value: Any) -> dict[str, dict[str, str]]:
    from bench.core import registry

    _mapping(("splits",), value, "a mapping {task or '*': {train_split: ..., eval_split: ...}}")
    out = {}
    for task, splits in value.items():
        if task != "*":
            try:
                registry.tasks.entry(task)
            except BenchError as err:
                raise FieldError(("splits", task), f"{err} (or '*' for every task)") from None
        _mapping(("splits", task), splits, "a mapping {train_split: ..., eval_split: ...}")
        for key, split in splits.items():
            if key not in SPLIT_KEYS:
                raise FieldError(("splits", task, key), f"unknown key {key!r}; valid: {', '.join(SPLIT_KEYS)}")
            _string(("splits", task, key), split)
        out[task] = dict(splits)
    return out


def check_method_hparams(value: Any) -> dict[str, dict[str, Any]]:
    from bench.core import registry
    from bench.core.registry import unknown_name_message

    _mapping(("method_hparams",), value, "a mapping {method: {hyperparameter: value}}")
    for method, hparams in value.items():
        try:
            cls = registry.methods.get(method)
        except BenchError as err:
            raise FieldError(("method_hparams", method), str(err)) from None
        _mapping(("method_hparams", method), hparams, "a mapping {hyperparameter: value}")
        for name, item in hparams.items():  # one at a time first, to point at the bad one
            if name not in cls.defaults:
                valid = sorted(cls.defaults)
                message = unknown_name_message("hyperparameter", name, valid, f"hyperparameters of {method!r}")
                raise FieldError(("method_hparams", method, name), message)
            _instantiate(cls, {name: item}, ("method_hparams", method, name))
        _instantiate(cls, hparams, ("method_hparams", method))
    return value


def _instantiate(cls: type, hparams: dict[str, Any], keys: tuple) -> None:
    try:
        cls(0.5, **hparams)
    except (BenchError, TypeError, ValueError) as err:  # a plugin's own checks may raise the latter two
        raise FieldError(keys, str(err)) from None


def shared_knobs() -> set[str]:
    """Names the presets' searches vary for every method (Budget fields)."""
    from bench.config.presets import PRESETS

    return {name for preset in PRESETS.values() for name in preset["search"]["space"]}


def method_knobs() -> dict[str, Any]:
    """``{hyperparameter: the default of the first method that has it}`` over every registered method."""
    from bench.core import registry

    knobs: dict[str, Any] = {}
    for name in registry.methods.names():
        try:
            defaults = registry.methods.get(name).defaults
        except Exception:  # noqa: BLE001 - a broken plugin must not block the check
            continue
        for knob, default in defaults.items():
            knobs.setdefault(knob, default)
    return knobs


def check_search_space(value: Any) -> dict[str, Any]:
    from bench.core.method import hparam_problem
    from bench.core.registry import unknown_name_message

    _mapping(("search_space",), value, "a mapping {knob: value or {low, high, log}}")
    shared, own = shared_knobs(), method_knobs()
    known = sorted(shared | set(own))
    for name, spec in value.items():
        keys = ("search_space", name)
        if name not in shared and name not in own:
            raise FieldError(keys, unknown_name_message("search knob", name, known))
        if isinstance(spec, dict):
            check_range(keys, spec, integer=name in own and is_number(own[name], integer=True))
            if name in shared:  # each end within the knob's own bounds
                for end in ("low", "high"):
                    if end in spec:
                        check_budget_value(name, spec[end], (*keys, end))
        elif name in shared:
            check_budget_value(name, spec, keys)
        else:
            problem = hparam_problem(own[name], spec)
            if problem:
                raise FieldError(keys, f"a fixed value of {name!r} must be {problem}, got {describe(spec)}")
    return value


def check_range(keys: tuple, spec: dict, integer: bool = False) -> None:
    """A knob range ``{low, high, log}`` (each optional): numbers, low <= high, low > 0 when log."""
    _mapping(keys, spec)
    for key in spec:
        if key not in RANGE_KEYS:
            raise FieldError((*keys, key), f"a knob range takes {', '.join(RANGE_KEYS)}; got {key!r}")
    for key in ("low", "high"):
        if key in spec:
            _number((*keys, key), spec[key], integer=integer)
    if "log" in spec:
        _bool((*keys, "log"), spec["log"])
    if "low" in spec and "high" in spec and spec["low"] > spec["high"]:
        raise FieldError(keys, f"low ({spec['low']!r}) must not exceed high ({spec['high']!r})")
    if spec.get("log") and "low" in spec and spec["low"] <= 0:
        raise FieldError((*keys, "low"), f"a log range needs low > 0, got {spec['low']!r}")


def check_distillation(value: Any) -> dict[str, float]:
    from dataclasses import fields

    from bench.run.distillation import Distillation

    _mapping(("distillation",), value)
    valid = [f.name for f in fields(Distillation)]
    for key, item in value.items():
        if key not in valid:
            raise FieldError(("distillation", key), f"unknown setting {key!r}; valid: {', '.join(valid)}")
        _number(("distillation", key), item, high=MAX_DISTILLATION[key])
    Distillation(**value)  # lower bounds
    return value


CHECKS = {
    "methods": _names("methods", "methods"),
    "tasks": _names("tasks", "tasks"),
    "sparsities": check_sparsities,
    "seeds": check_seeds,
    "preset": lambda v: _preset(_string(("preset",), v)),
    "model": lambda v: _string(("model",), v),
    "output": lambda v: Path(_string(("output",), v)),
    "budget": check_budget,
    "splits": check_splits,
    "method_hparams": check_method_hparams,
    "tracking_uri": lambda v: _string(("tracking_uri",), v),
    "save_models": lambda v: _bool(("save_models",), v),
    "measure_speed": lambda v: _bool(("measure_speed",), v),
    "distill": lambda v: _bool(("distill",), v),
    "distillation": check_distillation,
    "trials": lambda v: _number(("trials",), v, integer=True, low=0, high=MAX_TRIALS),
    "timeout": lambda v: _number(("timeout",), v, low=0, low_ok=False, high=MAX_TIMEOUT),
    "search_space": check_search_space,
    "storage": lambda v: _string(("storage",), v),
    "lease_seconds": lambda v: _number(("lease_seconds",), v, low=0, low_ok=False, high=MAX_LEASE),
}


def _preset(name: str) -> str:
    from bench.config.presets import get_preset

    get_preset(name)
    return name
