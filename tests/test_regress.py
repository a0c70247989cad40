"""``bench regress``: the comparison and the baseline merge (pure, no model), and the CLI end to end on a
shrunken matrix (real tokenizer and data from the Hub cache)."""

from __future__ import annotations

import copy
import json

import pytest

from bench.cli.app import main
from bench.core.errors import BenchError
from bench.results import regress
from bench.results import regress_baseline as baseline_file
from bench.run import regress_run
from tests.conftest import needs_minilm

TOLERANCES = {"accuracy": 1.0, "train_loss": 0.01, "encoder_sparsity": 0.002}


def record(method="magnitude", task="sst2", sparsity=0.5, status="finished", accuracy=60.0, loss=0.5, sp=None):
    cell = {"method": method, "task": {"name": task}, "sparsity": sparsity}
    rec = {"id": f"{method}-{task}-{sparsity}", "cell": cell, "status": status}
    if status == "finished":
        rec.update(metrics={"accuracy": accuracy}, train_loss=loss, sparsity={"encoder_sparsity": sp or sparsity})
    else:
        rec.update(error="RuntimeError('boom')")
    return rec


def baseline(cells, tolerances=TOLERANCES):
    return {"settings": baseline_file.current_settings(), "tolerances": dict(tolerances), "cells": cells}


def cell_values(accuracy=60.0, loss=0.5, sp=0.5):
    return {"accuracy": accuracy, "encoder_sparsity": sp, "train_loss": loss}


def verdicts(verdict):
    return {(row.cell, row.metric): row.verdict for row in verdict.rows}


def test_within_tolerance_is_green():
    base = baseline({"magnitude/sst2/0.5": cell_values(60.0, 0.5, 0.5)})
    verdict = regress.compare([record(accuracy=60.9, loss=0.509, sp=0.5015)], base)
    assert verdict.ok, verdict.rows
    assert len(verdict.rows) == 3
    assert "green: 3 checks in 1 cells" in regress.render(verdict)


def test_beyond_tolerance_either_way_is_a_regression():
    base = baseline({"magnitude/sst2/0.5": cell_values(60.0, 0.5, 0.5)})
    verdict = regress.compare([record(accuracy=58.5, loss=0.48, sp=0.51)], base)
    assert not verdict.ok
    assert verdicts(verdict) == {
        ("magnitude/sst2/0.5", "accuracy"): regress.WORSE,
        ("magnitude/sst2/0.5", "train_loss"): regress.BETTER,  # lower loss: a change all the same
        ("magnitude/sst2/0.5", "encoder_sparsity"): regress.WORSE,
    }
    text = regress.render(verdict)
    assert "REGRESSION: 3 of 3 checks failed" in text and "--update-baseline" in text
    assert "-1.5000" in text  # the delta column


def test_cell_missing_from_baseline_asks_for_update():
    verdict = regress.compare([record(method="mine")], baseline({"magnitude/sst2/0.5": cell_values()}))
    assert verdicts(verdict) == {("mine/sst2/0.5", "(cell)"): regress.MISSING}
    assert "run with --update-baseline" in verdict.rows[0].note
    assert verdict.notes == ["1 baseline cell(s) of methods not run here were not compared"]


def test_failed_or_diverged_cell_is_a_regression():
    base = baseline({"magnitude/sst2/0.5": cell_values(), "magnitude/sst2/0.9": cell_values(sp=0.9)})
    verdict = regress.compare([record(status="failed"), record(sparsity=0.9, status="diverged")], base)
    assert verdicts(verdict) == {
        ("magnitude/sst2/0.5", "status"): regress.FAILED,
        ("magnitude/sst2/0.9", "status"): regress.FAILED,
    }
    assert "boom" in verdict.rows[0].note


def test_baseline_cell_not_run_and_metrics_without_tolerance():
    base = baseline({"magnitude/sst2/0.5": {**cell_values(), "f1": 3.0}, "magnitude/sst2/0.9": cell_values(sp=0.9)},
                    tolerances={"encoder_sparsity": 0.002})  # fmt: skip
    verdict = regress.compare([record(accuracy=60.0, loss=0.500001)], base, methods=["magnitude"])
    got = verdicts(verdict)
    assert got[("magnitude/sst2/0.9", "(cell)")] == regress.NOT_RUN
    assert got[("magnitude/sst2/0.5", "f1")] == regress.MISSING  # no longer measured
    assert got[("magnitude/sst2/0.5", "accuracy")] == regress.OK  # no tolerance: exact, and it is exact
    assert got[("magnitude/sst2/0.5", "train_loss")] == regress.WORSE  # no tolerance: 1e-6 is too much


def test_judge_nan_and_boundary():
    assert regress.judge("train_loss", 0.5, float("nan"), 0.01) == regress.WORSE
    assert regress.judge("accuracy", 60.0, 61.0, 1.0) == regress.OK  # inclusive
    assert regress.judge("accuracy", 60.0, 61.5, 1.0) == regress.BETTER


