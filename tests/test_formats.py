"""The long leaderboard: formats, best marking, direction arrows and filters (pure functions of records)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from bench.core.errors import BenchError
from bench.results.leaderboard import board as ranked
from bench.results.leaderboard import collect, summarize
from bench.results.render import filter_cells, long_board, render_board
from tests.test_leaderboard import RECORDS, record

LOWER_IS_BETTER = record("movement", "toy", 0.9, 0, 3.0, 0.9)
LOWER_IS_BETTER["greater_is_better"] = False
LOWER_IS_BETTER["primary_metric"] = LOWER_IS_BETTER["cell"]["task"]["name"] = "toy"
LOWER_IS_BETTER["metrics"] = {"toy": 3.0}
LOWER2 = {**LOWER_IS_BETTER, "id": "other", "metrics": {"toy": 5.0}}
LOWER2["cell"] = {**LOWER_IS_BETTER["cell"], "method": "l0"}


def board(recs=RECORDS, **filters):
    return long_board(summarize(filter_cells(collect(recs), **filters)))


def first(k: int, n: int = 1000) -> np.ndarray:
    """Per-example accuracy (0/100) with the first ``k`` of ``n`` examples right."""
    return 100.0 * (np.arange(n) < k)


def ranked_board(recs=RECORDS):
    """RECORDS with per-example results: movement's right answers are a superset of l0's, so it is best."""
    cells = collect(recs)
    ids = dict(zip(zip(cells["method"], cells["seed"], strict=True), cells["cell_id"], strict=True))
    return ranked(cells, {ids["movement", 0]: first(700), ids["movement", 1]: first(720), ids["l0", 0]: first(600)})


def test_rows_dense_first_then_ranked_and_unmarked_without_predictions():
    b = board()
    assert list(b["method"]) == ["dense", "movement", "l0"]
    assert list(b["best"]) == [False, False, False] and set(b["mark"]) == {""}, "nothing tested: nothing marked"
    assert b["tested"].tolist()[1:] == [False, False]
    assert b.loc[1, "std"] == pytest.approx(1.41421356) and b.loc[1, "seeds"] == 2


def test_rows_dense_first_then_ranked_with_the_tested_best_marked():
    b = ranked_board()
    assert list(b["method"]) == ["dense", "movement", "l0"]
    assert list(b["best"]) == [False, True, False], "dense is the reference, never 'best'"
    assert b.loc[2, "p_vs_best"] < 0.001 and pd.isna(b.loc[1, "p_vs_best"])


def test_best_follows_the_metric_direction():
    cells = collect([LOWER_IS_BETTER, LOWER2])
    noise = np.random.default_rng(0).normal(0, 0.1, 300)
    b = ranked(cells, {LOWER_IS_BETTER["id"]: 3.0 + noise, "other": 5.0 + noise})
    assert b.loc[b["best"], "method"].tolist() == ["movement"], "3.0 beats 5.0 when lower is better"
    assert "toy ↓" in render_board(b, "md")


@pytest.mark.parametrize(
    ("fmt", "bold", "marker"),
    [("md", "**71.00 [58.3, 83.7]**", "| task"), ("latex", "\\textbf{71.00 [58.3, 83.7]}", "\\begin{tabular}"),
     ("html", "<b>71.00 [58.3, 83.7]</b>", "<table>")],
)  # fmt: skip
def test_text_formats_mark_the_best_and_show_every_column(fmt, bold, marker):
    text = render_board(ranked_board(), fmt)
    assert marker in text and bold in text and text.count(bold) == 1
    for header in ("value", "n", "encoder sparsity", "params left", "reached", "trials", "p vs best"):
        assert header in text
    for header in ("wall", "file", "structure", "speed-up b1", "speed-up b32"):
        table = text.split("\n\n")[0]  # the legend follows a blank line
        assert header not in table, f"{header!r}: empty in every row (no wall time, export or speed recorded)"
    reached = "85.0\\%" if fmt == "latex" else "85.0%"  # a bare % starts a LaTeX comment
    arrow = "accuracy $\\uparrow$" if fmt == "latex" else "accuracy ↑"
    assert arrow in text and reached in text, "arrow, and the sparsity l0 reached before projection"
    assert "Paired sign-flip permutation test" in text, "the legend under the table"


def test_csv_keeps_numbers_and_the_best_flag():
    frame = pd.read_csv(io.StringIO(render_board(ranked_board(), "csv")))
    assert frame.loc[frame["method"] == "movement", "mean"].item() == 71.0
    assert frame.loc[frame["method"] == "movement", ["ci_low", "ci_high"]].to_numpy().round(2).tolist() == [
        [58.29, 83.71]
    ]
    assert frame["best"].tolist() == [False, True, False] and frame["mark"].fillna("").tolist() == ["", "best", ""]


def test_filters_keep_dense_and_refuse_values_that_match_nothing():
    assert list(board(methods=["l0"])["method"]) == ["dense", "l0"]
    assert list(board(sparsities=[0.9])["method"]) == ["dense", "movement", "l0"]
    assert board(tasks=["mnli"]).shape[0] == 3
    with pytest.raises(BenchError, match="no cells for task 'squad'; present: mnli"):
        board(tasks=["squad"])
    with pytest.raises(BenchError, match="no cells at sparsity 0.5; present: 0.9"):
        board(sparsities=[0.5])
    with pytest.raises(BenchError, match="unknown format 'pdf'; valid: md, csv, latex, html"):
        render_board(board(), "pdf")


def test_reference_rows_sit_after_their_block_marked_and_never_best():
    from bench.results.render import with_reference

    matched = pd.DataFrame(
        {"task": ["mnli", "mnli"], "target_sparsity": [0.9, 0.9], "metric": ["accuracy", "f1"],
         "label": ["movement", "movement"], "source": ["Sanh et al. 2020", "x"], "table": ["Table 2", "x"],
         "value": [79.3, 1.0], "sparsity": [0.9, 0.9]}
    )  # fmt: skip
    b = with_reference(board(), matched)
    assert list(b["method"]) == ["dense", "movement", "l0", "[paper] movement (Sanh et al. 2020, Table 2)"]
    assert not b["best"].iloc[-1] and b["reference"].tolist() == [False, False, False, True]
    last = [c.strip() for c in render_board(b, "md", with_legend=False).splitlines()[-1].strip("|").split("|")]
    assert last[2:7] == ["[paper] movement (Sanh et al. 2020, Table 2)", "accuracy ↑", "79.30", "paper", "90.00%"]


def test_no_matching_reference_rows_leave_the_board_as_it_is():
    from bench.results.render import with_reference

    empty = pd.DataFrame(columns=["task", "target_sparsity", "metric", "label", "source", "table", "value", "sparsity"])
    b = with_reference(board(), empty)
    assert list(b["method"]) == ["dense", "movement", "l0"] and not b["reference"].any()


# ---- LaTeX that compiles ---------------------------------------------------------------------------------------
def unescaped(text: str, char: str) -> int:
    """How often ``char`` occurs without a backslash before it."""
    return sum(1 for i, c in enumerate(text) if c == char and (i == 0 or text[i - 1] != "\\"))


def check_latex(text: str) -> None:
    """What pdflatex needs from a table and its legend, checked structurally (no TeX installation here): ASCII
    only (no unmapped ↑, ±, é), balanced braces, paired math ``$``, no bare % # _ ^ ~, and the same number of
    column separators in every row of the tabular."""
    assert text.isascii(), sorted({c for c in text if not c.isascii()})
    assert unescaped(text, "{") == unescaped(text, "}")
    assert unescaped(text, "$") % 2 == 0
    for char in "%#_^~":
        assert unescaped(text, char) == 0, char
    table = text[text.index("\\begin{tabular}") : text.index("\\end{tabular}")]
    rows = [line for line in table.splitlines()[1:] if line.strip().endswith("\\\\")]
    assert len({unescaped(row, "&") for row in rows}) == 1, rows


def test_latex_compiles_structurally_with_hostile_names():
    hostile = record("mo_ve%ment #1 {x} ~^ $a$ ±é↑", "mnli", 0.9, 0, 70.0, 0.9)
    hostile["baseline"] = {"description": "class 1 ('great') & 50% — ≥ ≈ \\ end"}
    text = render_board(ranked_board([*RECORDS, hostile]), "latex")
    check_latex(text)
    assert "mo\\_ve\\%ment \\#1 \\{x\\} \\textasciitilde{}\\textasciicircum{} \\$a\\$ $\\pm$e$\\uparrow$" in text
    check_latex(render_board(ranked_board(), "latex"))


@pytest.mark.parametrize("bad", ["100%", "a_b", "x & y", "{", "↑"])
def test_the_latex_check_catches_each_mistake(bad):
    good = "\\begin{tabular}{ll}\n h & i \\\\\n a & b \\\\\n\\end{tabular}"
    check_latex(good)
    with pytest.raises(AssertionError):
        check_latex(good.replace(" b ", f" {bad} "))
