"""The cell queue's tables, states and engine options (:class:`bench.run.queue.CellQueue` works on them).

Two tables, in the same database as the Optuna studies:

- ``bench_cells`` (:data:`CELLS`): one row per cell, whichever matrix inserted it: the cell and its options as JSON,
  its state (:data:`PENDING`, :data:`CLAIMED`, or a record status: :data:`TERMINAL`), the claiming worker and its
  lease (seconds since the epoch), the MLflow run id and, when done, the record as JSON;
- ``bench_matrix_cells`` (:data:`MEMBERS`): which matrices list a cell, at which position.

:func:`create_schema` makes them (under :func:`bench.run.dblock.schema_lock`) and brings a queue made by an earlier
version up to date, so old ``bench.db`` files keep working.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bench.results.cell_record import FINISHED, STATUSES
from bench.run.dblock import schema_lock

PENDING, CLAIMED = "pending", "claimed"
TERMINAL = STATUSES  # a done cell's state is its record's status: finished, failed or diverged
LEGACY_FINISHED = "finalized"  # what queues made before the shared vocabulary stored for a finished cell

METADATA = sa.MetaData()
CELLS = sa.Table(
    "bench_cells",
    METADATA,
    sa.Column("cell_id", sa.String(64), primary_key=True),
    sa.Column("matrix_id", sa.String(64), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("cell_json", sa.Text, nullable=False),
    sa.Column("options_json", sa.Text, nullable=False, default="{}"),
    sa.Column("state", sa.String(16), nullable=False, default=PENDING),
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("finalized_by", sa.String(128), nullable=True),
    sa.Column("finalize_count", sa.Integer, nullable=False, default=0),
    sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    sa.Column("record_json", sa.Text, nullable=True),
)
MEMBERS = sa.Table(  # which matrices list a cell, at which position
    "bench_matrix_cells",
    METADATA,
    sa.Column("matrix_id", sa.String(64), primary_key=True),
    sa.Column("cell_id", sa.String(64), primary_key=True, index=True),
    sa.Column("position", sa.Integer, nullable=False),
)


@dataclass(frozen=True)
class QueuedCell:
    """One row of :data:`CELLS` as the workers read it (``cell`` and ``options`` parsed from their JSON)."""

    cell_id: str
    matrix_id: str
    cell: dict[str, Any]
    options: dict[str, Any]
    state: str
    mlflow_run_id: str | None
    worker: str | None = None

    @classmethod
    def of_row(cls, row: Any) -> QueuedCell:
        """The queued cell of a selected :data:`CELLS` row."""
        return cls(row.cell_id, row.matrix_id, json.loads(row.cell_json), json.loads(row.options_json), row.state,
                   row.mlflow_run_id, row.worker)  # fmt: skip


def engine_options(url: str) -> dict[str, Any]:
    """``sqlalchemy.create_engine`` keywords for the queue at ``url``: SQLite waits up to 60 s for another
    process's write lock (workers share one file); a server's pooled connections are tested before use."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def create_schema(engine: sa.Engine, url: str) -> None:
    """Create the queue's tables when missing and update a queue made by an earlier version (both idempotent, under
    the schema lock of ``url``, so processes starting at once do not race)."""
    with schema_lock(url):
        METADATA.create_all(engine)
        _backfill_members(engine)
        _rename_legacy_states(engine)


def _backfill_members(engine: sa.Engine) -> None:
    """Give rows of a queue made before ``bench_matrix_cells`` existed their inserting matrix as a member."""
    listed = sa.exists().where(MEMBERS.c.cell_id == CELLS.c.cell_id, MEMBERS.c.matrix_id == CELLS.c.matrix_id)
    missing = sa.select(CELLS.c.matrix_id, CELLS.c.cell_id, CELLS.c.position).where(~listed)
    try:
        with engine.begin() as conn:
            conn.execute(MEMBERS.insert().from_select(["matrix_id", "cell_id", "position"], missing))
    except sa.exc.IntegrityError:
        pass  # another process backfilled the same rows meanwhile


def _rename_legacy_states(engine: sa.Engine) -> None:
    """Store a finished cell's state as its record's status (queues made earlier wrote ``finalized``)."""
    with engine.begin() as conn:
        conn.execute(CELLS.update().where(CELLS.c.state == LEGACY_FINISHED).values(state=FINISHED))


def member_ids(matrix_id: str) -> sa.Select:
    """The ids of the cells that ``matrix_id`` lists, as a subquery."""
    return sa.select(MEMBERS.c.cell_id).where(MEMBERS.c.matrix_id == matrix_id)


def of_matrix(query: sa.Select, matrix_id: str) -> sa.Select:
    """``query`` on CELLS narrowed to the cells that ``matrix_id`` lists (joined, for their position)."""
    return query.join(MEMBERS, MEMBERS.c.cell_id == CELLS.c.cell_id).where(MEMBERS.c.matrix_id == matrix_id)
