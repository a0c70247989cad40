"""The cell queue: cells, claims and finished records in a relational database shared by workers.

It lives in the same database as the Optuna studies (any SQLAlchemy URL Optuna accepts: an embedded SQLite file
by default, PostgreSQL for many machines), in one table ``bench_cells``. A worker *claims* a cell with one
atomic conditional UPDATE and holds it by renewing a lease; a worker that dies lets its lease expire and another
takes the cell over. Only the lease holder can *finalize* a cell (another atomic UPDATE), so no cell is ever
finalized twice. A worker's name carries its host and process id, so a process on the same host can see that a
holder was killed (``kill -9``) and take its cell at once instead of waiting for the lease to expire.

A cell belongs to every matrix that lists it (table ``bench_matrix_cells``), not only to the one that inserted it:
a results folder grows by many matrices, and each asks which of *its* cells are done, failed, running or waiting.
Cells are inserted under a lock (a file lock next to an SQLite file, ``LOCK TABLE`` on PostgreSQL), so a check
of the cells already queued (the folder's protocol) holds against a concurrent insert.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from bench.results.cell_record import FAILED, FINISHED, CellRecord
from bench.run.dblock import insert_lock
from bench.run.queue_schema import (
    CELLS,
    CLAIMED,
    MEMBERS,
    PENDING,
    TERMINAL,
    QueuedCell,
    create_schema,
    engine_options,
    member_ids,
    of_matrix,
)

Check = Callable[[list[tuple[str, dict[str, Any]]]], None]  # see CellQueue.add_matrix


def _json(record: CellRecord | dict[str, Any]) -> str:
    """A record as the queue stores it (the JSON of its file)."""
    return json.dumps(record.to_dict() if isinstance(record, CellRecord) else record)


def _status(record: CellRecord | dict[str, Any]) -> str:
    """The record's status: finished, failed or diverged (tests and older callers hand plain dicts)."""
    return record.status if isinstance(record, CellRecord) else record["status"]


