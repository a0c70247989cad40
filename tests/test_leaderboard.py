"""Leaderboard collection and rendering are pure functions of the cell records."""

from __future__ import annotations

from bench.leaderboard import collect, render, table


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
    assert board.loc["movement +distill"].iloc[0].startswith("**75.00 (n=1")


def test_table_puts_dense_on_top_with_mean_std_and_measured_sparsity():
    board = table(collect(RECORDS))
    assert list(board.index) == ["dense", "l0", "movement"], "failed cells are left out, dense first"
    assert list(board.columns) == ["mnli accuracy↑ @ 90%"]
    assert board.loc["dense"].iloc[0] == "81.00 ± 1.41 (n=2, sp 0.0%, 2.0M)"
    assert board.loc["movement"].iloc[0] == "**71.00 ± 1.41 (n=2, sp 90.0%, 2.0M)**", "the best pruned value is bold"
    assert board.loc["l0"].iloc[0] == "60.00 (n=1, sp 90.0%, reached 85.0%, 2.0M)"


def test_render_is_markdown():
    text = render(table(collect(RECORDS)))
    assert text.splitlines()[0].startswith("| method") and "| dense" in text.splitlines()[2]
    assert render(table(collect([]))) == "(no finished cells)"
