"""Verdicts, intervals, trivial baselines and per-example predictions of finished cells."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.task import Evaluation
from bench.results import verdicts
from bench.results.folder import ResultsFolder
from bench.results.predictions import load_predictions
from tests.conftest import needs_minilm


def evaluation(right: list[int], predicted: list[int]) -> Evaluation:
    values = 100.0 * np.asarray(right, dtype=float)
    return Evaluation({"accuracy": float(values.mean())}, {"accuracy": values}, np.asarray(predicted))


BASELINE = {"description": "majority", "metrics": {"accuracy": 50.0},
            "intervals": {"accuracy": {"low": 46.0, "high": 54.0, "level": 0.95, "resamples": 2000}}}  # fmt: skip


def judge(ev: Evaluation, **kw):
    args = dict(primary="accuracy", greater_is_better=True, evaluation=ev, baseline=BASELINE, target_sparsity=0.9,
                method_info={}, ramp_steps=1000, min_ramp_steps=0)  # fmt: skip
    return verdicts.judge(**{**args, **kw})


def test_a_cell_within_the_baseline_interval_is_chance_and_above_it_is_not():
    within = evaluation([1] * 53 + [0] * 47, [0, 1] * 50)
    above = evaluation([1] * 70 + [0] * 30, [0, 1] * 50)
    assert judge(within)["chance"] and not judge(above)["chance"]
    assert judge(within)["baseline_bound"] == 54.0
    below = evaluation([1] * 30 + [0] * 70, [0, 1] * 50)
    assert judge(below)["chance"], "worse than the baseline is no better than chance"


def test_constant_predictions_are_chance_whatever_the_metric():
    found = judge(evaluation([1] * 70 + [0] * 30, [1] * 100))
    assert found["chance"] and found["constant_predictions"]
    assert verdicts.labels(found) == ["chance (one class)"]


def test_lower_is_better_metrics_flip_the_bound():
    base = {"intervals": {"loss": {"low": 0.6, "high": 0.8}}}
    ev = Evaluation({"loss": 0.7}, {}, np.asarray([0, 1]))
    assert verdicts.judge("loss", False, ev, base, 0.5, {}, 10, 0)["chance"]
    ev = Evaluation({"loss": 0.3}, {}, np.asarray([0, 1]))
    assert not verdicts.judge("loss", False, ev, base, 0.5, {}, 10, 0)["chance"]


def test_projection_verdict_records_how_much_the_method_pruned_itself():
    ev = evaluation([1] * 70 + [0] * 30, [0, 1] * 50)
    found = judge(ev, method_info={"sparsity_before_projection": 0.376})
    assert found["projection"] and found["reached_fraction"] == pytest.approx(0.376 / 0.9)
    assert verdicts.labels(found) == ["reached 37.6% of 90% itself"]
    assert not judge(ev, method_info={"sparsity_before_projection": 0.85})["projection"]
    assert not judge(ev)["projection"] and judge(ev)["reached_fraction"] is None


def test_short_schedule_compares_the_ramp_with_the_method_minimum():
    ev = evaluation([1] * 70 + [0] * 30, [0, 1] * 50)
    assert judge(ev, ramp_steps=44, min_ramp_steps=2000)["short_schedule"]
    assert not judge(ev, ramp_steps=2000, min_ramp_steps=2000)["short_schedule"]
    assert not judge(ev, ramp_steps=None, min_ramp_steps=2000)["short_schedule"], "dense does not prune"
    assert "short schedule (44 < 2000 steps)" in verdicts.labels(judge(ev, ramp_steps=44, min_ramp_steps=2000))


def test_intervals_contain_the_mean_and_old_records_get_the_projection_verdict_back():
    values = 100.0 * (np.random.default_rng(0).random(872) < 0.8)
    found = verdicts.intervals({"accuracy": values}, seed=0)["accuracy"]
    assert found["low"] < values.mean() < found["high"] and found["high"] - found["low"] < 8
    old = {"cell": {"sparsity": 0.9}, "method_info": {"sparsity_before_projection": 0.0}}
    assert verdicts.of_record(old)["projection"] and verdicts.of_record(old)["chance"] is None


@needs_minilm
def test_finished_cells_carry_verdicts_intervals_baseline_schedule_and_predictions(tmp_path, tiny_model_dir,
                                                                                    monkeypatch):
    from bench.methods.movement import Movement

    from bench.run.runner import run_matrix
    from tests.test_runner import tiny_matrix

    monkeypatch.setattr(Movement, "min_ramp_steps", 10_000)
    logged: list[str] = []
    matrix = tiny_matrix(tmp_path, tiny_model_dir, tracking_uri="none")
    results = run_matrix(matrix, log=logged.append)
    assert any("movement" in line and "min_ramp_steps 10000" in line for line in logged), logged
    assert not (matrix.output / "mlflow.db").exists(), "--tracking-uri none writes no MLflow store"
    for rec in results:
        assert rec["status"] == "finished" and rec["mlflow_run_id"] is None
        low, high = rec["metric_intervals"]["accuracy"]["low"], rec["metric_intervals"]["accuracy"]["high"]
        assert low <= rec["metrics"]["accuracy"] <= high
        assert rec["baseline"]["description"].startswith("majority class")
        saved = load_predictions(ResultsFolder(matrix.output).predictions(rec["id"]))
        assert saved["per_example/accuracy"].shape == (24,) and saved["prediction"].shape == (24,)
        assert saved["per_example/accuracy"].mean() == pytest.approx(rec["metrics"]["accuracy"])
        assert saved["baseline/accuracy"].mean() == pytest.approx(rec["baseline"]["metrics"]["accuracy"])
        assert set(rec["verdicts"]) >= {"chance", "projection", "short_schedule", "reached_fraction"}
    by_method = {r["cell"]["method"]: r for r in results}
    assert by_method["dense"]["schedule"] is None and not by_method["dense"]["verdicts"]["short_schedule"]
    schedule = by_method["movement"]["schedule"]  # 48 examples / batch 16 = 3 steps
    assert schedule["total_steps"] == 3 and sum(schedule[k] for k in ("warmup_steps", "ramp_steps",
                                                                       "cooldown_steps")) == 3
    assert by_method["movement"]["verdicts"]["short_schedule"]
    assert not by_method["magnitude"]["verdicts"]["short_schedule"]


def test_a_task_implements_evaluate_or_evaluate_per_example_and_gets_the_other():
    from bench.core.task import Task

    class Neither(Task):
        name = "neither"
        build_model = featurize = None

    class OnlyMetrics(Neither):
        def evaluate(self, trainer, examples, tokenizer, feats):
            return {"accuracy": 50.0}

    with pytest.raises(NotImplementedError, match="neither evaluate nor evaluate_per_example"):
        Neither().evaluate(None, None, None, None)
    with pytest.raises(NotImplementedError):
        Neither().evaluate_per_example(None, None, None, None)
    found = OnlyMetrics().evaluate_per_example(None, None, None, None)
    assert found.metrics == {"accuracy": 50.0} and found.per_example == {} and not found.constant_predictions()
    assert OnlyMetrics().trivial_baseline(None) is None
