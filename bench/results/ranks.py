"""Rank-based comparison of several methods over many leaderboard columns: the Friedman test with Nemenyi's
critical difference (Demšar 2006, "Statistical Comparisons of Classifiers over Multiple Data Sets", JMLR 7:1-30)
and its diagram. Libraries do the statistics (scipy, scikit-posthocs); this module is the glue."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats

from bench.core.errors import BenchError
from bench.results.stats import _check_level

# scikit-posthocs draws the CD bar itself only in recent releases (the pyproject allows >= 0.9).
_CD_KW = "cd" in inspect.signature(sp.critical_difference_diagram).parameters


def friedman_nemenyi(table: pd.DataFrame, greater_is_better: bool = True, alpha: float = 0.05) -> dict:
    """Friedman test, Nemenyi post-hoc test and critical difference over leaderboard columns (Demsar 2006).

    J. Demsar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7:1-30, sec. 3.2.2.

    Args:
        table: DataFrame of shape (N blocks, k methods): rows are leaderboard columns (e.g. ``"sst2@0.9"``),
            columns are methods, values the mean metric. Rows with any NaN are dropped.
        greater_is_better: direction of the metric; the best value in a block gets rank 1.
        alpha: significance level of the critical difference.

    Returns:
        ``{"mean_ranks": Series (index methods, rank 1 = best, ties averaged, sorted best first),
        "friedman_p": float (scipy.stats.friedmanchisquare; NaN for 2 methods, where it cannot run),
        "nemenyi": DataFrame (k, k) of pairwise p-values (scikit_posthocs.posthoc_nemenyi_friedman),
        "critical_difference": float, CD = q_alpha * sqrt(k (k+1) / (6 N)) in rank units (Demsar sec. 3.2.2), with
        q_alpha = studentized_range.ppf(1 - alpha, k, inf) / sqrt(2), "alpha": alpha, "n_blocks": N}``.

    Raises:
        BenchError: fewer than 3 complete blocks or fewer than 2 methods.
    """
    _check_level(alpha, "alpha")
    complete = table.astype(float).dropna(axis=0, how="any")
    n_blocks, k = complete.shape
    if k < 2:
        raise BenchError(f"friedman_nemenyi needs >= 2 methods (table columns), got {k}: {list(table.columns)}")
    if n_blocks < 3:
        raise BenchError(
            f"friedman_nemenyi needs >= 3 leaderboard columns with a value for every method, got {n_blocks} "
            f"({len(table) - n_blocks} of {len(table)} rows dropped for NaN)"
        )
    values = complete.to_numpy(dtype=float)
    ranks = stats.rankdata(-values if greater_is_better else values, axis=1, method="average")
    mean_ranks = pd.Series(ranks.mean(axis=0), index=complete.columns, name="mean_rank").sort_values(kind="stable")
    friedman_p = math.nan
    if k >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-tied blocks divide by zero; scipy then gives NaN, which we keep
            friedman_p = float(stats.friedmanchisquare(*values.T).pvalue)
    # Nemenyi p depends on |rank differences| only, so the direction does not matter here.
    nemenyi = sp.posthoc_nemenyi_friedman(complete)
    q_alpha = float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)
    cd = q_alpha * math.sqrt(k * (k + 1) / (6.0 * n_blocks))
    return {
        "mean_ranks": mean_ranks,
        "friedman_p": friedman_p,
        "nemenyi": nemenyi,
        "critical_difference": cd,
        "alpha": alpha,
        "n_blocks": n_blocks,
    }


def critical_difference_plot(result: Mapping, ax):
    """Draw the critical-difference diagram (Demsar 2006, fig. 1) of a ``friedman_nemenyi`` result onto ``ax``.

    Uses ``scikit_posthocs.critical_difference_diagram``: methods on the mean-rank axis, crossbars join methods
    whose Nemenyi p >= alpha, and the CD is drawn as a bar above the axis (where scikit-posthocs has ``cd``).

    Args:
        result: the dict returned by ``friedman_nemenyi``.
        ax: a matplotlib Axes.

    Returns:
        ``ax``.
    """
    extra = {"cd": result["critical_difference"]} if _CD_KW else {}
    sp.critical_difference_diagram(
        result["mean_ranks"], result["nemenyi"], ax=ax, alpha=result.get("alpha", 0.05), **extra
    )
    return ax
