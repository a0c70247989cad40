"""What ``bench`` says when something other than bad input stops a command (used by :func:`bench.cli.app.main`, and by
the worker (:mod:`bench.run.cell_run`), which lets these errors stop the matrix instead of failing the cell).

* :func:`environment_problem`: the disk filled up (or a quota, or a file size limit, was reached) or a database file
  broke while working. These are not bugs: one line names the file and what to do.
* :func:`write_crash_log`: anything else is a bug. Its full traceback goes to a log file, under the results folder's
  ``logs/`` when the command has one, else the temp folder, and the terminal gets one line naming that file.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.results.folder import ResultsFolder

NO_SPACE = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file size limit reached"}
FULL_TEXT = ("database or disk is full", "no space left on device", "disk quota exceeded", "file too large")
CORRUPT_TEXT = ("file is not a database", "database disk image is malformed")
TRACKING_MODULE = os.path.join("bench", "run", "tracking.py")  # bench.run.tracking: its errors are the MLflow store's
KEPT = ("Finished cells are kept (their records are in the study database too); free some space and rerun the same "
        "command.")  # fmt: skip


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err``, its causes and contexts, and the driver errors SQLAlchemy wraps (``.orig``), each once."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "orig", None)]


def _stores(args: Any) -> dict[str, str | None]:
    """The database files the command works with: ``{"--storage": path, "--tracking-uri": path}`` (None: unknown
    or not a file)."""
    output = getattr(args, "results_folder", None) or getattr(args, "output", None)
    storage = getattr(args, "storage_url", None) or getattr(args, "storage", None)
    tracking = getattr(args, "tracking_url", None) or getattr(args, "tracking_uri", None)
    if output:
        storage = storage or ResultsFolder(output).storage_url
        tracking = tracking or ResultsFolder(output).tracking_uri
    return {flag: url[len("sqlite:///"):] if isinstance(url, str) and url.startswith("sqlite:///") else url
            for flag, url in (("--storage", storage), ("--tracking-uri", tracking))}  # fmt: skip


def _database(err: BaseException, args: Any) -> tuple[str, str]:
    """(flag, file or URL) of the database an error came from, judged by the code it was raised in: MLflow's is
    the tracking store, anything else (Optuna, the cell queue) the ``--storage`` database."""
    stores = _stores(args)
    for current in _chain(err):
        for frame in traceback.extract_tb(current.__traceback__):
            if f"{os.sep}mlflow{os.sep}" in frame.filename or frame.filename.endswith(TRACKING_MODULE):
                return "--tracking-uri", stores["--tracking-uri"] or "the MLflow store"
    return "--storage", stores["--storage"] or "the --storage database"


def environment_problem(err: BaseException, args: Any = None) -> str | None:
    """One line for a full disk, a quota or file size limit, or a database that is corrupt or cannot be written,
    met while working; None for anything else."""
    for current in _chain(err):
        if isinstance(current, OSError) and current.errno in NO_SPACE:
            where = current.filename or getattr(args, "results_folder", None) or "writing results"
            return f"{NO_SPACE[current.errno]} ({where}). {KEPT}"
    text = " ".join(str(current) for current in _chain(err)).lower()
    if any(words in text for words in FULL_TEXT):
        return f"disk full ({_database(err, args)[1]}). {KEPT}"
    if any(words in text for words in CORRUPT_TEXT):
        from bench.run.stores import corrupt_database_message

        flag, path = _database(err, args)
        found = next(words for words in CORRUPT_TEXT if words in text)
        return corrupt_database_message(flag, Path(path), found)
    if "disk i/o error" in text:
        flag, path = _database(err, args)
        return (f"cannot write the {flag} database {path} (disk I/O error: the disk may be full, over quota or "
                f"failing). {KEPT}")  # fmt: skip
    return None


def log_folder(args: Any) -> Path:
    """``RESULTS/logs`` when the command names a results folder that exists, else the temp folder."""
    for name in ("results_folder", "output", "results", "folder_a"):
        folder = getattr(args, name, None)
        if isinstance(folder, (str, Path)) and str(folder).strip() and Path(folder).is_dir():
            return ResultsFolder(folder).logs
    return Path(tempfile.gettempdir())


def write_crash_log(err: BaseException, args: Any = None, argv: list[str] | None = None) -> Path | None:
    """Write the command line, versions and full traceback of ``err`` to a new log file in :func:`log_folder` (the
    temp folder if that fails); returns its path, or None when no file could be written."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("prune-bench")
    except PackageNotFoundError:
        package = "unknown"
    command = " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"bench {command}\nprune-bench {package}, Python {sys.version.split()[0]}, {sys.platform}\n"
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n\n" + "".join(traceback.format_exception(err)))
    name = f"bench-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in dict.fromkeys((log_folder(args), Path(tempfile.gettempdir()))):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text)
            return path
        except OSError:
            continue
    return None
