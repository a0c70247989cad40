"""Significance marks per leaderboard column and the Friedman/Nemenyi comparison over columns.

A column is a task × target sparsity. Its pruned methods that are not chance rows
(:func:`bench.results.leaderboard.summarize`)
are ranked by :func:`bench.results.stats.rank_column` on their per-example eval results
(``OUTPUT/predictions/<cell id>.npz``, :func:`bench.results.predictions.per_example`), seeds paired by seed number
over the
seeds every ranked method has. A column whose methods lack those results (records from before they were saved) is
not tested and gets no mark at all, never an untested "best".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import BenchError
from bench.results.annotate import ALPHA, MARK_COLUMNS, MISSING, RESAMPLES, is_true, percent  # noqa: F401 - re-exported


def load_arrays(output: Path, cells: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{cell id: per-example values of its primary metric, shape (n_examples,)}`` for the cells of
    :func:`bench.results.leaderboard.collect` that saved predictions (others are left out).

    Raises:
        BenchError: a predictions file that cannot be read, naming it.
    """
    from bench.results.predictions import per_example

    found = {}
    for cell_id, metric in cells[["cell_id", "metric"]].itertuples(index=False):
        values = per_example(output, cell_id, metric)
        if values is not None:
            found[cell_id] = np.asarray(values, dtype=float)
    return found


def column_marks(
    summary: pd.DataFrame, cells: pd.DataFrame, arrays: dict[str, np.ndarray] | None, alpha: float = ALPHA,
    resamples: int = RESAMPLES, seed: int = 0,
) -> pd.DataFrame:
    """The marks of every pruned row of ``summary`` (:func:`bench.results.leaderboard.summarize` of ``cells``).

    Returns:
        DataFrame with :data:`MARK_COLUMNS`: ``mark`` "best", "tie" or "" (from :func:`bench.results.stats.rank_column`;
        always "" for chance rows and in untested columns), ``p_vs_best`` (Holm-adjusted p against the column's best,
        NaN where not tested), ``tested`` (the column's test ran; True for a column with fewer than two rankable
        methods, where there is nothing to test) and ``test_note`` (why not, else "").
    """
    from bench.results.stats import rank_column

    rows = []
    pruned = summary[summary["role"] == "pruned"]
    for (task, target), block in pruned.groupby(["task", "target_sparsity"], sort=False):
        ranked = [r.method for r in block.itertuples() if not is_true(r.chance)]
        mine = cells[(cells["task"] == task) & (cells["target_sparsity"] == target)]
        tested, note, marks = True, "", {}
        if len(ranked) >= 2:
            per_method = {m: _seed_arrays(mine[mine["method"] == m], arrays or {}) for m in ranked}
            common = sorted(set.intersection(*(set(found) for found in per_method.values())))
            if not common:
                tested, note = False, MISSING
            else:
                scores = {m: [found[s] for s in common] for m, found in per_method.items()}
                try:
                    frame = rank_column(scores, bool(block["greater_is_better"].iloc[0]), alpha, resamples, seed)
                    marks = {r.method: (r.mark, r.p_vs_best) for r in frame.itertuples()}
                except ValueError as err:
                    tested, note = False, f"per-example results do not line up: {err}"
        for r in block.itertuples():
            mark, p = marks.get(r.method, ("", math.nan))
            rows.append((task, target, r.method, mark, p, tested, note))
    return pd.DataFrame(rows, columns=MARK_COLUMNS)


def _seed_arrays(cells: pd.DataFrame, arrays: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    return {int(seed): arrays[cell_id] for cell_id, seed in cells[["cell_id", "seed"]].itertuples(index=False)
            if cell_id in arrays}  # fmt: skip


def critical_difference(summary: pd.DataFrame, alpha: float = ALPHA) -> tuple[dict[str, Any] | None, str]:
    """Friedman test and Nemenyi critical difference (:func:`bench.results.stats.friedman_nemenyi`) of the pruned
    methods
    over the leaderboard columns, on the row means of ``summary`` (lower-is-better metrics negated, so rank 1 is
    always the best).

    Blocks are the columns ``task@sparsity``; methods that lack a column are left out when at least two methods
    have every column (else the incomplete columns are). Returns ``(result, "")``, with ``result["table"]`` the
    (blocks × methods) table used, or ``(None, reason)`` when fewer than 3 columns or 2 methods are comparable.
    """
    from bench.results.ranks import friedman_nemenyi

    pruned = summary[summary["role"] == "pruned"] if not summary.empty else summary
    if pruned.empty:
        return None, "critical-difference diagram skipped: no pruned methods"
    signed = pruned["mean"].where(pruned["greater_is_better"].astype(bool), -pruned["mean"])
    blocks = pruned["task"] + "@" + pruned["target_sparsity"].map(percent)  # exact: 97.5% and 98% stay apart
    table = pd.DataFrame({"block": blocks, "method": pruned["method"], "value": signed}).pivot_table(
        index="block", columns="method", values="value", aggfunc="mean"
    )
    if len(table) < 3:
        return None, (f"critical-difference diagram skipped: {len(table)} task@sparsity column(s), and the "
                      "Friedman/Nemenyi comparison needs at least 3")  # fmt: skip
    complete = table.columns[table.notna().all()]
    if len(complete) >= 2:
        table = table[complete]
    try:
        result = friedman_nemenyi(table, greater_is_better=True, alpha=alpha)
    except BenchError as err:
        return None, f"critical-difference diagram skipped: {err}"
    return {**result, "table": table}, ""


def friedman_text(p: float) -> str:
    """The Friedman p-value of a :func:`critical_difference` result as the report and the diagram print it, or why
    there is none (NaN: it needs at least 3 methods)."""
    return f"{p:.3g}" if p == p else "not defined (it needs at least 3 methods)"
