"""Statistics for the leaderboard: confidence intervals, paired tests, significance ranks, Friedman/Nemenyi.

Every metric of the benchmark is mean-decomposable: a cell saves, per eval example, that example's contribution to
each metric (accuracy: 100 if correct else 0; SQuAD F1: the question's F1 in 0-100), and the metric is the mean of
those per-example values. The functions here take such per-example arrays (or, for ``t_interval``, one metric value
per seed) and are pure: numpy/pandas in, plain floats/frames out, no torch.

Libraries do the statistics (scipy, statsmodels, scikit-posthocs); the little code of our own is glue, and says why.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from bench.core.errors import BenchError

# Elements per vectorised batch in scipy's resampling (~32 MiB of float64): bounds memory on SQuAD-sized inputs,
# where an unbatched BCa jackknife would build an n x (n-1) matrix.
_BATCH_ELEMENTS = 1 << 22
# scipy >= 1.15 seeds resampling with `rng`, older releases (the pyproject allows >= 1.11) with `random_state`.
_RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


def _seeded(seed: int) -> dict:
    return {_RNG_KW: np.random.default_rng(seed)}


def _batch(n_obs: int, resamples: int) -> int:
    return int(max(1, min(resamples, _BATCH_ELEMENTS // max(n_obs, 1))))


def _as_1d(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_level(level: float, name: str = "level") -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {level}")


def bootstrap_interval(values, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap confidence interval of the mean of per-example values.

    Args:
        values: 1-D array-like of shape (n,), per-example metric contributions (metric units, e.g. 0-100).
        level: confidence level in (0, 1).
        resamples: bootstrap resamples, at least 1000.
        seed: seed of the resampling; equal inputs and seed give an identical interval.

    Returns:
        ``(low, high)`` in the units of ``values``. BCa interval (Efron 1987, "Better bootstrap confidence
        intervals", JASA 82:171) via ``scipy.stats.bootstrap``; where BCa is degenerate (NaN, e.g. near-constant
        data) the percentile interval is returned instead. Constant input gives ``(v, v)``.

    Raises:
        ValueError: empty, non-1-D or non-finite ``values``; ``resamples < 1000``; ``level`` outside (0, 1).
    """
    arr = _as_1d(values, "values")
    _check_level(level)
    if resamples < 1000:
        raise ValueError(f"resamples must be >= 1000, got {resamples}")
    if np.ptp(arr) == 0.0:  # scipy needs >= 2 observations and BCa is NaN on constant data: the answer is exact
        v = float(arr[0])
        return v, v
    kwargs = dict(n_resamples=resamples, confidence_level=level, vectorized=True, batch=_batch(arr.size, resamples))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's DegenerateDataWarning; handled by the fallback below
        ci = stats.bootstrap((arr,), np.mean, method="BCa", **_seeded(seed), **kwargs).confidence_interval
    if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
        ci = stats.bootstrap((arr,), np.mean, method="percentile", **_seeded(seed), **kwargs)
        ci = ci.confidence_interval
    return float(ci.low), float(ci.high)


