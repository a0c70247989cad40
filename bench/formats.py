"""The long leaderboard of ``bench leaderboard --format md|csv|latex|html``, with filters.

One row per (task, target sparsity, method): the primary metric as mean ± std over seeds with the number of seeds,
the measured encoder sparsity and the parameters remaining, the sparsity the method reached on its own before a
projection (where it was projected), the HP-search trials and the wall time, then what the sparsity buys: the sparse
export file's size (and its fraction of the dense file), the share of the pruned weights that compaction removed as
whole heads and FFN units, and the measured CPU speed-up of the compacted model (and of the sparse-CSR path) over the
dense one at batch 1 and 32 (``--measure-speed``). Within each (task, target sparsity)
block of pruned methods the best mean is marked; the dense reference row is kept by every filter.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.errors import BenchError

FORMATS = ("md", "csv", "latex", "html")
_TABLEFMT = {"md": "github", "latex": "latex_raw", "html": "unsafehtml"}
_BOLD = {"md": "**{}**", "latex": "\\textbf{{{}}}", "html": "<b>{}</b>"}
HEADERS = ["task", "sparsity", "method", "metric", "value", "n", "encoder sparsity", "params left", "reached",
           "trials", "wall", "file", "structure", "speed-up b1", "speed-up b32"]  # fmt: skip


def filter_cells(
    df: pd.DataFrame,
    tasks: list[str] | None = None,
    methods: list[str] | None = None,
    sparsities: list[float] | None = None,
) -> pd.DataFrame:
    """Rows of :func:`bench.leaderboard.collect` for ``tasks``, ``methods`` and target ``sparsities``.

    The dense rows of the kept tasks stay whatever ``methods`` and ``sparsities`` say: dense is the reference.

    Raises:
        BenchError: a filter value that matches nothing in ``df``; the message lists the values present.
    """
    keep = pd.Series(True, index=df.index)
    if tasks:
        _check("task", tasks, df["task"])
        keep &= df["task"].isin(tasks)
    dense = df["method"] == "dense"
    if methods:
        _check("method", methods, df["method"])
        keep &= dense | df["method"].isin(methods)
    if sparsities:
        present = sorted(set(df.loc[~dense, "target_sparsity"]))
        for s in sparsities:
            if not any(abs(s - p) < 1e-9 for p in present):
                raise BenchError(f"no cells at sparsity {s!r}; present: {', '.join(map(str, present)) or '(none)'}")
        keep &= dense | df["target_sparsity"].apply(lambda t: any(abs(t - s) < 1e-9 for s in sparsities))
    return df[keep]


def _check(what: str, wanted: list[str], column: pd.Series) -> None:
    present = sorted(set(column))
    for name in wanted:
        if name not in present:
            raise BenchError(f"no cells for {what} {name!r}; present: {', '.join(present) or '(none)'}")


def long_board(summary: pd.DataFrame) -> pd.DataFrame:
    """Sorted rows of :func:`bench.leaderboard.summarize` with a boolean ``best`` column (best mean among the
    pruned methods of each task and target sparsity, in the metric's direction)."""
    if summary.empty:
        return summary.assign(best=pd.Series(dtype=bool))
    out = summary.copy()
    out["signed"] = out["mean"].where(out["greater_is_better"], -out["mean"])
    out["dense_first"] = out["method"] != "dense"
    out = out.sort_values(["task", "dense_first", "target_sparsity", "signed"], ascending=[True, True, True, False])
    pruned = out["method"] != "dense"
    top = out[pruned].groupby(["task", "target_sparsity"])["signed"].transform("max")
    out["best"] = False
    out.loc[top.index, "best"] = out.loc[top.index, "signed"] == top
    return out.drop(columns=["signed", "dense_first"]).reset_index(drop=True)


def with_reference(board: pd.DataFrame, matched: pd.DataFrame) -> pd.DataFrame:
    """``board`` with the published rows of ``matched`` (from :func:`bench.reference.matching`) for the metrics
    the board shows, each placed after the measured rows of its task and sparsity and marked ``[paper]`` with its
    source and table. Reference rows carry ``reference=True`` and are never ``best``."""
    shown = board[["task", "metric", "greater_is_better"]].drop_duplicates()
    ref = matched.merge(shown, on=["task", "metric"])
    if ref.empty:
        return board.assign(reference=False)
    rows = pd.DataFrame(
        {
            "task": ref["task"], "target_sparsity": ref["target_sparsity"], "metric": ref["metric"],
            "method": "[paper] " + ref["label"] + " (" + ref["source"] + ", " + ref["table"] + ")",
            "greater_is_better": ref["greater_is_better"], "mean": ref["value"], "std": 0.0, "seeds": 0,
            "encoder_sparsity": ref["sparsity"], "best": False, "reference": True,
        }
    )  # fmt: skip
    measured = board.assign(reference=False, _order=range(len(board)))
    rows["_order"] = rows["task"].map(measured.groupby("task")["_order"].max()) + 0.5
    out = pd.concat([measured, rows], ignore_index=True)
    out["_block"] = out.groupby(["task", "target_sparsity"])["_order"].transform("min")
    out = out.sort_values(["_block", "reference", "_order"], kind="stable")
    return out.drop(columns=["_order", "_block"]).reset_index(drop=True)


def render_board(board: pd.DataFrame, fmt: str) -> str:
    """``board`` (from :func:`long_board`) as Markdown, CSV (numbers unformatted), LaTeX or an HTML table.

    Raises:
        BenchError: an unknown format; the message lists :data:`FORMATS`.
    """
    if fmt not in FORMATS:
        raise BenchError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "csv":
        return board.to_csv(index=False)
    if board.empty:
        return "(no finished cells)"
    rows = [_row(r, _BOLD[fmt]) for r in board.itertuples()]
    return tabulate(rows, headers=HEADERS, tablefmt=_TABLEFMT[fmt], disable_numparse=True)


def _row(r: Any, bold: str) -> list[str]:
    value = f"{r.mean:.2f}" + (f" ± {r.std:.2f}" if r.seeds > 1 else "")
    return [
        r.task, f"{r.target_sparsity:.0%}", r.method, f"{r.metric} {'↑' if r.greater_is_better else '↓'}",
        bold.format(value) if r.best else value, str(r.seeds) if r.seeds else "paper", f"{r.encoder_sparsity:.2%}",
        _known(r.remaining_params, lambda v: f"{v / 1e6:.2f}M of {r.total_params / 1e6:.2f}M"),
        _known(r.reached, "{:.1%}".format), _known(r.trials, "{:.0f}".format),
        _known(r.wall_seconds, "{:.0f} s".format),
        _known(getattr(r, "file_mb", None), lambda v: f"{v:.1f} MB ({r.file_ratio:.0%})"),
        _known(getattr(r, "structured", None), "{:.0%}".format),
        _speed(r, 1), _speed(r, 32),
    ]  # fmt: skip


def _speed(r: Any, batch: int) -> str:
    """"1.85× (csr 0.40×)": the compacted model's speed-up over dense, and the sparse-CSR path's."""
    compacted = getattr(r, f"speed_up_b{batch}_compacted", None)
    csr = getattr(r, f"speed_up_b{batch}_sparse_csr", None)
    return _known(compacted, lambda v: f"{v:.2f}×" + _known(csr, lambda c: f" (csr {c:.2f}×)"))


def _known(value: Any, fmt) -> str:
    return fmt(value) if value is not None and pd.notna(value) else ""
