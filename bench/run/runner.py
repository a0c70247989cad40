"""The matrix runner: ``bench run`` from a matrix to its records.

``bench run`` checks the matrix (:mod:`bench.run.preflight`), expands it into cells, puts them in the cell queue
(:mod:`bench.run.queue`, in the same database as the Optuna studies) and then works on them itself with a
:class:`bench.run.worker.Worker`; ``bench worker`` works on the same queue from any number of other processes or
machines; with ``--executor ray`` each open cell is a Ray task instead (:mod:`bench.run.ray_executor`). Working on a
cell: claim it, run its HP search if it has one, retrain the best settings on the full train split, finalize,
measure, evaluate (:mod:`bench.run.cell_run`), then store the record in the queue and,
atomically, in ``OUTPUT/cells/<id>.json``, and close its MLflow run. A cell that raises is recorded as ``failed``
(with its traceback) and the matrix goes on; a cell whose loss becomes NaN or infinite is recorded as
``diverged``, with the step and no metric.

Here, besides :func:`run_matrix`: the distillation teachers a matrix needs (:func:`prepare_teachers`), finished
records already on disk counted as done (:func:`adopt_finished`), and every record the queue holds written to the
results folder (:func:`sync_records`). Records are written atomically, so a killed process never leaves a
half-written one.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bench.config.cell import Cell
from bench.config.matrix import Matrix, expand, matrix_id
from bench.results import records
from bench.results.cell_record import DIVERGED, FAILED, FINISHED, CellRecord
from bench.results.folder import ResultsFolder
from bench.run.cell_run import Log
from bench.run.cost_checks import saves_model, schedule_warnings
from bench.run.progress import ProgressLog
from bench.run.queue import TERMINAL, CellQueue, QueuedCell
from bench.run.worker import Worker


def run_matrix(matrix: Matrix, log: Log = print, retry_failed: bool = False) -> list[CellRecord]:
    """Queue every cell of ``matrix``, work until all are finished or failed, return their records (in the
    matrix's cell order; a cell the queue holds no record of is left out).

    Cells finished in ``matrix.output`` (from this or an earlier run) are not run again; failed cells only with
    ``retry_failed``. The cells run in this process, or with ``execution.executor == "ray"`` as Ray tasks
    (:mod:`bench.run.ray_executor`, connected to the cluster before anything is written).

    Raises:
        BenchError: bad input (:func:`bench.run.preflight.check`; no ray, or no Ray cluster at ``ray_address``),
            before anything is written.
    """
    from bench.run import preflight

    cells = expand(matrix)
    session = nullcontext()
    if matrix.execution.executor == "ray":
        from bench.run import ray_executor

        ray_executor.require_ray()
        session = ray_executor.session(matrix.execution.ray_address)
    preflight.check(matrix, cells)  # bad input fails here, before anything is written
    with session:
        return _run(matrix, cells, log, retry_failed)


def _run(matrix: Matrix, cells: list[Cell], log: Log, retry_failed: bool) -> list[CellRecord]:
    from bench.run import preflight
    from bench.run.tracking import tracking_uri

    ResultsFolder(matrix.output).cells.mkdir(parents=True, exist_ok=True)
    log = ProgressLog(log, matrix.output)  # the terminal, and OUTPUT/logs/progress.log
    queue = CellQueue(matrix.storage_url, matrix.lease_seconds)
    mid = matrix_id(cells)
    options = {"save_model": matrix.save_models, "timeout": matrix.timeout, "measure_speed": matrix.measure_speed,
               "preset": matrix.preset}  # fmt: skip
    queued = [{"id": c.id, "cell": c.to_dict(), "options": cell_options(matrix, c, options)} for c in cells]
    queue.add_matrix(mid, queued, check=lambda others: preflight.check_queued(matrix, cells, others))
    prepare_teachers(queue, matrix.output, mid, log, retry_failed)
    adopt_finished(queue, matrix.output, cells)
    rows = queue.cells(mid)
    skipped = skipped_line(rows, len(cells), retry_failed)
    if skipped:
        log(skipped)
    done = {r.cell_id for r in rows if r.state in TERMINAL and not (retry_failed and r.state == FAILED)}
    for line in schedule_warnings([c for c in cells if c.id not in done]):
        log(line)  # only for the cells that will run
    tracking = tracking_uri(matrix.tracking_uri, ResultsFolder(matrix.output).tracking_uri)
    if matrix.execution.executor == "ray":
        from bench.run import ray_executor

        settings = ray_executor.task_settings(matrix.output, matrix.storage_url, matrix.lease_seconds, tracking,
                                              matrix.experiment, mid)  # fmt: skip
        ray_executor.run_cells(settings, queue, mid, matrix.execution.resources, log, retry_failed)
    else:
        worker = Worker(queue, matrix.output, tracking, log=log, retry_failed=retry_failed,
                        experiment=matrix.experiment)  # fmt: skip
        worker.work(mid)
    by_id = {r.id: r for r in queue.records(mid)}
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
    """Per-cell settings outside the cell id: a distillation teacher (a cell of the registry's reference method,
    with ``--distill``) always keeps its model."""
    return {**options, "save_model": options["save_model"] or saves_model(matrix, cell)}


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
        found = records.read_record(output, record.id)
        if found is None or found.to_dict() != record.to_dict():
            records.write_record(output, record)


__all__ = ["Matrix", "Worker", "expand", "run_matrix", "sync_records"]
