"""The metrics a task can name, in the units GLUE reports them (percent), from scikit-learn and scipy.

Metric code is not fetched from the Hub (``evaluate.load`` downloads and runs it at run time, which fails offline
and runs remote code); scikit-learn and scipy implement the same definitions (tests/test_task_metrics.py checks them
against GLUE's and SQuAD's). A task lists names from :data:`METRICS` in ``Task.metrics`` and gets
:meth:`bench.core.task.Task.compute_metrics` for free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    """One metric over ``(predictions, labels)``, both shape (n_examples,).

    Attributes:
        score: the aggregate, in percent.
        per_example: each example's contribution (the aggregate is its mean), or None where the metric does not
            decompose by example (F1, correlations); intervals and paired tests need it.
    """

    score: Callable[[np.ndarray, np.ndarray], float]
    per_example: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return 100.0 * float(accuracy_score(labels, predictions))


def _f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return 100.0 * float(f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0.0))


def _matthews(predictions: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    return 100.0 * float(matthews_corrcoef(labels, predictions))


def _correlation(kind: str) -> Callable[[np.ndarray, np.ndarray], float]:
    def score(predictions: np.ndarray, labels: np.ndarray) -> float:
        from scipy import stats

        if np.ptp(predictions) == 0.0 or np.ptp(labels) == 0.0:  # undefined (scipy: NaN); a constant has none
            return 0.0
        test = stats.pearsonr if kind == "pearson" else stats.spearmanr
        return 100.0 * float(test(predictions, labels)[0])

    return score


METRICS: dict[str, Metric] = {
    "accuracy": Metric(_accuracy, lambda p, y: 100.0 * (p == y).astype(np.float64)),
    "f1": Metric(_f1),
    "matthews_correlation": Metric(_matthews),
    "pearson": Metric(_correlation("pearson")),
    "spearman": Metric(_correlation("spearman")),
}


def compute(names: tuple[str, ...], predictions, labels) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(``{metric: score}``, ``{metric: per-example contributions}`` for the metrics that decompose).

    Args:
        names: keys of :data:`METRICS`.
        predictions, labels: array-likes of shape (n_examples,): predicted and gold label ids (classification) or
            values (regression).

    Raises:
        ValueError: an unknown metric name, shapes that differ or are not 1-D, or no examples.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim != 1 or predictions.shape != labels.shape:
        raise ValueError(f"expected predictions and labels of one shape (n,), got {predictions.shape}, {labels.shape}")
    if len(labels) == 0:
        raise ValueError("no examples to score")
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {sorted(METRICS)}")
    scores = {name: METRICS[name].score(predictions, labels) for name in names}
    per_example = {n: METRICS[n].per_example(predictions, labels) for n in names if METRICS[n].per_example}
    return scores, per_example
