"""The long leaderboard of ``bench leaderboard --format md|csv|latex|html``, with filters.

One row per (task, target sparsity, method), and per task the dense model and the trivial baseline: the primary
metric as the mean over seeds with its 95% interval, its verdict marks (:mod:`bench.results.annotate`) and the number of
seeds, the measured encoder sparsity and the parameters remaining, the sparsity the method reached on its own before
a projection (where it was projected), the HP-search trials and the wall time, then what the sparsity buys: the
sparse export file's size (and its fraction of the dense file), the encoder's prunable matrices as stored in that
file against their dense fp32 bytes, the share of the pruned weights that compaction removed as whole heads and FFN
units, and the measured CPU speed-up of the compacted model (and of the sparse-CSR path) over the dense one at batch
1 and 32 (``--measure-speed``) and under ONNX Runtime at batch 1, and the p-value against the column's best. Within
each (task, target sparsity) block of pruned methods the significance marks of :mod:`bench.results.significance` are
shown;
the dense and baseline rows are kept by every filter and never ranked. Text formats end with a legend.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.core.errors import BenchError
from bench.core.registry import is_reference
from bench.results.annotate import BOLD, MARK_COLUMNS, MISSING, known, latex_escape, legend, percent, value_text

FORMATS = ("md", "csv", "latex", "html")
_TABLEFMT = {"md": "github", "latex": "latex_raw", "html": "unsafehtml"}
HEADERS = ["task", "sparsity", "method", "metric", "value", "n", "encoder sparsity", "params left", "reached",
           "trials", "wall", "file", "encoder file", "structure", "speed-up b1", "speed-up b32", "ONNX b1",
           "p vs best"]  # fmt: skip
_ROLE_ORDER = {"dense": 0, "baseline": 1}
# Names and descriptions are text; the tables are rendered raw so that the bold markup survives.
_ESCAPE = {"md": str, "latex": latex_escape, "html": html.escape}
# Columns that stay even when empty in every row (the others are dropped: no speed measured, no search run, ...).
_ALWAYS = {"task", "sparsity", "method", "metric", "value", "n", "encoder sparsity", "params left"}


def filter_cells(
    df: pd.DataFrame,
    tasks: list[str] | None = None,
    methods: list[str] | None = None,
    sparsities: list[float] | None = None,
) -> pd.DataFrame:
    """Rows of :func:`bench.results.leaderboard.collect` for ``tasks``, ``methods`` and target ``sparsities``.

    The dense rows of the kept tasks stay whatever ``methods`` and ``sparsities`` say: dense is the reference.

    Raises:
        BenchError: a filter value that matches nothing in ``df``; the message lists the values present.
    """
    keep = pd.Series(True, index=df.index)
    if tasks:
        _check("task", tasks, df["task"])
        keep &= df["task"].isin(tasks)
    dense = df["method"].map(is_reference).astype(bool)
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


def long_board(summary: pd.DataFrame, marks: pd.DataFrame | None = None) -> pd.DataFrame:
    """Sorted rows of :func:`bench.results.leaderboard.summarize` (per task: dense, baseline, then the pruned methods by
    sparsity and mean, best first in the metric's direction), with the columns of ``marks``
    (:func:`bench.results.significance.column_marks`) merged onto the pruned rows: ``mark``, ``p_vs_best``, ``tested``,
    ``test_note``, and ``best`` (``mark == "best"``). Without ``marks`` no column is tested: nothing is marked."""
    if summary.empty:
        return summary.assign(best=pd.Series(dtype=bool), mark=pd.Series(dtype=str))
    out = summary.copy()
    out["signed"] = out["mean"].where(out["greater_is_better"].astype(bool), -out["mean"])
    out["role_order"] = out["role"].map(_ROLE_ORDER).fillna(2)
    out = out.sort_values(["task", "role_order", "target_sparsity", "signed"], ascending=[True, True, True, False])
    out = out.drop(columns=["signed", "role_order"]).reset_index(drop=True)
    if marks is None:
        pruned = out[out["role"] == "pruned"]
        marks = pruned[["task", "target_sparsity", "method"]].assign(
            mark="", p_vs_best=float("nan"), tested=False, test_note=MISSING
        )
    out = out.merge(marks[MARK_COLUMNS], on=["task", "target_sparsity", "method"], how="left")
    out["mark"] = out["mark"].fillna("")
    out["best"] = out["mark"] == "best"
    return out


def with_reference(board: pd.DataFrame, matched: pd.DataFrame) -> pd.DataFrame:
    """``board`` with the published rows of ``matched`` (from :func:`bench.results.reference.matching`) for the metrics
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
            "encoder_sparsity": ref["sparsity"], "best": False, "mark": "", "role": "reference", "reference": True,
        }
    )  # fmt: skip
    measured = board.assign(reference=False, _order=range(len(board)))
    rows["_order"] = rows["task"].map(measured.groupby("task")["_order"].max()) + 0.5
    out = pd.concat([measured, rows], ignore_index=True)
    out["_block"] = out.groupby(["task", "target_sparsity"])["_order"].transform("min")
    out = out.sort_values(["_block", "reference", "_order"], kind="stable")
    return out.drop(columns=["_order", "_block"]).reset_index(drop=True)