def worker_name() -> str:
    """``host:pid:random``: unique per process, and enough to tell whether a same-host holder still lives."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(worker: str | None) -> bool:
    """True when ``worker`` (a :func:`worker_name`) ran on this host and its process no longer exists.

    Holders on other hosts, and names without a process id, are never declared dead here: their leases expire.
    """
    parts = (worker or "").split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class CellQueue:
    """Cells of one or more matrices in the database at ``url``.

    Args:
        url: SQLAlchemy URL (``sqlite:///DIR/bench.db``, ``postgresql://user@host/db``).
        lease_seconds: how long a claim lasts without renewal; a dead worker's cell is taken over after this.
    """

    def __init__(self, url: str, lease_seconds: float = 120.0):
        self.url = url
        self.lease_seconds = lease_seconds
        self.engine = sa.create_engine(url, **engine_options(url))
        create_schema(self.engine, url)

    # ---- matrix ------------------------------------------------------------------------------------
    def add_matrix(self, matrix_id: str, cells: list[dict[str, Any]], check: Check | None = None) -> None:
        """Insert cells (``{"id", "cell", "options"}``) that are not there yet (existing rows are left alone) and
        list all of them as members of ``matrix_id``, at their position in ``cells``.

        ``check(queued)`` runs first, under the same lock, on ``[(cell id, cell dict)]`` of the queued cells that
        are not in ``cells``; whatever it raises (a protocol conflict) leaves the queue unchanged. Two processes
        adding the same matrix at once is fine.
        """
        for attempt in range(5):
            try:
                with insert_lock(self.url):
                    return self._insert_new(matrix_id, cells, check)
            except sa.exc.IntegrityError:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _insert_new(self, matrix_id: str, cells: list[dict[str, Any]], check: Check | None) -> None:
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # held until commit: concurrent inserts see each other's cells
                conn.execute(sa.text(f"LOCK TABLE {CELLS.name} IN SHARE ROW EXCLUSIVE MODE"))
            ids = {c["id"] for c in cells}
            queued = {cid: text for cid, text in conn.execute(sa.select(CELLS.c.cell_id, CELLS.c.cell_json))}
            if check is not None:
                check([(cid, json.loads(text)) for cid, text in queued.items() if cid not in ids])
            rows = [
                {"cell_id": c["id"], "matrix_id": matrix_id, "position": i, "cell_json": json.dumps(c["cell"]),
                 "options_json": json.dumps(c.get("options", {})), "state": PENDING, "finalize_count": 0}
                for i, c in enumerate(cells) if c["id"] not in queued
            ]  # fmt: skip
            if rows:
                conn.execute(CELLS.insert(), rows)
            listed = {r[0] for r in conn.execute(sa.select(MEMBERS.c.cell_id).where(MEMBERS.c.matrix_id == matrix_id))}
            members = [{"matrix_id": matrix_id, "cell_id": c["id"], "position": i}
                       for i, c in enumerate(cells) if c["id"] not in listed]  # fmt: skip
            if members:
                conn.execute(MEMBERS.insert(), members)

    def cells(self, matrix_id: str | None = None) -> list[QueuedCell]:
        """The queued cells: of every matrix (in insertion order), or those listed by ``matrix_id`` (in its
        order), whichever matrix inserted them."""
        query = sa.select(CELLS).order_by(CELLS.c.matrix_id, CELLS.c.position)
        if matrix_id is not None:
            query = of_matrix(sa.select(CELLS), matrix_id).order_by(MEMBERS.c.position)
        with self.engine.connect() as conn:
            return [QueuedCell.of_row(r) for r in conn.execute(query)]

    def records(self, matrix_id: str | None = None) -> list[CellRecord]:
        """The records of done cells: finished, failed or diverged (of the cells ``matrix_id`` lists, when given)."""
        query = sa.select(CELLS.c.record_json).where(CELLS.c.record_json.is_not(None))
        if matrix_id is not None:
            query = of_matrix(query, matrix_id)
        with self.engine.connect() as conn:
            return [CellRecord.from_dict(json.loads(r[0])) for r in conn.execute(query)]

    def row(self, cell_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(CELLS).where(CELLS.c.cell_id == cell_id)).one_or_none()

    # ---- claims -------------------------------------------------------------------------------------------
    def claim(self, cell_id: str, worker: str) -> bool:
        """Atomically take ``cell_id`` if nobody holds a live lease on it and it is neither finalized nor failed."""
        now = time.time()
        statement = (
            CELLS.update()
            .where(CELLS.c.cell_id == cell_id)
            .where(CELLS.c.state.in_([PENDING, CLAIMED]))
            .where(sa.or_(CELLS.c.lease_until.is_(None), CELLS.c.lease_until < now, CELLS.c.worker == worker))
            .values(state=CLAIMED, worker=worker, lease_until=now + self.lease_seconds)
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def release_dead(self, cell_id: str, holder: str) -> bool:
        """End the lease of ``holder`` on ``cell_id`` when :func:`holder_is_dead`; returns whether it did."""
        if not holder_is_dead(holder):
            return False
        statement = (
            CELLS.update()
            .where(CELLS.c.cell_id == cell_id, CELLS.c.worker == holder, CELLS.c.state == CLAIMED)
            .values(lease_until=None)
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def release(self, cell_id: str, worker: str) -> None:
        """Give a claim back (the worker is stopping): the cell is pending again for anyone."""
        statement = (
            CELLS.update()
            .where(CELLS.c.cell_id == cell_id, CELLS.c.worker == worker, CELLS.c.state == CLAIMED)
            .values(state=PENDING, lease_until=None)
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    def reopen_failed(self, matrix_id: str | None = None) -> int:
        """Put failed cells back to pending (``--retry-failed``); returns how many."""
        statement = CELLS.update().where(CELLS.c.state == FAILED)
        if matrix_id is not None:
            statement = statement.where(CELLS.c.cell_id.in_(member_ids(matrix_id)))
        with self.engine.begin() as conn:
            return conn.execute(statement.values(state=PENDING, worker=None, lease_until=None)).rowcount

    def want_model(self, cell_id: str) -> None:
        """Make ``cell_id`` save its model when it runs (a distillation teacher); other options are kept."""
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(CELLS.c.options_json).where(CELLS.c.cell_id == cell_id)).scalar()
            if found is not None and not json.loads(found).get("save_model"):
                options = json.dumps({**json.loads(found), "save_model": True})
                conn.execute(CELLS.update().where(CELLS.c.cell_id == cell_id).values(options_json=options))

    def reopen_finalized(self, cell_id: str) -> bool:
        """Put a finalized cell back to pending (a teacher whose model was not saved); its record stays until the
        rerun replaces it. Returns whether it did."""
        statement = (
            CELLS.update()
            .where(CELLS.c.cell_id == cell_id, CELLS.c.state == FINISHED)
            .values(state=PENDING, worker=None, lease_until=None)
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def renew(self, cell_id: str, worker: str) -> bool:
        statement = (
            CELLS.update()
            .where(CELLS.c.cell_id == cell_id, CELLS.c.worker == worker, CELLS.c.state == CLAIMED)
            .values(lease_until=time.time() + self.lease_seconds)
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def set_run_id(self, cell_id: str, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(CELLS.update().where(CELLS.c.cell_id == cell_id).values(mlflow_run_id=run_id))

    def finish(self, cell_id: str, worker: str, record: CellRecord | dict[str, Any]) -> bool:
        """Store ``record`` and close the cell in the record's status (finished, failed or diverged), only if
        ``worker`` still holds the claim. Returns whether it did."""
        statement = (
            CELLS.update()
            .where(CELLS.c.cell_id == cell_id, CELLS.c.worker == worker, CELLS.c.state == CLAIMED)
            .values(
                state=_status(record), record_json=_json(record), finalized_by=worker, lease_until=None,
                finalize_count=CELLS.c.finalize_count + 1,
            )  # fmt: skip
        )
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount == 1

    def adopt(self, cell_id: str, record: CellRecord | dict[str, Any]) -> None:
        """Mark a cell finalized from a record found on disk (a results folder made before the queue)."""
        with self.engine.begin() as conn:
            conn.execute(
                CELLS.update()
                .where(CELLS.c.cell_id == cell_id, CELLS.c.state != FINISHED)
                .values(state=FINISHED, record_json=_json(record), finalized_by="disk")
            )

    def forget(self, cell_id: str) -> bool:
        """Delete the row of ``cell_id`` (``bench forget``), so that the next matrix that has the cell queues it
        afresh; a cell that a live worker holds is left alone. Returns whether a row was deleted.

        Raises:
            RuntimeError: a live worker holds the cell (its claim names it), or one took it meanwhile.
        """
        row = self.row(cell_id)
        if row is None:
            return False
        live = row.state == CLAIMED and (row.lease_until or 0) > time.time() and not holder_is_dead(row.worker)
        if live:
            raise RuntimeError(f"cell {cell_id[:12]} is being run by worker {row.worker}")
        statement = CELLS.delete().where(CELLS.c.cell_id == cell_id, CELLS.c.state == row.state)
        if row.state == CLAIMED:  # only the dead claim we looked at, not one taken since
            statement = statement.where(CELLS.c.worker == row.worker, CELLS.c.lease_until == row.lease_until)
        with self.engine.begin() as conn:
            if conn.execute(statement).rowcount == 1:
                conn.execute(MEMBERS.delete().where(MEMBERS.c.cell_id == cell_id))
                return True
        raise RuntimeError(f"cell {cell_id[:12]} was just claimed or finished by a worker")

    @contextmanager
    def holding(self, cell_id: str, worker: str) -> Iterator[threading.Event]:
        """Renew the lease on ``cell_id`` in the background while the block runs; the event is set if lost."""
        lost, stop = threading.Event(), threading.Event()

        def beat() -> None:
            while not stop.wait(self.lease_seconds / 4):
                if not self.renew(cell_id, worker):
                    lost.set()
                    return

        thread = threading.Thread(target=beat, name=f"lease-{cell_id[:8]}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()


__all__ = ["CELLS", "CLAIMED", "FINISHED", "MEMBERS", "PENDING", "TERMINAL", "CellQueue", "QueuedCell",
           "holder_is_dead", "worker_name"]
