"""The matrix runner and its workers.

``bench run`` expands the matrix into cells, puts them in the cell queue (:mod:`bench.run.queue`, in the same
database as the Optuna studies) and then works on them itself; ``bench worker`` works on the same queue from
any number of other processes or machines. Working on a cell: claim it, run its HP search if it has one
(:mod:`bench.run.search`), retrain the best settings on the full train split, finalize, measure, evaluate
(:mod:`bench.run.execute`), then store the record in the queue and, atomically, in ``OUTPUT/cells/<id>.json``, and
close its MLflow run. A cell that raises is recorded as ``failed`` (with its traceback) and the matrix goes on;
a cell whose loss becomes NaN or infinite is recorded as ``diverged``, with the step and no metric.

Faults: records are written atomically, so a killed process never leaves a half-written one; a cell whose worker
was killed is taken over (at once on the same host, after its lease elsewhere) and restarts from scratch, and the
killed attempt's MLflow runs are marked FAILED. SIGTERM and Ctrl-C give the claim back and mark the run KILLED.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.config.cell import Cell
from bench.config.matrix import Matrix, expand, matrix_id
from bench.config.resolve import task_of
from bench.core import registry
from bench.results import records
from bench.results.cell_record import DIVERGED, FAILED, FINISHED, CellRecord
from bench.results.folder import ResultsFolder
from bench.run import stop
from bench.run.execute import FINAL, TUNING, Run, train_and_evaluate
from bench.run.progress import ProgressLog
from bench.run.queue import CLAIMED, TERMINAL, CellQueue, QueuedCell, worker_name

Log = Any  # a callable taking one line


def run_matrix(matrix: Matrix, log: Log = print, retry_failed: bool = False) -> list[dict[str, Any]]:
    """Queue every cell of ``matrix``, work until all are finished or failed, return their records.

    Cells finished in ``matrix.output`` (from this or an earlier run) are not run again; failed cells only with
    ``retry_failed``.
    """
    from bench.run import preflight

    cells = expand(matrix)
    preflight.check(matrix, cells)  # bad input fails here, before anything is written
    ResultsFolder(matrix.output).cells.mkdir(parents=True, exist_ok=True)
    log = ProgressLog(log, matrix.output)  # the terminal, and OUTPUT/logs/progress.log
    queue = CellQueue(matrix.storage_url, matrix.lease_seconds)
    mid = matrix_id(cells)
    options = {"save_model": matrix.save_models, "timeout": matrix.timeout, "measure_speed": matrix.measure_speed}
    queued = [{"id": c.id, "cell": c.to_dict(), "options": cell_options(matrix, c, options)} for c in cells]
    queue.add_matrix(mid, queued, check=lambda others: preflight.check_queued(matrix, cells, others))
    prepare_teachers(queue, matrix.output, mid, log, retry_failed)
    adopt_finished(queue, matrix.output, cells)
    rows = queue.cells(mid)
    skipped = skipped_line(rows, len(cells), retry_failed)
    if skipped:
        log(skipped)
    done = {r.cell_id for r in rows if r.state in TERMINAL and not (retry_failed and r.state == FAILED)}
    for line in preflight.schedule_warnings([c for c in cells if c.id not in done]):
        log(line)  # only for the cells that will run
    tracking = matrix.tracking_uri or ResultsFolder(matrix.output).tracking_uri
    worker = Worker(queue, matrix.output, tracking, log=log, retry_failed=retry_failed)
    worker.work(mid)
    by_id = {r["id"]: r for r in queue.records(mid)}
    sync_records(queue, matrix.output, mid)
    return [by_id[c.id] for c in cells if c.id in by_id]


def skipped_line(rows: list[QueuedCell], total: int, retry_failed: bool) -> str | None:
    """"3 of 5 cells already done, skipped: 2 finished, 1 failed (...)", or None when nothing is skipped."""
    states = [r.state for r in rows if r.state in TERMINAL and not (retry_failed and r.state == FAILED)]
    if not states:
        return None
    counts = ", ".join(f"{states.count(state)} {state}" for state in (FINISHED, DIVERGED, FAILED) if state in states)
    hint = "; rerun failed ones with --retry-failed" if FAILED in states else ""
    return f"{len(states)} of {total} cells already done, skipped: {counts}{hint}"


def cell_options(matrix: Matrix, cell: Cell, options: dict[str, Any]) -> dict[str, Any]:
    """Per-cell settings outside the cell id: a distillation teacher always keeps its model."""
    teacher = matrix.distill and cell.method == "dense"
    return {**options, "save_model": options["save_model"] or teacher}


def prepare_teachers(queue: CellQueue, output: Path, mid: str, log: Log, retry_failed: bool = False) -> None:
    """Make the dense teachers of the matrix's distilled cells that will run save their models, wherever the
    teachers were queued.

    A teacher finished earlier with its saved model in ``output/models`` is reused (and said so); one finished
    without it (an earlier matrix ran it without ``--distill`` or ``--save-models``) is put back to pending, so it
    trains again, saves its model, and its students then run.
    """
    rows = {r.cell_id: r for r in queue.cells(mid)}
    to_run = [r for r in rows.values() if r.state not in TERMINAL or (retry_failed and r.state == FAILED)]
    teachers = sorted({t for r in to_run if (t := (r.cell.get("distillation") or {}).get("teacher"))})
    for teacher in teachers:
        queue.want_model(teacher)
        row = rows.get(teacher)
        if row is None or row.state != FINISHED:
            continue
        label = f"dense teacher {Cell.from_dict(row.cell).label()} ({teacher[:12]})"
        saved = ResultsFolder(output).model(teacher)
        if saved.is_dir():
            log(f"reusing the {label}, finished earlier, and its saved model in {saved}")
        elif queue.reopen_finalized(teacher):
            log(f"the {label} finished earlier without saving its model (it ran without --distill or "
                "--save-models): training it again to save the model its students distil from")  # fmt: skip


def adopt_finished(queue: CellQueue, output: Path, cells: list[Cell]) -> None:
    """Cells whose finished record is already on disk count as finalized (a teacher also needs its model)."""
    rows = {q.cell_id: q for q in queue.cells()}
    for cell in cells:
        found = records.read_record(output, cell.id)
        if found is None or not found.finished or rows[cell.id].state == FINISHED:
            continue
        if rows[cell.id].options.get("save_model") and not ResultsFolder(output).model(cell.id).is_dir():
            continue
        queue.adopt(cell.id, found)


def sync_records(queue: CellQueue, output: Path, mid: str | None = None) -> None:
    """Write every record the queue holds to ``output/cells`` (atomically), so each machine has them all."""
    for record in queue.records(mid):
        if records.read_record(output, record["id"]) != record:
            records.write_record(output, record)


class Worker:
    """Claims cells from the queue and runs them until every cell of the matrix is finished or failed.

    Args:
        queue: the cell queue.
        output: results folder (records, saved models); shared between machines when cells distil.
        tracking_uri: MLflow tracking URI.
        name: this worker's name in claims (default host name plus a random suffix).
        retry_failed: also take cells recorded as failed.
        poll_seconds: wait between looks at the queue while other workers hold every open cell.
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
    ):
        from bench.run.search import make_storage
        from bench.run.tracking import make_tracker

        self.queue, self.output, self.folder = queue, Path(output), ResultsFolder(output)
        self.log = log if isinstance(log, ProgressLog) else ProgressLog(log, self.output)
        self.current = ""  # "[cell 2/5] label" of the cell being run, for its step lines
        self.waiting: list[str] = []  # the open cells this worker last said it waits for
        self.name = name or worker_name()
        self.retry_failed = retry_failed
        self.poll_seconds = poll_seconds if poll_seconds is not None else min(5.0, queue.lease_seconds / 4)
        self.tracker = make_tracker(tracking_uri)
        self.storage = make_storage(queue.url, heartbeat_seconds=max(1, int(queue.lease_seconds / 4)))
        self.durations: list[float] = []
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
        cell = Cell.from_dict(row.cell)
        if cell.id != row.cell_id:
            raise RuntimeError(f"queued cell {row.cell_id[:12]} does not round-trip (got {cell.id[:12]})")
        index = next(i for i, r in enumerate(rows, start=1) if r.cell_id == row.cell_id)
        self.log(progress_line(index, len(rows), cell, self.durations))
        self.current, self.waiting = f"[cell {index}/{len(rows)}] {cell.label()}", []
        started = time.perf_counter()
        self.tracker.fail_running(cell.id, f"attempt killed; the cell was restarted by {self.name}")
        run_id = self.start_run(cell)
        try:
            with self.queue.holding(cell.id, self.name) as lost:
                record = self.execute(cell, row.options, run_id)
        except BaseException:  # Ctrl-C, SIGTERM: give the cell back, close its run, stop
            self.queue.release(cell.id, self.name)
            self.tracker.end(run_id, "KILLED", {"error": "interrupted (SIGINT/SIGTERM); the cell will restart"})
            raise
        self.durations.append(time.perf_counter() - started)
        if lost.is_set() or not self.queue.finish(cell.id, self.name, record):
            self.log(f"[cell {index}/{len(rows)}] {cell.label()}: claim lost to another worker, result discarded")
            return
        records.write_record(self.output, record)
        self.close_run(run_id, record)
        self.log(f"[cell {index}/{len(rows)}] {cell.label()} {record.status} in {self.durations[-1]:.0f}s")

    def start_run(self, cell: Cell) -> str:
        tags = {"method": cell.method, "task": cell.task_name, "sparsity": str(cell.sparsity), "seed": str(cell.seed)}
        run_id = self.tracker.start(cell.id, cell.label(), cell.to_dict(), tags)
        self.queue.set_run_id(cell.id, run_id)
        return run_id

    def close_run(self, run_id: str, record: CellRecord) -> None:
        if record.finished:
            self.tracker.log_metrics(run_id, tracked_metrics(record), record.history or [])
            best = (record.search or {}).get("best_trial")
            tags = {"best_trial": str(best)} if best is not None else {}
            self.tracker.end(run_id, "FINISHED", {**tags, **verdict_tags(record)})
        else:
            tags = {"error": record.error, "status": record.status}
            if record.traceback:
                tags["traceback"] = record.traceback[-5000:]
            if isinstance(record.diverged_step, int):
                tags["diverged_step"] = str(record.diverged_step)
            self.tracker.end(run_id, "FAILED", tags)

    def execute(self, cell: Cell, options: dict[str, Any], run_id: str) -> CellRecord:
        """Search (when the cell has one), then the final run; a failure becomes a failed record, a NaN/inf loss
        a diverged one (with the step, and no metrics)."""
        from bench.run.training import DivergenceError

        base = {"id": cell.id, "cell": cell.to_dict(), "git_commit": git_commit(), "mlflow_run_id": run_id,
                "worker": self.name}  # fmt: skip
        started = time.perf_counter()
        teacher = self.folder.model(cell.distillation["teacher"]) if cell.distillation else None
        try:
            search = self.search(cell, options, run_id, teacher) if cell.search else None
            final = apply_params(cell, search["best_params"]) if search else cell
            save = self.folder.model(cell.id) if options.get("save_model") else None
            with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
                run = Run(FINAL, Path(workdir), save, teacher, masks_to=self.folder.masks(cell.id),
                          measure_speed=bool(options.get("measure_speed")),
                          predictions_to=self.folder.predictions(cell.id),
                          progress=lambda line: self.log(f"{self.current}: {line}"))
                result = train_and_evaluate(final, run)
        except DivergenceError as err:
            return CellRecord(**base, status=DIVERGED, error=str(err), diverged_step=err.step,
                              wall_seconds=time.perf_counter() - started)  # fmt: skip
        except Exception as err:  # noqa: BLE001 - isolate the cell, record, go on
            from bench.cli.failures import environment_problem

            if environment_problem(err) is not None:
                raise  # a full disk or a broken database stops the matrix; the cell is not failed and runs on rerun
            print(traceback.format_exc(), file=sys.stderr)
            return CellRecord(**base, status=FAILED, error=repr(err), traceback=traceback.format_exc(),
                              wall_seconds=time.perf_counter() - started)  # fmt: skip
        extra = {"search": search, "final_budget": final.budget.__dict__, "final_hparams": final.method_hparams}
        return CellRecord(**base, status=FINISHED, **result, **(extra if search else {}),
                          wall_seconds=time.perf_counter() - started)  # fmt: skip

    def search(self, cell: Cell, options: dict[str, Any], run_id: str, teacher: Path | None) -> dict[str, Any]:
        from bench.run import search
        from bench.run.tracking import TrialCallback
        from bench.run.training import DivergenceError

        task = task_of(cell)
        study = search.open_study(cell, self.storage, task.greater_is_better)
        objective = self.objective(cell, run_id, teacher)
        started = time.perf_counter()
        search.run_study(study, cell.search["trials"], objective, options.get("timeout"),
                         [TrialCallback(self.tracker, task.primary_metric)], catch=(DivergenceError,))  # fmt: skip
        summary = search.summary(study, time.perf_counter() - started)
        best_run = study.best_trial.user_attrs.get("mlflow_run_id")
        if best_run and self.tracker.client is not None:
            self.tracker.client.set_tag(best_run, "best_trial", "true")
        return summary

    def objective(self, cell: Cell, parent_run: str, teacher: Path | None):
        import optuna

        from bench.run import search

        method_cls = registry.methods.get(cell.method)
        primary = task_of(cell).primary_metric

        def objective(trial: optuna.Trial) -> float:
            budget, hparams = search.sample(trial, cell.search, method_cls)
            trial_cell = apply_params(cell, {**budget, **hparams})
            name = f"{cell.label()} trial {trial.number}"
            run_id = self.tracker.start(cell.id, name, {**budget, **hparams}, {"trial": str(trial.number)}, parent_run)
            trial.set_user_attr("mlflow_run_id", run_id)

            def report(step: int, value: float) -> None:
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {step} with dev {primary} {value:.3f}")

            with tempfile.TemporaryDirectory(prefix="bench-trial-") as workdir:
                run = Run(TUNING, Path(workdir), None, teacher, report, search.intermediate_steps,
                          progress=lambda line: self.log(f"{self.current} trial {trial.number}: {line}"))
                return train_and_evaluate(trial_cell, run)["metrics"][primary]

        return objective


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