def render_board(board: pd.DataFrame, fmt: str, with_legend: bool = True) -> str:
    """``board`` (from :func:`bench.results.leaderboard.board`) as Markdown, CSV (numbers unformatted, one column per
    field: ``ci_low``, ``ci_high``, ``chance``, ``projection``, ``reached_fraction``, ``short_schedule``, ``mark``,
    ``p_vs_best``, ``best`` …), LaTeX or an HTML table; the text formats end with the legend of
    :func:`bench.results.annotate.legend` unless ``with_legend`` is False.

    Raises:
        BenchError: an unknown format; the message lists :data:`FORMATS`.
    """
    if fmt not in FORMATS:
        raise BenchError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "csv":
        return board.to_csv(index=False)
    if board.empty:
        return "(no finished cells)"
    rows = [_row(r, BOLD[fmt], _ESCAPE[fmt]) for r in board.itertuples()]
    empty = ("", "—", _ESCAPE[fmt]("—"))  # cells are escaped already: LaTeX's dash is ---
    keep = [i for i, h in enumerate(HEADERS) if h in _ALWAYS or any(row[i] not in empty for row in rows)]
    rows = [[row[i] for i in keep] for row in rows]
    text = tabulate(rows, headers=[_ESCAPE[fmt](HEADERS[i]) for i in keep], tablefmt=_TABLEFMT[fmt],
                    disable_numparse=True)  # fmt: skip
    notes = legend(board, fmt) if with_legend else ""
    return f"{text}\n\n{notes}" if notes else text


def _row(r: Any, bold: str, escape) -> list[str]:
    """The text cells of one board row; every cell but the value (which carries the bold markup) is ``escape``d."""
    role = getattr(r, "role", "pruned")
    method = f"{r.method} ({r.description})" if role == "baseline" else r.method
    seeds = {"baseline": "—", "reference": "paper"}.get(role, str(r.seeds))
    dash = "" if role in ("baseline", "reference") else "—"  # a measured row from before the newer columns
    cells = [
        r.task, "—" if role == "baseline" else percent(r.target_sparsity), method,
        f"{r.metric} {'↑' if r.greater_is_better else '↓'}", None, seeds,
        _known(r.encoder_sparsity, "{:.2%}".format),
        _known(r.remaining_params, lambda v: f"{v / 1e6:.2f}M of {r.total_params / 1e6:.2f}M"),
        _known(r.reached, "{:.1%}".format), _known(r.trials, "{:.0f}".format),
        _known(r.wall_seconds, "{:.0f} s".format),
        _known(getattr(r, "file_mb", None), lambda v: f"{v:.1f} MB ({r.file_ratio:.0%})"), encoder_text(r) or dash,
        _known(getattr(r, "structured", None), "{:.0%}".format),
        _speed(r, 1), _speed(r, 32), _known(getattr(r, "onnx_speed_up_b1_compacted", None), "{:.2f}×".format) or dash,
        _known(getattr(r, "p_vs_best", None), "{:.3g}".format),
    ]  # fmt: skip
    return [_value(r, bold, escape) if cell is None else escape(cell) for cell in cells]


def _value(r: Any, bold: str, escape) -> str:
    """The value cell: its text ``escape``d, then the bold markup put around the part :func:`value_text` bolds."""
    start, end = "\x00", "\x01"
    text = escape(value_text(r, f"{start}{{}}{end}"))
    before, after = bold.format("\x02").split("\x02")
    return text.replace(start, before).replace(end, after)


def _speed(r: Any, batch: int) -> str:
    """``1.85× (csr 0.40×)``: the compacted model's speed-up over dense, and the sparse-CSR path's."""
    compacted = getattr(r, f"speed_up_b{batch}_compacted", None)
    csr = getattr(r, f"speed_up_b{batch}_sparse_csr", None)
    return _known(compacted, lambda v: f"{v:.2f}×" + _known(csr, lambda c: f" (csr {c:.2f}×)"))


def encoder_text(r: Any) -> str:
    """``4.1 of 42.5 MB (10%)``: the encoder's prunable matrices as stored in the sparse file, of their dense fp32
    bytes; ``""`` where not recorded."""
    stored, dense, ratio = (getattr(r, k, None) for k in ("encoder_mb", "encoder_dense_mb", "encoder_ratio"))
    if not known(ratio):
        return ""
    return f"{stored:.1f} of {dense:.1f} MB ({ratio:.0%})" if known(stored) and known(dense) else f"{ratio:.0%}"


def _known(value: Any, fmt) -> str:
    return fmt(value) if known(value) else ""
