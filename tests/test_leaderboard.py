"""Leaderboard collection and rendering are pure functions of the cell records (here: records from before
intervals, verdicts and per-example predictions were kept; tests/test_significance_board.py has the new ones)."""

from __future__ import annotations

from bench.results.leaderboard import collect, render, table


def record(method, task, sparsity, seed, value, measured, reached=None, status="finished"):
    info = {} if reached is None else {"sparsity_before_projection": reached}
    return {
        "id": f"{method}{task}{sparsity}{seed}", "status": status, "primary_metric": "accuracy",
        "greater_is_better": True, "metrics": {"accuracy": value}, "method_info": info,
        "cell": {"method": method, "task": {"name": task}, "sparsity": sparsity, "seed": seed},
        "sparsity": {"encoder_sparsity": measured, "remaining_params": 2e6, "total_params": 4e6},
    }  # fmt: skip


RECORDS = [
    record("movement", "mnli", 0.9, 0, 70.0, 0.9),
    record("movement", "mnli", 0.9, 1, 72.0, 0.9),
    record("dense", "mnli", 0.0, 0, 80.0, 0.0),
    record("dense", "mnli", 0.0, 1, 82.0, 0.0),
    record("l0", "mnli", 0.9, 0, 60.0, 0.9, reached=0.85),
    record("magnitude", "mnli", 0.9, 0, 1.0, 0.9, status="failed"),
]
DISTILLED = record("movement", "mnli", 0.9, 0, 75.0, 0.9)
DISTILLED["cell"]["distillation"] = {"temperature": 2.0, "teacher": "x"}


def test_distilled_cells_get_their_own_row():
    board = table(collect([*RECORDS, DISTILLED]))
    assert list(board.index) == ["dense", "l0", "movement", "movement +distill"]
    assert board.loc["movement +distill"].iloc[0].startswith("75.00 [—] n=1"), "one seed, no recorded interval"


def test_table_puts_dense_on_top_with_mean_interval_n_and_measured_sparsity():
    board = table(collect(RECORDS))
    assert list(board.index) == ["dense", "l0", "movement"], "failed cells are left out, dense first; no baseline"
    assert list(board.columns) == ["mnli accuracy↑ @ 90%"]
    # two seeds: mean ± t(0.975, 1) * s / sqrt(2) = 81 ± 12.706 * 1.414 / 1.414
    assert board.loc["dense"].iloc[0] == "81.00 [68.3, 93.7] n=2 (sp 0.0%, 2.0M)"
    assert board.loc["movement"].iloc[0] == "71.00 [58.3, 83.7] n=2 (sp 90.0%, 2.0M)", (
        "the highest mean is not bold: without per-example predictions nothing is tested"
    )
    assert board.loc["l0"].iloc[0] == "60.00 [—] n=1 (sp 90.0%, reached 85.0%, 2.0M)"


def test_table_bolds_only_a_tested_best():
    import numpy as np

    cells = collect(RECORDS)
    ids = dict(zip(zip(cells["method"], cells["seed"], strict=True), cells["cell_id"], strict=True))
    first = lambda k: 100.0 * (np.arange(1000) < k)  # noqa: E731 - l0's right answers are a subset of movement's
    arrays = {ids["movement", 0]: first(700), ids["movement", 1]: first(720), ids["l0", 0]: first(600)}
    board = table(cells, arrays)
    assert board.loc["movement"].iloc[0] == "**71.00 [58.3, 83.7]** n=2 (sp 90.0%, 2.0M)"
    assert "**" not in board.loc["l0"].iloc[0] and "**" not in board.loc["dense"].iloc[0]


def test_render_is_markdown():
    text = render(table(collect(RECORDS)))
    assert text.splitlines()[0].startswith("| method") and "| dense" in text.splitlines()[2]
    assert render(table(collect([]))) == "(no finished cells)"


def test_targets_that_round_to_the_same_percent_stay_two_columns():
    """0.975 and 0.98 both printed as "98%" made one column, and one of the two cells was silently dropped."""
    from bench.results.leaderboard import summarize
    from bench.results.render import long_board, render_board

    close = [record("movement", "mnli", 0.975, 0, 71.0, 0.975), record("movement", "mnli", 0.98, 0, 65.0, 0.98),
             record("dense", "mnli", 0.0, 0, 80.0, 0.0)]  # fmt: skip
    board = table(collect(close))
    assert list(board.columns) == ["mnli accuracy↑ @ 97.5%", "mnli accuracy↑ @ 98%"]
    assert [text[:5] for text in board.loc["movement"]] == ["71.00", "65.00"], "both cells appear"
    assert board.loc["dense"].iloc[0] == board.loc["dense"].iloc[1], "dense stands in every column"
    text = render_board(long_board(summarize(collect(close))), "md")
    rows = [[c.strip() for c in line.split("|")[1:4]] for line in text.splitlines() if line.startswith("| mnli")]
    assert [target for _, target, method in rows if method == "movement"] == ["97.5%", "98%"], "exact row labels"
    assert "Not tested, so nothing is marked: mnli @ 97.5%, mnli @ 98%" in text, "the legend names both columns"
    from bench.results.annotate import percent

    assert [percent(t) for t in (0.5, 0.9, 0.0, 0.999)] == ["50%", "90%", "0%", "99.9%"]


def test_granularity_variants_get_their_own_rows():
    structured = record("movement", "mnli", 0.9, 0, 60.0, 0.9)
    structured["id"] = "structured-cell"
    structured["cell"] = {**structured["cell"], "method_hparams": {"granularity": "structured"}}
    blocks = record("movement", "mnli", 0.9, 0, 61.0, 0.9)
    blocks["id"] = "block-cell"
    blocks["cell"] = {**blocks["cell"], "method_hparams": {"granularity": "block", "block_size": 16}}
    cells = collect([*RECORDS, structured, blocks])
    assert {"movement", "movement +structured", "movement +block16"} <= set(cells["method"])
    assert cells.loc[cells["cell_id"] == "structured-cell", "value"].item() == 60.0
