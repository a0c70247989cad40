"""What a running matrix is doing, for whoever watches it: one line when a cell starts ("cell x of N"), the
optimizer step within the cell every 10% of its steps or every minute, and one when it ends. Lines go to the
terminal (stderr, through the caller's ``log``) and are appended, time-stamped, to ``RESULTS/logs/progress.log``,
so a matrix that has printed nothing for minutes can be checked from another shell (``tail -f``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from bench.results.folder import ResultsFolder


class ProgressLog:
    """A ``log(line)`` that also appends ``YYYY-mm-dd HH:MM:SS line`` to ``output/logs/progress.log``.

    The file is opened per line (cheap at a few lines a minute; several workers may append to it). If it cannot
    be written (a read-only or full disk), one line says so on ``log`` and the file is left alone from then on:
    progress never stops a matrix.
    """

    def __init__(self, log: Callable[[str], None], output: Path):
        self.log, self.path = log, ResultsFolder(output).progress_log
        self.broken = False

    def __call__(self, line: str) -> None:
        self.log(line)
        if self.broken:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        except OSError as err:
            self.broken = True
            self.log(f"warning: cannot append to {self.path} ({err.strerror or err}); progress stays on the terminal")


class StepClock:
    """Decides when to report the optimizer step: every ``fraction`` of ``total`` steps (at least every step of a
    short run) and whenever ``seconds`` of wall time passed since the last report; always at the last step.

    Args:
        report: called with ``"step s/S (p%)"``.
        fraction: of the run's optimizer steps between reports (0.1: ten lines per run).
        seconds: longest silence between reports, in seconds of wall time.
    """

    def __init__(self, report: Callable[[str], None], fraction: float = 0.1, seconds: float = 60.0):
        self.report, self.fraction, self.seconds = report, fraction, seconds
        self.total, self.every, self.next_step, self.last = 0, 1, 1, time.monotonic()

    def start(self, total: int) -> None:
        self.total = max(int(total), 1)
        self.every = max(1, math.ceil(self.total * self.fraction))
        self.next_step, self.last = self.every, time.monotonic()

    def step(self, step: int) -> None:
        now = time.monotonic()
        if step < self.next_step and now - self.last < self.seconds and step != self.total:
            return
        self.report(f"step {step}/{self.total} ({100 * step // self.total}%)")
        self.last = now
        self.next_step = (step // self.every + 1) * self.every
