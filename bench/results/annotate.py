"""The words and marks beside a leaderboard number, and the legend that explains them.

A value reads ``78.67 [76.1, 81.2]``: the mean over seeds and its 95% confidence interval (``[—]`` where the cells
recorded none). Then, in this order: bold (the format's own: ``**``, ``\\textbf``, ``<b>``) when the row is
significantly the best of its column, `` ≈`` when it ties with the best, `` chance`` (or ``chance 2/3`` when the
seeds disagree), ``†`` when the final projection did most of the pruning and ``‡`` for a short pruning schedule.
Every function takes a row of :func:`bench.results.leaderboard.board` (an ``itertuples`` row) and is pure.
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from bench.results.verdicts import REACHED_MIN, labels

# The paired tests behind the marks (bench.results.significance); here so that the text layer needs nothing above it.
ALPHA = 0.05
# Sign-flip resamples per paired test. 2000 bounds p below by 1e-3, so a Holm-corrected comparison of up to ~25
# methods in one column can still reach 0.05, and keeps SQuAD-sized columns (3 seeds x 10570 questions) to a few
# seconds per method on two cores; scipy's 10000 default costs five times that.
RESAMPLES = 2000
MISSING = "no per-example predictions: cells from before they were saved"
MARK_COLUMNS = ["task", "target_sparsity", "method", "mark", "p_vs_best", "tested", "test_note"]

PROJECTION, SHORT, TIE = "†", "‡", "≈"
BOLD = {"md": "**{}**", "latex": "\\textbf{{{}}}", "html": "<b>{}</b>"}


def known(value: Any) -> bool:
    """True for a value that is neither None, NaN nor pandas' NA."""
    return value is not None and not bool(pd.isna(value))


def is_true(value: Any) -> bool:
    """True for a known, truthy verdict (None, NaN and pandas' NA are unknown, so not true)."""
    return known(value) and bool(value)


def percent(fraction: float) -> str:
    """A target sparsity (a fraction) as the shortest exact percentage: 0.975 → ``97.5%``, 0.98 → ``98%``, 0.5 →
    ``50%``. Exact, so two different targets never share a label (``.0%`` showed 0.975 and 0.98 both as 98%)."""
    from decimal import Decimal

    return f"{Decimal(repr(float(fraction))).scaleb(2).normalize():f}%"


def interval_text(row: Any) -> str:
    """``[low, high]`` of the row's 95% interval (one decimal, metric units), ``[—]`` when unknown."""
    low, high = getattr(row, "ci_low", None), getattr(row, "ci_high", None)
    return f"[{low:.1f}, {high:.1f}]" if known(low) and known(high) else "[—]"


def chance_text(row: Any) -> str:
    """``chance`` when every seed with a verdict is a chance cell, ``chance k/n`` when only k of n are, else ``""``."""
    hits, of = getattr(row, "chance_seeds", None), getattr(row, "chance_known", None)
    if not known(hits) or not hits:
        return ""
    return "chance" if hits == of else f"chance {int(hits)}/{int(of)}"


def footnotes(row: Any) -> str:
    """``†`` for a projection row, ``‡`` for a short-schedule row (both, or none)."""
    return (PROJECTION if is_true(getattr(row, "projection", None)) else "") + (
        SHORT if is_true(getattr(row, "short_schedule", None)) else ""
    )


def value_text(row: Any, bold: str = BOLD["md"]) -> str:
    """The value with its interval, significance mark, chance word and footnote marks (``bold``: a format string
    with one ``{}``). Published reference rows show the bare value."""
    mean = f"{row.mean:.2f}"
    if getattr(row, "role", None) == "reference":
        return mean
    core = f"{mean} {interval_text(row)}"
    mark = getattr(row, "mark", "")
    if mark == "best":
        core = bold.format(core)
    elif mark == "tie":
        core += f" {TIE}"
    chance = chance_text(row)
    return core + (f" {chance}" if chance else "") + footnotes(row)


