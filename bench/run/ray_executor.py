"""The Ray executor: ``bench run --executor ray`` runs each open cell of the matrix as one Ray task.

The matrix is checked and queued exactly as on the local path (:func:`bench.run.runner.run_matrix`: preflight, the
folder's protocol, finished records adopted, teachers told to save their models); then, instead of working on the
queue in this process, the driver submits one task per open cell with the declared resources
(``--cpus-per-cell``, ``--gpus-per-cell``), so Ray places as many cells at once as the cluster has room for, and
waits for them. A task (:func:`run_cell`) is what a :class:`bench.run.worker.Worker` does with one cell: claim it
in the queue, run its HP search and final run (:class:`bench.run.cell_run.CellRunner`, the study on the matrix's
storage URL), store the record once (:meth:`bench.run.queue.CellQueue.finish`) and write it atomically to
``OUTPUT/cells/<id>.json``. The settings it needs (results folder, storage and MLflow URIs, the Hugging Face cache
variables, the driver's working directory) travel with it.

Guarantees: a task whose cell is already done returns its record without running anything (a rerun, a retry); a
task whose worker process or node dies is retried by Ray (:data:`RETRIES` times) under the same claim name, so it
takes its own dead claim back at once and resumes the cell's Optuna study from the database (finished trials are
not redone); the queue lets only one holder finalize a cell, so no cell gets two records. A cell that raises is
recorded as failed (like the local path); a task Ray gave up on (its worker died every try) is recorded as failed
by the driver. With ``--distill`` a student's task takes its dense teacher's task as an argument (a Ray task
dependency): it starts only after the teacher's record and saved model exist.

Several nodes: the results folder must be one path that every node sees (a shared file system: records, saved
teacher models, ``logs/progress.log``) and ``--storage`` and ``--tracking-uri`` should be servers (PostgreSQL, an
MLflow server); SQLite files in the shared folder work on one node. ``ray`` is imported only in here, lazily.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.config.cell import Cell
from bench.core.errors import BenchError
from bench.results import records
from bench.results.cell_record import FAILED, CellRecord
from bench.run.cell_run import Log, git_commit
from bench.run.queue import TERMINAL, CellQueue, QueuedCell

RETRIES = 3  # Ray retries of a cell whose worker process or node died (not of a cell that raised)
RAY_EXTRA = "--executor ray needs the ray extra: pip install 'prune-bench[ray]'"
CARRIED_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "MLFLOW_", "BENCH_")
CARRIED_NAMES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TOKENIZERS_PARALLELISM")


def require_ray() -> Any:
    """The ``ray`` module.

    Raises:
        BenchError: ray is not installed (:data:`RAY_EXTRA`).
    """
    try:
        import ray
    except ImportError:
        raise BenchError(RAY_EXTRA) from None
    return ray


def check_address(address: str | None, timeout: float = 5.0) -> None:
    """A ``host:port`` (or ``ray://host:port``) address answers a TCP connection within ``timeout`` seconds;
    ``ray.init`` itself would retry for minutes. None and ``auto`` are resolved by Ray (:func:`connect`).

    Raises:
        BenchError: unparsable, or nothing listens there.
    """
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise BenchError(f"--ray-address: expected host:port (the head's GCS port, 6379 by default) or auto, got "
                         f"{address!r}")  # fmt: skip
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise BenchError(f"--ray-address {address}: no Ray head answers there ({err.strerror or err}); start one with "
                         "`ray start --head --port=6379` and pass its address") from None  # fmt: skip


def carried_env() -> dict[str, str]:
    """The driver's environment variables that cells need on every node: the Hugging Face caches and offline mode,
    MLflow's settings, thread counts."""
    return {k: v for k, v in os.environ.items() if k.startswith(CARRIED_PREFIXES) or k in CARRIED_NAMES}


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address`` (Ray's rules: None tries ``RAY_ADDRESS``, then the cluster last started on
    this machine, then starts a local one; ``auto`` refuses to start one), carrying :func:`carried_env` to every
    task. Returns whether this call connected (and the caller should disconnect); False when already connected.

    Raises:
        BenchError: ``auto`` and no cluster runs here, or the cluster refused the connection.
    """
    import logging

    ray = require_ray()
    if ray.is_initialized():
        return False
    check_address(address)
    try:
        ray.init(address=address, runtime_env={"env_vars": carried_env()}, logging_level=logging.WARNING)
    except ConnectionError as err:  # e.g. a head with token authentication that this process has no token for
        hint = "a cluster started with RAY_AUTH_MODE=token needs it and its token here too: see `ray get-auth-token`"
        raise BenchError(f"--ray-address {address}: {str(err).splitlines()[0]} ({hint})") from None
    return True


@contextmanager
def session(address: str | None) -> Iterator[None]:
    """Connected to the Ray cluster (:func:`connect`) while the block runs; disconnected after, when it connected.

    Raises:
        BenchError: as :func:`connect`, before the block runs.
    """
    connected = connect(address)
    try:
        yield
    finally:
        if connected:
            require_ray().shutdown()


def run_cells(settings: dict[str, Any], queue: CellQueue, mid: str, resources: dict[str, float], log: Log,
              retry_failed: bool = False) -> None:  # fmt: skip
    """Run every open cell of matrix ``mid`` as a Ray task and wait for all (inside :func:`session`); see the
    module docstring.

    Args:
        settings: what each task needs (:func:`task_settings`).
        resources: what each task holds (:attr:`bench.config.parts.Execution.resources`).

    Raises:
        whatever a task raised that is not the cell's fault (a full disk, a broken database), after the other tasks
        ended; KeyboardInterrupt after cancelling the tasks (they give their claims back).
    """
    ray = require_ray()
    if retry_failed:
        queue.reopen_failed(mid)
    rows = queue.cells(mid)
    open_rows = [r for r in rows if r.state not in TERMINAL]
    if not open_rows:
        return
    log(f"Ray: {len(open_rows)} cell task(s), each holding {resources_text(resources)}, on a cluster of "
        f"{resources_text(ray.cluster_resources())}")  # fmt: skip
    problem = wait_all(ray, submit(ray, settings, open_rows, resources), queue, settings, log)
    if problem is not None:
        raise problem


def task_settings(output: Path, storage: str, lease_seconds: float, tracking: str, experiment: str | None,
                  mid: str) -> dict[str, Any]:  # fmt: skip
    """What every cell task needs, as plain values (absolute paths: a worker's working directory is not the
    driver's). ``token`` names this run's claims (``ray:<token>/<cell id prefix>``, kept by a retried task)."""
    return {"output": str(Path(output).resolve()), "storage": storage, "lease_seconds": lease_seconds,
            "tracking": tracking, "experiment": experiment, "matrix_id": mid, "cwd": os.getcwd(),
            "token": uuid.uuid4().hex[:8]}  # fmt: skip


def claim_name(settings: dict[str, Any], cell_id: str) -> str:
    """The claim of one cell in one ``bench run``: the same for every Ray retry of its task, never a host:pid name
    (:func:`bench.run.queue.holder_is_dead` leaves it to the lease)."""
    return f"ray:{settings['token']}/{cell_id[:12]}"


def submit(ray: Any, settings: dict[str, Any], open_rows: list[QueuedCell], resources: dict[str, float]
           ) -> dict[Any, QueuedCell]:  # fmt: skip
    """One task per open cell, in the matrix's order (dense teachers first); a distilled cell's task takes its
    teacher's task as an argument, so Ray starts it after the teacher's task has returned."""
    task = ray.remote(run_cell)
    by_cell: dict[str, Any] = {}
    refs: dict[Any, QueuedCell] = {}
    for row in open_rows:
        teacher = (row.cell.get("distillation") or {}).get("teacher")
        ref = task.options(**resources, max_retries=RETRIES, retry_exceptions=False, name=task_name(row.cell_id)
                           ).remote(settings, row.cell_id, by_cell.get(teacher))  # fmt: skip
        by_cell[row.cell_id] = ref
        refs[ref] = row
    return refs


def task_name(cell_id: str) -> str:
    """A cell task's name in Ray (``ray list tasks``, the worker's process title while it runs)."""
    return f"bench-cell-{cell_id[:12]}"


def wait_all(ray: Any, refs: dict[Any, QueuedCell], queue: CellQueue, settings: dict[str, Any], log: Log
             ) -> BaseException | None:  # fmt: skip
    """Wait for every task, one line as each ends; a task Ray gave up on is recorded as a failed cell. Returns the
    first error that is not a cell's (to raise once all tasks ended), or None."""
    from bench.run.failures import environment_problem

    pending, done, problem = list(refs), 0, None
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                row, done = refs[ref], done + 1
                label = f"[{done}/{len(refs)} cell tasks done] {Cell.from_dict(row.cell).label()} ({row.cell_id[:12]})"
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as err:
                    cause = getattr(err, "cause", None)
                    if isinstance(cause, Exception) and environment_problem(cause) is not None:
                        problem = problem or cause
                        log(f"{label}: stopped by {type(cause).__name__}: {cause}; it runs again on the next run")
                        continue
                    record = record_lost(queue, settings, row, err)
                log(f"{label} {record['status'] if record else 'not recorded (forgotten, or held by another worker)'}")
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # a running task gets KeyboardInterrupt and gives its claim back
        ray.wait(pending, num_returns=len(pending), timeout=10)
        raise
    return problem


def record_lost(queue: CellQueue, settings: dict[str, Any], row: QueuedCell, err: BaseException
                ) -> dict[str, Any] | None:  # fmt: skip
    """Record a cell whose task Ray gave up on (its worker died on every try, or its teacher's task did) as failed,
    under the task's own claim, unless the cell got a record meanwhile. Returns its record."""
    name = claim_name(settings, row.cell_id)
    first = (str(err).strip().splitlines() or [type(err).__name__])[-1][:500]
    error = f"Ray gave up on its task (or its dense teacher's) after {RETRIES} retries: {type(err).__name__}: {first}"
    record = CellRecord(id=row.cell_id, cell=row.cell, status=FAILED, error=error, worker=name,
                        git_commit=git_commit(), mlflow_run_id=row.mlflow_run_id,
                        preset=row.options.get("preset"))  # fmt: skip
    if queue.claim(row.cell_id, name) and queue.finish(row.cell_id, name, record):
        records.write_record(Path(settings["output"]), record)
    return stored_record(queue, row.cell_id)


def stored_record(queue: CellQueue, cell_id: str) -> dict[str, Any] | None:
    row = queue.row(cell_id)
    if row is None or row.record_json is None:
        return None
    import json

    return json.loads(row.record_json)


def run_cell(settings: dict[str, Any], cell_id: str, teacher_done: Any = None) -> dict[str, Any] | None:
    """The body of a cell's Ray task: claim the cell, run it, store its record once; return the record (None when
    the cell left the queue). ``teacher_done`` (the teacher task's result) only orders this task after it.

    A cell already done is returned as is; one held by a live worker elsewhere (``bench worker``) is waited for.
    """
    from bench.run.worker import Worker

    if os.path.isdir(settings["cwd"]):
        os.chdir(settings["cwd"])  # relative model paths in cells resolve as on the driver
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731 - Ray forwards it to the driver
    queue = CellQueue(settings["storage"], settings["lease_seconds"])
    name = claim_name(settings, cell_id)
    worker = Worker(queue, Path(settings["output"]), settings["tracking"], name=name, log=log,
                    experiment=settings["experiment"])  # fmt: skip
    while True:
        rows = queue.cells(settings["matrix_id"])
        row = next((r for r in rows if r.cell_id == cell_id), None)
        if row is None or row.state in TERMINAL:
            return stored_record(queue, cell_id)
        if queue.claim(cell_id, name):
            worker.process(row, rows)
            continue
        worker.release_dead_holders([row])
        time.sleep(worker.poll_seconds)


def resources_text(resources: dict[str, float]) -> str:
    """``2 CPU, 1 GPU`` of Ray's ``{"CPU": 2.0, "GPU": 1.0, ...}`` or of ``{"num_cpus": 2, "num_gpus": 1}``."""
    cpus = resources.get("CPU", resources.get("num_cpus", 0))
    gpus = resources.get("GPU", resources.get("num_gpus", 0))
    return f"{cpus:g} CPU, {gpus:g} GPU"
