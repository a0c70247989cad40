"""The worker loop: claim a cell from the queue, run it, store its record; until the matrix has no open cell.

``bench run`` works on its own matrix with a :class:`Worker` (:func:`bench.run.runner.run_matrix`); ``bench worker``
joins the same queue from any number of other processes or machines. Claims are atomic and held by a lease the
worker renews (:meth:`bench.run.queue.CellQueue.holding`); only the holder can store the cell's record, so no cell is
finalized twice. What running one cell means is :class:`bench.run.cell_run.CellRunner`'s.

Faults: a cell whose worker was killed is taken over (at once on the same host, after its lease elsewhere) and
restarts from scratch, and the killed attempt's MLflow runs are marked FAILED. SIGTERM and Ctrl-C give the claim
back and mark the run KILLED (:func:`terminate_as_exit`).
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from bench.config.cell import Cell
from bench.results import records
from bench.results.cell_record import FINISHED
from bench.results.folder import ResultsFolder
from bench.run import stop
from bench.run.cell_run import CellRunner, Log
from bench.run.progress import ProgressLog
from bench.run.queue import CLAIMED, TERMINAL, CellQueue, QueuedCell, worker_name
from bench.run.search import fail_abandoned_trials


class Worker:
    """Claims cells from the queue and runs them until every cell of the matrix is finished or failed.

    Args:
        queue: the cell queue.
        output: results folder (records, saved models); shared between machines when cells distil.
        tracking_uri: MLflow tracking URI.
        name: this worker's name in claims (default host name plus a random suffix).
        retry_failed: also take cells recorded as failed.
        poll_seconds: wait between looks at the queue while other workers hold every open cell.
        experiment: the MLflow experiment (:func:`bench.run.tracking.experiment_name`).
    """

    def __init__(
        self,
        queue: CellQueue,
        output: Path,
        tracking_uri: str,
        name: str | None = None,
        log: Log = print,
        retry_failed: bool = False,
        poll_seconds: float | None = None,
        experiment: str | None = None,
    ):
        from bench.run.search import make_storage
        from bench.run.tracking import make_tracker

        self.queue, self.output, self.folder = queue, Path(output), ResultsFolder(output)
        self.log = log if isinstance(log, ProgressLog) else ProgressLog(log, self.output)
        self.waiting: list[str] = []  # the open cells this worker last said it waits for
        self.name = name or worker_name()
        self.retry_failed = retry_failed
        self.poll_seconds = poll_seconds if poll_seconds is not None else min(5.0, queue.lease_seconds / 4)
        self.tracker = make_tracker(tracking_uri, experiment, self.folder.tracking_artifacts)
        storage = make_storage(queue.url, heartbeat_seconds=max(1, int(queue.lease_seconds / 4)))
        self.cells = CellRunner(self.folder, self.tracker, storage, self.name, self.log)
        self.durations: list[float] = []  # seconds per cell run so far, for the ETA
        self.folder.cells.mkdir(parents=True, exist_ok=True)

    def work(self, mid: str | None = None) -> None:
        """Work until no cell of matrix ``mid`` (all matrices when None) is open.

        SIGTERM is turned into ``SystemExit`` while working, so a terminated worker gives its claim back.
        """
        with terminate_as_exit():
            self._work(mid)

    def _work(self, mid: str | None) -> None:
        if self.retry_failed:
            self.queue.reopen_failed(mid)
        while True:
            stop.check()
            rows = self.queue.cells(mid)
            open_rows = [r for r in rows if self.is_open(r)]
            if not open_rows:
                return
            self.release_dead_holders(open_rows)
            claimable = (r for r in open_rows if self.ready(r, rows))
            claimed = next((r for r in claimable if self.queue.claim(r.cell_id, self.name)), None)
            if claimed is None:
                self.say_waiting(open_rows)
                time.sleep(self.poll_seconds)  # others hold the open cells: wait, take over if they die
                continue
            self.process(claimed, rows)

    def release_dead_holders(self, rows: list[QueuedCell]) -> None:
        """End the claims of same-host workers that were killed, so their cells restart now, not after the lease."""
        for row in rows:
            if row.state == CLAIMED and row.worker != self.name and self.queue.release_dead(row.cell_id, row.worker):
                self.log(f"{Cell.from_dict(row.cell).label()}: its worker {row.worker} is dead; taking the cell over")

    def say_waiting(self, open_rows: list[QueuedCell]) -> None:
        """One line when the open cells this worker waits for change (not one per poll)."""
        waiting = sorted(r.cell_id for r in open_rows)
        if waiting == self.waiting:
            return
        self.waiting = waiting
        held = sum(r.state == CLAIMED for r in open_rows)
        self.log(f"waiting: {len(open_rows)} open cell(s) of the matrix, {held} being run by other workers, "
                 f"{len(open_rows) - held} waiting for their dense teacher")  # fmt: skip

    @staticmethod
    def is_open(row: QueuedCell) -> bool:
        return row.state not in TERMINAL

    def ready(self, row: QueuedCell, rows: list[QueuedCell]) -> bool:
        """A distilled cell waits for its teacher to be done, wherever the teacher was queued (a failed teacher
        makes it fail at once, and so does one missing from the queue: it never waits for nothing)."""
        teacher = (row.cell.get("distillation") or {}).get("teacher")
        if teacher is None:
            return True
        state = next((r.state for r in rows if r.cell_id == teacher), None)
        if state is None:
            found = self.queue.row(teacher)
            state = found.state if found is not None else FINISHED
        return state in TERMINAL

    def process(self, row: QueuedCell, rows: list[QueuedCell]) -> None:
        """Run the claimed cell ``row`` (one of the matrix's ``rows``), holding its lease; store its record in the
        queue and ``OUTPUT/cells`` only while the claim is still this worker's, and close its MLflow run.

        Raises:
            RuntimeError: the queued cell does not round-trip to its id (a queue written by another version).
            KeyboardInterrupt, SystemExit: after giving the claim back and marking the run KILLED.
        """
        cell = Cell.from_dict(row.cell)
        if cell.id != row.cell_id:
            raise RuntimeError(f"queued cell {row.cell_id[:12]} does not round-trip (got {cell.id[:12]})")
        index = next(i for i, r in enumerate(rows, start=1) if r.cell_id == row.cell_id)
        self.log(progress_line(index, len(rows), cell, self.durations))
        label, self.waiting = f"[cell {index}/{len(rows)}] {cell.label()}", []
        started = time.perf_counter()
        self.tracker.fail_running(cell.id, f"attempt killed; the cell was restarted by {self.name}")
        fail_abandoned_trials(self.cells.storage, cell.id)
        run_id = self.cells.start_run(cell)
        self.queue.set_run_id(cell.id, run_id)
        try:
            with self.queue.holding(cell.id, self.name) as lost:
                record = self.cells.execute(cell, row.options, run_id, label)
        except BaseException:  # Ctrl-C, SIGTERM: give the cell back, close its run, stop
            self.queue.release(cell.id, self.name)
            self.tracker.end(run_id, "KILLED", {"error": "interrupted (SIGINT/SIGTERM); the cell will restart"})
            raise
        self.durations.append(time.perf_counter() - started)
        if lost.is_set() or not self.queue.finish(cell.id, self.name, record):
            self.log(f"{label}: claim lost to another worker, result discarded")
            return
        records.write_record(self.output, record)
        self.cells.close_run(run_id, record)
        self.log(f"{label} {record.status} in {self.durations[-1]:.0f}s")


@contextmanager
def terminate_as_exit():
    """While the block runs (in the main thread), SIGTERM raises ``SystemExit(143)`` like Ctrl-C raises
    KeyboardInterrupt, so ``finally`` blocks and claim releases run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        stop.requested.set()
        raise SystemExit(128 + signum)

    stop.requested.clear()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def progress_line(index: int, total: int, cell: Cell, durations: list[float]) -> str:
    """``[cell i/N, ETA 3m05s] method/task@sparsity#seed (cell id prefix)``; the ETA is the mean seconds per cell run
    so far times the cells left, from this one on (none before the first cell ends)."""
    eta = ""
    if durations:
        remaining = (total - index + 1) * sum(durations) / len(durations)
        eta = f", ETA {int(remaining // 60)}m{int(remaining % 60):02d}s"
    return f"[cell {index}/{total}{eta}] {cell.label()} ({cell.id[:12]})"