def cell_text(row: Any) -> str:
    """A value of the ``leaderboard.md`` table: ``78.67 [76.1, 81.2] n=3 (sp 90.0%, reached 85.0%, 2.0M, …)``; for
    a baseline row, the value and what the baseline predicts."""
    if row.role == "baseline":
        return f"{value_text(row)} ({row.description})"
    reached = f", reached {row.reached:.1%}" if known(row.reached) else ""
    file = f", {row.file_mb:.0f} MB" if known(row.file_mb) else ""
    stored, dense = getattr(row, "encoder_mb", None), getattr(row, "encoder_dense_mb", None)
    if known(stored) and known(dense):
        file += f" (encoder {stored:.1f} of {dense:.1f} MB)"
    speed = f", {row.speed_up_b1_compacted:.2f}× b1" if known(row.speed_up_b1_compacted) else ""
    onnx = getattr(row, "onnx_speed_up_b1_compacted", None)
    if known(onnx):  # ONNX Runtime's speed-up of the compacted model, beside PyTorch's
        speed += f" (ONNX {onnx:.2f}×)" if speed else f", ONNX {onnx:.2f}× b1"
    return (
        f"{value_text(row)} n={row.seeds} (sp {row.encoder_sparsity:.1%}{reached}, "
        f"{row.remaining_params / 1e6:.1f}M{file}{speed})"
    )


VALUES = (
    "Values: the primary metric, mean over seeds with its 95% confidence interval [low, high] (Student t over the "
    "n seeds when n ≥ 2; for one seed the cell's bootstrap interval over the eval examples; [—]: not recorded, cells "
    "from before intervals were kept), then the measured encoder sparsity (exact zeros in Q, K, V, O, FFN in/out), "
    "for methods that project onto the target the sparsity they reached on their own before the projection, the "
    "total parameters remaining, the size of the sparse export file (bench export) and, for cells run with "
    "--measure-speed, the compacted model's CPU speed-up over the dense one at batch 1 (median latency ratio, 128 "
    "tokens; see bench leaderboard --format csv for the rest)."
)
MARKS = (
    "Marks, per column (task × target sparsity), among the pruned methods that are not chance rows: bold = "
    "significantly better than every other one; {tie} = not significantly worse than the column's best (a tie: no "
    "method is bold then). Paired sign-flip permutation test ({resamples} resamples) of the per-example eval results "
    "against the best mean, seeds paired by number (those every tested method has), Holm-corrected, α = {alpha}. "
    "Dense and the baseline are references and are never ranked."
)
CHANCE = (
    "chance: at least half of the row's seeds are chance cells (their score lies within the 95% interval of the "
    "task's trivial baseline, or on its wrong side, or the model gave every example the same prediction); chance k/n: "
    "k of the n seeds are. A chance row is never marked best or tie."
)
ENCODER = (
    "encoder: the encoder's prunable matrices (Q, K, V, O, FFN in/out) as stored in the sparse export file, against "
    "their dense fp32 bytes; the whole file also holds the embeddings, biases, norms and the task head."
)
ONNX = (
    "ONNX: the compacted model's speed-up over the dense one when both run in ONNX Runtime on CPU (batch 1, median "
    "latency ratio)."
)
BASELINE = (
    "baseline: the task's trivial baseline (what it predicts, in parentheses) on the same eval split; never ranked."
)


def _where(row: Any) -> str:
    return f"{row.task} {row.method} @ {percent(row.target_sparsity)}"


def _reached(row: Any) -> str:
    return labels({"projection": True, "reached_sparsity": row.reached, "target_sparsity": row.target_sparsity})[0]