def apply_params(cell: Cell, params: dict[str, Any]) -> Cell:
    """The cell with sampled budget fields and method hyperparameters put in (its id is not used after this)."""
    budget = {k: v for k, v in params.items() if k in cell.budget.__dataclass_fields__}
    hparams = {k: v for k, v in params.items() if k not in budget}
    return replace(cell, budget=replace(cell.budget, **budget), method_hparams={**cell.method_hparams, **hparams})


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def progress_line(index: int, total: int, cell: Cell, durations: list[float]) -> str:
    eta = ""
    if durations:
        remaining = (total - index + 1) * sum(durations) / len(durations)
        eta = f", ETA {int(remaining // 60)}m{int(remaining % 60):02d}s"
    return f"[cell {index}/{total}{eta}] {cell.label()} ({cell.id[:12]})"


def verdict_tags(record: CellRecord) -> dict[str, str]:
    """MLflow tags of a finished record's verdicts: ``verdict.chance`` = "true"/"false" and so on."""
    found = record.verdicts or {}
    tags = {f"verdict.{k}": str(found[k]).lower() for k in ("chance", "projection", "short_schedule") if k in found}
    if found.get("reached_fraction") is not None:
        tags["verdict.reached_fraction"] = f"{found['reached_fraction']:.4f}"
    return tags


def tracked_metrics(record: CellRecord) -> dict[str, float]:
    """The finished record's numbers as flat MLflow metric names (seconds, examples/s, steps, metric units)."""
    flat = {f"eval/{k}": v for k, v in record.metrics.items()}
    flat.update({f"sparsity/{k}": v for k, v in record.sparsity.items()})
    flat.update({f"method/{k}": v for k, v in record.method_info.items() if isinstance(v, (int, float))})
    for key in ("train_seconds", "train_examples_per_s", "wall_seconds", "train_steps"):
        if record.get(key) is not None:
            flat[key] = record[key]
    for metric, interval in (record.metric_intervals or {}).items():
        flat[f"eval/{metric}_ci_low"], flat[f"eval/{metric}_ci_high"] = interval["low"], interval["high"]
    if record.search:
        flat["search/n_trials"] = record.search["n_trials"]
        flat["search/seconds"] = record.search["search_seconds"]
        flat["search/best_dev_value"] = record.search["best_value"]
    return flat


__all__ = ["Matrix", "Worker", "expand", "run_matrix"]
