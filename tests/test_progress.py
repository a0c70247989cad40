"""A running matrix says what it is doing: the cell (x of N) when it starts, the optimizer step within it, on the
terminal and in RESULTS/logs/progress.log."""

from __future__ import annotations

import re

from bench.results.folder import ResultsFolder
from bench.run.progress import StepClock
from bench.run.runner import run_matrix
from tests.conftest import needs_minilm
from tests.test_runner import tiny_matrix


def test_the_step_is_reported_every_tenth_of_the_run_and_at_its_end():
    lines: list[str] = []
    clock = StepClock(lines.append, fraction=0.1, seconds=3600)
    clock.start(95)
    for step in range(1, 96):
        clock.step(step)
    assert [int(re.match(r"step (\d+)/95", line).group(1)) for line in lines] == [*range(10, 91, 10), 95]
    assert lines[-1] == "step 95/95 (100%)"


def test_a_long_silence_reports_the_step_before_its_tenth():
    lines: list[str] = []
    clock = StepClock(lines.append, fraction=0.1, seconds=0.0)  # every step is "a minute later"
    clock.start(1000)
    for step in (1, 2, 3):
        clock.step(step)
    assert lines == ["step 1/1000 (0%)", "step 2/1000 (0%)", "step 3/1000 (0%)"]


@needs_minilm
def test_a_tiny_matrix_says_which_cell_and_step_it_is_at_on_the_terminal_and_in_the_log(tmp_path, tiny_model_dir):
    matrix = tiny_matrix(tmp_path, tiny_model_dir, methods=["dense", "magnitude"])  # 48 examples, batch 16: 3 steps
    lines: list[str] = []
    run_matrix(matrix, log=lines.append)
    for cell, label in ((1, "dense/sst2@0#0"), (2, "magnitude/sst2@0.5#0")):
        assert any(line.startswith(f"[cell {cell}/2") and label in line for line in lines), lines
        steps = [line for line in lines if line.startswith(f"[cell {cell}/2] {label}: step ")]
        assert steps[-1] == f"[cell {cell}/2] {label}: step 3/3 (100%)" and len(steps) == 3, lines
    logged = ResultsFolder(matrix.output).progress_log.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in logged] == lines, "the log holds every terminal line, time-stamped"
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in logged)

    run_matrix(tiny_matrix(tmp_path, tiny_model_dir, methods=["dense", "magnitude"]), log=lambda line: None)
    last = ResultsFolder(matrix.output).progress_log.read_text().splitlines()[-1]
    assert last.endswith("2 of 2 cells already done, skipped: 2 finished"), "a rerun appends to the log"
