"""A cross-process lock around creating the schema of an embedded SQLite database (and around inserting cells).

Two ``bench run`` processes started on one output folder both create ``bench.db`` (Optuna's and the cell queue's
tables) and ``mlflow.db`` (MLflow's Alembic migrations). SQLite serializes writes but not "create if missing":
the slower process fails with "table already exists" or in the middle of a migration. Schema creation therefore
runs under a file lock next to the database. Server databases (PostgreSQL, MySQL) need no lock here.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

SQLITE_PREFIX = "sqlite:///"


def schema_lock(url: str, timeout: float = 600.0) -> AbstractContextManager:
    """A file lock ``<db file>.lock`` for a ``sqlite:///PATH`` URL; a no-op context for any other URL."""
    if not url.startswith(SQLITE_PREFIX) or url == SQLITE_PREFIX + ":memory:":
        return contextlib.nullcontext()
    from filelock import FileLock

    return FileLock(url[len(SQLITE_PREFIX) :] + ".lock", timeout=timeout)


def insert_lock(url: str, timeout: float = 600.0) -> AbstractContextManager:
    """The lock held while cells are checked and inserted into the queue of ``url``: the same file lock as
    :func:`schema_lock` for an SQLite file (SQLite's own locks do not cover a read followed by a write), a no-op
    otherwise (PostgreSQL locks the table inside the transaction)."""
    return schema_lock(url, timeout)
