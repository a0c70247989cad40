"""Folders a command is about to write: checked before anything is written, so bad input fails with one line.

Used by ``bench run``'s and ``bench worker``'s checks (:mod:`bench.run.preflight`) and by ``bench export``
(:mod:`bench.deploy.export`), which must not import the run wing.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.core.errors import BenchError

# The file name of the default cell queue and Optuna storage in a results folder: bench.results.folder builds its
# path, and bench.config.matrix the default --storage URL without importing the results wing.
QUEUE_DB = "bench.db"


def writable_folder(path: Path, what: str) -> Path:
    """The folder that a write to ``path`` (a folder, made when missing) first touches: ``path`` itself when it
    exists, else its nearest existing ancestor.

    ``os.access`` rather than a trial write: nothing may be written before the checks pass.

    Args:
        path: the folder (``~`` is expanded; a relative path is taken from the current folder).
        what: its name in messages, e.g. "output folder", "export folder".

    Raises:
        BenchError: ``path`` or an ancestor is a file, a dangling symbolic link or not a regular folder, or the
            folder found is not writable.
    """
    path = Path(path).expanduser().absolute()
    try:
        existing = path
        while not existing.exists():
            if existing.is_symlink():
                raise BenchError(f"cannot create {what} {path}: {existing} is a dangling symbolic link (to "
                                 f"{os.readlink(existing)})")  # fmt: skip
            existing = existing.parent
        if not existing.is_dir():
            if existing == path:
                kind = "a file" if existing.is_file() else "a device, pipe or socket"
                raise BenchError(f"{what} {path} is {kind}, not a folder; choose another folder")
            raise BenchError(f"cannot create {what} {path}: {existing} is a file, not a folder")
    except OSError as err:
        raise BenchError(f"cannot check {what} {path}: {err.strerror or err}") from err
    except ValueError as err:  # e.g. an embedded NUL byte
        raise BenchError(f"bad path for {what}: {path!r} ({err})") from err
    if not os.access(existing, os.W_OK | os.X_OK):
        how = "write to" if existing == path else f"create {path} in"
        raise BenchError(f"cannot {how} {existing} (permission denied or a read-only file system); "
                         f"choose a writable {what}")  # fmt: skip
    return existing
