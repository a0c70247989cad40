"""How far a cell's number can be trusted: its confidence intervals and three verdicts.

* **chance**: the primary metric lies within (or on the wrong side of) the 95% confidence interval of the task's
  trivial baseline (:meth:`bench.core.task.Task.trivial_baseline`), or every eval example got the same prediction.
  Such a
  model learned nothing the baseline does not have; it is never marked best.
* **projection**: the method reached less than :data:`REACHED_MIN` of its target sparsity on its own, before the
  final one-shot projection onto the target (``sparsity_before_projection`` of the method's finalize). The row is
  then mostly a one-shot cut at the end, not the method.
* **short schedule**: the pruning ramp (optimizer steps between the end of the pruning warm-up and the start of the
  cool-down) is shorter than the method's declared ``min_ramp_steps``.

Intervals are 95% bootstrap intervals of the mean of the per-example values
(:func:`bench.results.stats.bootstrap_interval`,
seeded with the cell's seed, :data:`RESAMPLES` resamples).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.core.task import Evaluation

LEVEL = 0.95
RESAMPLES = 2000
REACHED_MIN = 0.8  # below this fraction of the target reached before the projection, the projection did the pruning


def intervals(per_example: dict[str, np.ndarray], seed: int = 0) -> dict[str, dict[str, float]]:
    """``{metric: {"low", "high", "level", "resamples"}}``: the bootstrap interval of each metric's mean."""
    from bench.results.stats import bootstrap_interval

    out = {}
    for metric, values in per_example.items():
        low, high = bootstrap_interval(np.asarray(values, dtype=np.float64), LEVEL, RESAMPLES, seed)
        out[metric] = {"low": low, "high": high, "level": LEVEL, "resamples": RESAMPLES}
    return out


def evaluation_intervals(evaluation: Evaluation, seed: int = 0) -> dict[str, dict[str, float]]:
    """:func:`intervals` of the per-example metrics, plus a paired bootstrap (:func:`bench.results.stats.
    paired_bootstrap_interval`) of every other metric that :data:`bench.core.metrics.METRICS` can recompute from the
    evaluation's predictions and labels (F1, Matthews correlation, Pearson, Spearman)."""
    from bench.core.metrics import METRICS
    from bench.results.stats import paired_bootstrap_interval

    out = intervals(evaluation.per_example, seed)
    if evaluation.predictions is None or evaluation.labels is None or len(evaluation.labels) < 2:
        return out
    for metric in evaluation.metrics:
        if metric in out or metric not in METRICS:
            continue
        score = METRICS[metric].score
        low, high = paired_bootstrap_interval(evaluation.predictions, evaluation.labels, score, LEVEL, RESAMPLES, seed)
        out[metric] = {"low": low, "high": high, "level": LEVEL, "resamples": RESAMPLES}
    return out


def baseline_summary(baseline: Evaluation | None, seed: int = 0) -> dict[str, Any] | None:
    """The trivial baseline as a record field: what it predicts, its metrics and their intervals."""
    if baseline is None:
        return None
    return {"description": baseline.description, "metrics": baseline.metrics,
            "intervals": evaluation_intervals(baseline, seed)}  # fmt: skip


def judge(
    primary: str,
    greater_is_better: bool,
    evaluation: Evaluation,
    baseline: dict[str, Any] | None,
    target_sparsity: float,
    method_info: dict[str, Any],
    ramp_steps: int | None,
    min_ramp_steps: int,
) -> dict[str, Any]:
    """The ``verdicts`` field of a finished cell's record.

    Args:
        primary, greater_is_better: the task's primary metric and its direction.
        evaluation: the cell's evaluation on the eval split.
        baseline: :func:`baseline_summary` of the task's trivial baseline, or None.
        target_sparsity: the cell's target, in [0, 1).
        method_info: what the method's ``finalize`` returned (``sparsity_before_projection`` where it projects).
        ramp_steps: the cell's pruning ramp in optimizer steps, None for a method that does not prune.
        min_ramp_steps: the method's declared minimum ramp.

    Returns:
        ``{"chance", "constant_predictions", "baseline_bound", "projection", "reached_fraction" (of the target),
        "reached_sparsity", "target_sparsity", "short_schedule", "ramp_steps", "min_ramp_steps"}``;
        ``baseline_bound`` is the baseline interval's bound on the good side.
    """
    value = evaluation.metrics[primary]
    bound = None
    if baseline is not None and primary in baseline.get("intervals", {}):
        bound = baseline["intervals"][primary]["high" if greater_is_better else "low"]
    within = bound is not None and (value <= bound if greater_is_better else value >= bound)
    constant = evaluation.constant_predictions()
    before = method_info.get("sparsity_before_projection")
    reached = reached_fraction(before, target_sparsity)
    short = ramp_steps is not None and ramp_steps < min_ramp_steps
    return {
        "chance": bool(within or constant),
        "constant_predictions": bool(constant),
        "baseline_bound": bound,
        "projection": reached is not None and reached < REACHED_MIN,
        "reached_fraction": reached,
        "reached_sparsity": None if before is None else float(before),
        "target_sparsity": target_sparsity,
        "short_schedule": bool(short),
        "ramp_steps": ramp_steps,
        "min_ramp_steps": int(min_ramp_steps),
    }


def reached_fraction(before: float | None, target: float) -> float | None:
    """The share of the target sparsity a method reached by itself before the projection, or None."""
    return float(before) / target if before is not None and target > 0 else None


def of_record(record: dict[str, Any]) -> dict[str, Any]:
    """A finished record's verdicts, as readers show them.

    The ``short schedule`` verdict is judged against the method's *current* ``min_ramp_steps`` (what is known about
    a method's needs grows; the ramp a cell had does not change), where the method is still registered. For records
    written before verdicts existed, the projection verdict is recomputed from ``method_info`` and ``chance`` and
    ``short_schedule`` are None (unknown).
    """
    from bench.core import registry

    found = dict(record.get("verdicts") or {})
    if not found:
        target = record["cell"]["sparsity"]
        before = (record.get("method_info") or {}).get("sparsity_before_projection")
        reached = reached_fraction(before, target)
        return {"chance": None, "constant_predictions": None, "baseline_bound": None,
                "projection": reached is not None and reached < REACHED_MIN, "reached_fraction": reached,
                "reached_sparsity": before, "target_sparsity": target, "short_schedule": None, "ramp_steps": None,
                "min_ramp_steps": None}  # fmt: skip
    try:
        minimum = registry.methods.get(record["cell"]["method"]).min_ramp_steps
    except Exception:  # noqa: BLE001 - an uninstalled plugin keeps the verdict it was recorded with
        return found
    ramp = found.get("ramp_steps")
    found["min_ramp_steps"] = minimum
    found["short_schedule"] = ramp is not None and ramp < minimum
    return found


def labels(verdicts: dict[str, Any]) -> list[str]:
    """Short human words for the verdicts that apply: "chance", "reached 0.0% of 90% itself", "short schedule
    (44 < 2000 steps)"."""
    out = []
    if verdicts.get("chance"):
        out.append("chance (one class)" if verdicts.get("constant_predictions") else "chance")
    if verdicts.get("projection"):
        out.append(f"reached {verdicts['reached_sparsity']:.1%} of {verdicts['target_sparsity']:.0%} itself")
    if verdicts.get("short_schedule"):
        out.append(f"short schedule ({verdicts['ramp_steps']} < {verdicts['min_ramp_steps']} steps)")
    return out