def paired_bootstrap_interval(
    predictions, labels, statistic, level: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap confidence interval of a metric that does not decompose by example (F1, Matthews correlation,
    Pearson/Spearman): examples are resampled as (prediction, label) pairs and the metric recomputed on each resample.

    Args:
        predictions, labels: 1-D array-likes of shape (n,).
        statistic: ``statistic(predictions, labels) -> float`` in metric units.
        level, resamples, seed: as :func:`bootstrap_interval`.

    Returns:
        ``(low, high)``: BCa via ``scipy.stats.bootstrap(paired=True)``, the percentile interval where BCa is
        degenerate; ``(v, v)`` when every resample gives the same value.

    Raises:
        ValueError: shapes that differ or are not 1-D, fewer than 2 examples, ``resamples < 1000``, a bad ``level``.
    """
    p, y = np.asarray(predictions), np.asarray(labels)
    if p.ndim != 1 or p.shape != y.shape or p.size < 2:
        raise ValueError(f"predictions and labels must be 1-D of one length >= 2, got {p.shape} and {y.shape}")
    _check_level(level)
    if resamples < 1000:
        raise ValueError(f"resamples must be >= 1000, got {resamples}")
    kwargs = dict(n_resamples=resamples, confidence_level=level, vectorized=False, paired=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples (a constant prediction) and BCa NaNs: fallback below
        ci = stats.bootstrap((p, y), statistic, method="BCa", **_seeded(seed), **kwargs).confidence_interval
        if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
            ci = stats.bootstrap((p, y), statistic, method="percentile", **_seeded(seed), **kwargs)
            ci = ci.confidence_interval
    if not (np.isfinite(ci.low) and np.isfinite(ci.high)):  # every resample equal (e.g. constant predictions)
        value = float(statistic(p, y))
        return value, value
    return float(ci.low), float(ci.high)


def t_interval(values, level: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval of the mean over seeds.

    Args:
        values: 1-D array-like of shape (n_seeds,), one metric value per seed (metric units).
        level: confidence level in (0, 1).

    Returns:
        ``(low, high)`` = mean -/+ t_{(1+level)/2, n-1} * s / sqrt(n) with the sample standard deviation s
        (ddof=1), quantile from ``scipy.stats.t``; ``None`` for fewer than 2 values; ``(v, v)`` for equal values.

    Raises:
        ValueError: non-1-D or non-finite ``values``; ``level`` outside (0, 1).
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size < 2:
        if arr.ndim > 1:
            raise ValueError(f"values must be 1-D, got shape {arr.shape}")
        return None
    arr = _as_1d(arr, "values")
    _check_level(level)
    mean = float(arr.mean())
    sem = float(arr.std(ddof=1)) / math.sqrt(arr.size)
    if sem == 0.0:  # scipy.stats.t.interval returns NaN for scale 0; the interval is the point
        return mean, mean
    low, high = stats.t.interval(level, arr.size - 1, loc=mean, scale=sem)
    return float(low), float(high)


def _pooled_differences(a: Sequence, b: Sequence) -> np.ndarray:
    if len(a) != len(b):
        raise ValueError(f"a has {len(a)} seeds but b has {len(b)}; seeds are paired by position")
    if len(a) == 0:
        raise ValueError("a and b are empty: need at least one seed")
    diffs = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        x, y = _as_1d(x, f"a[{i}]"), _as_1d(y, f"b[{i}]")
        if x.shape != y.shape:
            raise ValueError(f"seed {i}: a has {x.size} examples but b has {y.size}; examples are paired")
        diffs.append(x - y)
    return np.concatenate(diffs)


def paired_test(a: Sequence, b: Sequence, resamples: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value that two methods differ, from per-example values on the same eval examples.

    Paired sign-flip permutation test (Fisher 1935; ``scipy.stats.permutation_test`` with
    ``permutation_type="samples"`` on one sample, which flips signs) of the mean of the per-example differences
    ``a - b``, pooled over seeds: the differences of all seeds are concatenated. The test conditions on the eval
    set; training variance enters only through the pooled seeds, so with one seed p speaks about two trained
    models rather than two methods. Monte Carlo p-values are >= 2/(resamples+1) (scipy counts the observed
    statistic); with 2**n_total <= resamples scipy runs the exact test.

    Args:
        a: list (one entry per seed) of 1-D arrays of shape (n_examples,), per-example values of method A.
        b: same for method B; ``b[i]`` is paired with ``a[i]``, example by example.
        resamples: Monte Carlo sign-flip resamples.
        seed: seed of the resampling.

    Returns:
        The p-value in (0, 1]; 1.0 when all differences are zero.

    Raises:
        ValueError: different numbers of seeds, different lengths within a seed, empty or non-finite arrays.
    """
    diff = _pooled_differences(a, b)
    # Examples where the two agree flip to themselves: dropping them scales the observed and every permuted mean by
    # the same factor, so p is unchanged and the test runs on far fewer values (most examples agree).
    diff = diff[diff != 0]
    if diff.size == 0:
        return 1.0
    result = stats.permutation_test(
        (diff,), np.mean, permutation_type="samples", vectorized=True, n_resamples=resamples,
        batch=_batch(diff.size, resamples), alternative="two-sided", **_seeded(seed),
    )
    return float(result.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values, in the order given (statsmodels ``multipletests(method="holm")``).

    Args:
        pvalues: raw p-values in [0, 1], any length.

    Returns:
        The adjusted p-values, same length and order; ``[]`` for empty input.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:
        return []
    return [float(x) for x in multipletests(p, method="holm")[1]]


def rank_column(
    scores: Mapping[str, Sequence], greater_is_better: bool = True, alpha: float = 0.05, resamples: int = 10000,
    seed: int = 0,
) -> pd.DataFrame:
    """Significance ranking of one leaderboard column (one task x sparsity).

    The best method is the one with the best ``mean``. It is compared with every other method by
    ``paired_test`` (pooled over seeds), and the p-values are Holm-adjusted over these k-1 comparisons.

    Args:
        scores: ``{method: [per-seed 1-D array of shape (n_examples,), ...]}``; seeds and examples are paired by
            position across methods. If methods have different numbers of seeds, only the first min(n_seeds)
            seeds of every method are used (for ``mean`` too).
        greater_is_better: direction of the metric.
        alpha: significance level for the marks.
        resamples, seed: passed to ``paired_test``.

    Returns:
        DataFrame, one row per method, best first, columns ``method``, ``mean`` (over all per-example values of the
        used seeds), ``p_vs_best`` (Holm-adjusted p vs the best; NaN for the best) and ``mark``: ``"best"`` for the
        best when it differs significantly (adjusted p < alpha) from every other method; otherwise ``"tie"`` for
        the best and for each method with adjusted p >= alpha; ``""`` for the rest. A single method gets ``""``.

    Raises:
        BenchError: no methods, or a method without seeds.
        ValueError: examples of a seed differ in number between methods (from ``paired_test``).
    """
    _check_level(alpha, "alpha")
    if not scores:
        raise BenchError("rank_column: no methods to rank (scores is empty)")
    empty = [m for m, seeds in scores.items() if len(seeds) == 0]
    if empty:
        raise BenchError(f"rank_column: method(s) {empty} have no seeds")
    n_seeds = min(len(seeds) for seeds in scores.values())
    used = {m: [np.asarray(s, dtype=float) for s in list(seeds)[:n_seeds]] for m, seeds in scores.items()}
    means = {m: float(np.concatenate(seeds).mean()) for m, seeds in used.items()}
    order = sorted(means, key=means.get, reverse=greater_is_better)  # stable: ties keep the given order
    best, others = order[0], order[1:]
    raw = [paired_test(used[best], used[m], resamples=resamples, seed=seed) for m in others]
    adjusted = dict(zip(others, holm(raw), strict=True))
    tied = [m for m in others if adjusted[m] >= alpha]
    rows = []
    for m in order:
        if m == best:
            mark = "" if not others else ("tie" if tied else "best")
            rows.append((m, means[m], math.nan, mark))
        else:
            rows.append((m, means[m], adjusted[m], "tie" if m in tied else ""))
    return pd.DataFrame(rows, columns=["method", "mean", "p_vs_best", "mark"])