def legend_lines(board: pd.DataFrame) -> list[str]:
    """Plain-text legend of ``board`` (from :func:`bench.results.leaderboard.board`): what values and marks mean, and
    which rows carry ``†``/``‡`` (with their numbers) and which columns were not tested."""
    if board.empty:
        return []
    lines = [VALUES]
    for column, line in (("encoder_ratio", ENCODER), ("onnx_speed_up_b1_compacted", ONNX)):
        if column in board and board[column].map(known).any():  # records from before issue 17 have neither
            lines.append(line)
    pruned = board[board["role"] == "pruned"]
    if not pruned.empty:
        lines.append(MARKS.format(tie=TIE, resamples=RESAMPLES, alpha=ALPHA))
    if (board.get("chance_seeds", pd.Series(dtype=float)).fillna(0) > 0).any():
        lines.append(CHANCE)
    rows = list(board.itertuples())
    cut = [f"{_where(r)}: {_reached(r)}" for r in rows if is_true(getattr(r, "projection", None)) and known(r.reached)]
    if cut:
        lines.append(f"{PROJECTION} the final projection did most of the pruning (the method reached less than "
                     f"{REACHED_MIN:.0%} of its target on its own): " + "; ".join(cut) + ".")  # fmt: skip
    short = [f"{_where(r)}: {r.ramp_steps:.0f} < {r.min_ramp_steps:.0f} steps" for r in rows
             if is_true(getattr(r, "short_schedule", None)) and known(r.ramp_steps)]  # fmt: skip
    if short:
        lines.append(f"{SHORT} short schedule: the pruning ramp (optimizer steps) is shorter than the method's "
                     "min_ramp_steps, the schedule it needs: " + "; ".join(short) + ".")  # fmt: skip
    if (board["role"] == "baseline").any():
        lines.append(BASELINE)
    if "tested" in pruned:
        untested = pruned[pruned["tested"].eq(False)].drop_duplicates(["task", "target_sparsity"])
        for note, group in untested.groupby("test_note", sort=False):
            columns = ", ".join(f"{r.task} @ {percent(r.target_sparsity)}" for r in group.itertuples())
            lines.append(f"Not tested, so nothing is marked: {columns} ({note}).")
    if (board["role"] == "reference").any():
        lines.append("[paper]: published values (source and table in the row), never ranked.")
    return lines


# LaTeX's special characters and the non-ASCII ones our tables use, as pdflatex reads them without extra packages.
LATEX = str.maketrans({
    "\\": "\\textbackslash{}", "{": "\\{", "}": "\\}", "%": "\\%", "&": "\\&", "#": "\\#", "_": "\\_",
    "$": "\\$", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}", "↑": "$\\uparrow$", "↓": "$\\downarrow$",
    "×": "$\\times$", "±": "$\\pm$", "≈": "$\\approx$", "≥": "$\\geq$", "≤": "$\\leq$", "·": "$\\cdot$",
    "→": "$\\rightarrow$", "−": "-", "—": "---", "–": "--", "…": "\\ldots{}", "†": "\\dag{}", "‡": "\\ddag{}",
    "’": "'", "‘": "`", "“": "``", "”": "''", "σ": "$\\sigma$", "λ": "$\\lambda$", "θ": "$\\theta$",
})  # fmt: skip


def latex_escape(text: Any) -> str:
    """``text`` as LaTeX that pdflatex compiles: special characters escaped, the symbols above as math, any other
    non-ASCII character transliterated (accents dropped) or, failing that, replaced by ``?``."""
    import unicodedata

    escaped = str(text).translate(LATEX)
    if escaped.isascii():
        return escaped
    return "".join(
        ch if ch.isascii() else unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode() or "?"
        for ch in escaped
    )


def legend(board: pd.DataFrame, fmt: str) -> str:
    """:func:`legend_lines` for ``fmt``: Markdown bullets, LaTeX paragraphs (special characters escaped), HTML
    paragraphs (escaped); ``""`` for CSV."""
    lines = legend_lines(board)
    if fmt == "md":
        return "\n".join(f"- {line}" for line in lines)
    if fmt == "latex":
        return "\n".join(f"{latex_escape(line)}\\par" for line in lines)
    if fmt == "html":
        return "".join(f"<p class=muted>{html.escape(line)}</p>" for line in lines)
    return ""