def test_update_merges_a_methods_subset_and_keeps_tolerances():
    old = baseline(
        {"dense/sst2/0": cell_values(sp=0.0), "magnitude/sst2/0.5": cell_values(1.0), "magnitude/sst2/0.7": {}},
        tolerances={"accuracy": 0.5, "custom": 3.0},
    )
    old["tolerances_comment"] = "why"
    new = baseline_file.updated_baseline(old, [record(accuracy=70.1234567, loss=0.25)], ["magnitude"], old["settings"])
    assert list(new["cells"]) == ["dense/sst2/0", "magnitude/sst2/0.5"]  # the stale magnitude cell is gone
    assert new["cells"]["dense/sst2/0"] == old["cells"]["dense/sst2/0"]
    assert new["cells"]["magnitude/sst2/0.5"] == {"accuracy": 70.123457, "encoder_sparsity": 0.5, "train_loss": 0.25}
    assert new["tolerances"]["accuracy"] == 0.5 and new["tolerances"]["custom"] == 3.0
    assert new["tolerances"]["train_loss"] == baseline_file.RUN_TOLERANCES["train_loss"]
    assert new["tolerances_comment"] == "why"
    assert new["versions"]["torch"]
    fresh = baseline_file.updated_baseline(None, [record()], ["magnitude"], baseline_file.current_settings())
    # A new file takes each task's tolerances from the task (SST-2 accuracy; SQuAD EM and F1) and the run's own.
    assert fresh["tolerances"] == {"train_loss": 0.01, "encoder_sparsity": 0.002, "accuracy": 2.5, "exact_match": 1.0,
                                   "f1": 1.0}  # fmt: skip
    assert list(fresh["cells"]) == ["magnitude/sst2/0.5"]


def test_default_tolerances_come_from_the_tasks_and_a_shared_metric_takes_the_stricter():
    assert baseline_file.default_tolerances(["stsb"]) == {"train_loss": 0.01, "encoder_sparsity": 0.002,
                                                          "pearson": 1.0, "spearman": 1.0}  # fmt: skip
    # MRPC reports f1 (default 1.0) and accuracy (GLUE's 2.5); SQuAD's f1 is 1.0 too; CoLA adds Matthews.
    both = baseline_file.default_tolerances(["mrpc", "squad", "cola"])
    assert both["accuracy"] == 2.5 and both["f1"] == 1.0 and both["matthews_correlation"] == 1.0


def test_settings_differences_are_named():
    old = baseline_file.current_settings()
    new = copy.deepcopy(old)
    new["budget"]["learning_rate"] = 1e-3
    assert baseline_file.diff_settings(old, new) == ["budget.learning_rate: 0.003 -> 0.001"]
    with pytest.raises(BenchError, match="budget.learning_rate"):
        baseline_file.check_settings({"settings": old}, new, "b.json")


def test_bad_input_exits_2_before_running(tmp_path, capsys, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the matrix ran")

    monkeypatch.setattr(regress_run, "run_in_folder", must_not_run)
    missing = tmp_path / "none.json"
    assert main(["regress", "--baseline", str(missing)]) == 2
    assert "--update-baseline" in capsys.readouterr().err

    other = baseline({})
    other["settings"]["seed"] = 1
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    assert main(["regress", "--methods", "magnitude", "--baseline", str(path), "--update-baseline"]) == 2
    assert "seed: 1 -> 0" in capsys.readouterr().err

    path.write_text(json.dumps(baseline({})))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.json").write_text("{}")
    assert main(["regress", "--baseline", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["regress", "--methods", "magnitud", "--baseline", str(path)]) == 2
    assert "did you mean 'magnitude'" in capsys.readouterr().err.lower()


def test_update_refuses_failed_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(regress_run, "run_in_folder", lambda *a, **k: [record(), record(sparsity=0.9, status="failed")])
    path = tmp_path / "b.json"
    assert main(["regress", "--methods", "magnitude", "--baseline", str(path), "--update-baseline"]) == 1
    assert not path.exists()


def small_settings():
    """The gate's settings shrunk to seconds per cell, for the end-to-end test."""
    settings = baseline_file.current_settings()
    settings["budget"] = {"epochs": 1, "batch_size": 16, "learning_rate": 3e-3, "max_length": 96, "doc_stride": 32}
    settings["splits"] = {
        "sst2": {"train_split": "train[:48]", "eval_split": "validation[:24]"},
        "squad": {"train_split": "train[:12]", "eval_split": "validation[:8]"},
    }
    return settings


@needs_minilm
def test_cli_update_then_green_then_regression(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(baseline_file, "SETTINGS", small_settings())
    path = tmp_path / "mine.json"
    args = ["regress", "--methods", "magnitude", "--baseline", str(path)]
    path.write_text(json.dumps(baseline_file.updated_baseline(None, [record(method="movement")], ["movement"],
                                                        baseline_file.current_settings())))  # fmt: skip
    assert main([*args, "--update-baseline"]) == 0
    data = json.loads(path.read_text())
    mine = [f"magnitude/{task}/{sparsity}" for task in ("squad", "sst2") for sparsity in (0.5, 0.9)]
    assert sorted(data["cells"]) == [*mine, "movement/sst2/0.5"]  # merged: the other method's cell is kept
    assert set(data["cells"]["magnitude/squad/0.9"]) == {"f1", "exact_match", "encoder_sparsity", "train_loss"}

    data["tolerances"] = dict.fromkeys(data["tolerances"], 0.0)  # a second run must give the same numbers exactly
    path.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(args) == 0
    assert "green: 14 checks in 4 cells" in capsys.readouterr().out

    data["tolerances"]["train_loss"] = 0.01
    data["cells"]["magnitude/sst2/0.9"]["train_loss"] -= 0.05
    path.write_text(json.dumps(data))
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "REGRESSION: 1 of 14 checks failed in 1 of 4 cells" in out
    line = next(line for line in out.splitlines() if line.startswith("magnitude/sst2/0.9") and "train_loss" in line)
    assert "+0.0500" in line and regress.WORSE in line
