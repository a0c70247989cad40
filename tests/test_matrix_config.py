"""The matrix configuration model (issue 15): every option declared once in ``MatrixConfig``, with help; ``bench run``'s
flags made from it; flags over the config file; one-line messages naming the flag or the config line."""

from __future__ import annotations

import typing

import pytest

from bench.cli.app import build_parser, main
from bench.cli.run import matrix_from_args, matrix_values
from bench.config.matrix import Matrix, expand
from bench.config.model import MatrixConfig, check_flag, matrix_flags
from bench.core import registry
from bench.core.errors import BenchError

BASE = ["--methods", "dense,magnitude", "--tasks", "sst2", "--sparsities", "0.5"]


def run_args(*argv: str):
    return build_parser().parse_args(["run", *argv])


def test_every_option_has_help_and_every_flag_is_in_bench_run_help(capsys):
    from pydantic import BaseModel

    from bench.config.messages import unwrap

    def is_model(kind) -> bool:
        return isinstance(kind, type) and issubclass(kind, BaseModel)

    kinds = {name: unwrap(f.annotation) for name, f in MatrixConfig.model_fields.items()}
    for model in [MatrixConfig, *(kind for kind in kinds.values() if is_model(kind))]:
        for name, declared in model.model_fields.items():
            assert declared.description, f"{model.__name__}.{name} has no help text"
    flags = matrix_flags()
    assert len({f.name for f in flags}) == len(flags)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for flag in flags:
        assert flag.name in help_text and " ".join(flag.help.split()) in help_text, flag.name
    flagged = {f.path[0] for f in flags}
    plain = {name for name, kind in kinds.items() if typing.get_origin(kind) is not dict and not is_model(kind)}
    assert plain <= flagged, "every option that is not a mapping is also a flag"


def test_flags_override_the_file_and_name_themselves(tmp_path):
    config = tmp_path / "m.yaml"
    config.write_text("methods: [dense]\ntasks: [sst2]\nsparsities: [0.5]\nbudget: {epochs: 2, batch_size: 8}\n"
                      "splits: {'*': {train_split: 'train[:10]'}}\nseeds: null\n")  # fmt: skip
    matrix = matrix_from_args(run_args("--config", str(config), "--methods", "magnitude", "--epochs", "3",
                                       "--eval-split", "validation[:5]"))  # fmt: skip
    assert matrix.methods == ["magnitude"] and matrix.seeds == [0], "null is the default"
    assert matrix.budget.given() == {"epochs": 3.0, "batch_size": 8}
    assert matrix.splits["*"].given() == {"train_split": "train[:10]", "eval_split": "validation[:5]"}
    _, sources = matrix_values(run_args("--config", str(config), "--epochs", "3"))
    assert sources.flags == {("budget", "epochs"): "--epochs"} and sources.replaced == {("budget", "epochs"): 2}
    with pytest.raises(BenchError, match=r"^--epochs: expected a number > 0 and <= 1000, got 0.0$"):
        matrix_from_args(run_args("--config", str(config), "--epochs", "0"))


def test_a_bad_file_value_is_refused_at_its_line_even_when_a_flag_replaces_it(tmp_path):
    config = tmp_path / "m.yaml"
    config.write_text("methods: [dense]\ntasks: [sst2]\nsparsities: [0.5]\nbudget:\n  epochs: -1\n")
    with pytest.raises(BenchError, match=f"bad value in config {config} at line 5: budget.epochs: expected a number"):
        matrix_from_args(run_args("--config", str(config), "--epochs", "2"))


def test_an_unknown_key_is_refused_even_when_null(tmp_path):
    config = tmp_path / "m.yaml"
    config.write_text("methods: [dense]\ntasks: [sst2]\nsparsities: [0.5]\nsparsity:\n")
    with pytest.raises(BenchError, match="unknown key 'sparsity' in config .* at line 4. Did you mean 'sparsities'"):
        matrix_from_args(run_args("--config", str(config)))


def test_list_items_and_nested_keys_name_their_own_line(tmp_path):
    config = tmp_path / "m.yaml"
    config.write_text("methods: [dense]\ntasks: [sst2]\nsparsities:\n  - 0.5\n  - 1.5\n")
    with pytest.raises(BenchError, match="at line 5: sparsities: sparsity must be a number in \\[0, 1\\), got 1.5"):
        matrix_from_args(run_args("--config", str(config)))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sparsities": [1.5]}, "sparsities: sparsity must be a number in [0, 1), got 1.5"),
        ({"sparsities": [0.5], "seeds": [True]}, "seeds: True is not an integer"),
        ({"sparsities": [0.5], "budget": {"epochs": True}}, "budget.epochs: expected a number > 0 and <= 1000, got "
                                                            "True (bool)"),  # fmt: skip
        ({"sparsities": [0.5], "distillation": {"alpha_ce": -1}}, "distillation.alpha_ce: expected a number >= 0 "
                                                                  "and <= 100, got -1"),  # fmt: skip
        ({"sparsities": [0.5], "search_space": {"warmup_ratio": {"log": True, "low": 0}}},
         "search_space.warmup_ratio.low: a log range needs low > 0, got 0"),  # fmt: skip
        ({"sparsities": [0.5], "colour": 1}, "unknown key 'colour'"),
        ({"sparsities": [0.5], "trials": "3"}, "trials: expected an integer >= 0 and <= 10000, got '3' (str)"),
    ],
)
def test_python_api_errors_are_one_line_without_pydantic_text(fields, message):
    with pytest.raises(BenchError) as err:
        Matrix(methods=["dense"], tasks=["sst2"], **fields)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert "Input should" not in text and "pydantic" not in text and "validation error" not in text


def test_worker_flags_are_checked_like_the_fields():
    assert check_flag("lease_seconds", 60.0) == 60.0
    with pytest.raises(BenchError, match=r"^--lease-seconds: expected a number > 0 and <= 86400, got -5.0$"):
        check_flag("lease_seconds", -5.0)
    with pytest.raises(BenchError, match="^--output: expected a non-empty string"):
        check_flag("output", " ")


def test_distillation_values_keep_their_type_so_cell_ids_do_not_change():
    matrix = Matrix(methods=["magnitude"], tasks=["sst2"], sparsities=[0.5], distill=True,
                    distillation={"temperature": 2})  # fmt: skip
    teacher, student = expand(matrix)
    assert teacher.method == registry.reference_method() == "dense"
    assert student.distillation["temperature"] == 2 and type(student.distillation["temperature"]) is int
    assert student.distillation["teacher"] == teacher.id


def test_reference_method_needs_exactly_one_method_that_prunes_nothing(monkeypatch):
    magnitude = registry.methods.get("magnitude")
    monkeypatch.setattr(magnitude, "prunes", False)
    with pytest.raises(BenchError, match="2 do \\(dense, magnitude\\)"):
        registry.reference_method()


def test_bench_run_bad_method_is_one_line_and_exit_2(capsys):
    assert main(["run", "--methods", "nope", "--tasks", "sst2", "--sparsities", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: --methods: unknown method 'nope'.") and err.count("\n") == 1
