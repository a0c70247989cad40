"""Checks of the two databases a matrix writes to, before anything is written: the cell queue and Optuna studies
(``--storage``, an SQLAlchemy URL) and the MLflow store (``--tracking-uri``).

:func:`check_store` is the one place that knows what a valid URL is. It raises :class:`bench.core.errors.BenchError`,
naming the flag, for a URL that cannot be parsed, an unknown database dialect or MLflow scheme, a driver that is not
installed, an SQLite path that is a folder, a dangling link or not an SQLite database (a corrupt file), and a server
that cannot be reached within :data:`CONNECT_TIMEOUT` seconds (instead of retrying for minutes). ``none`` is a valid
tracking URI: no MLflow runs.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from bench.core.errors import BenchError
from bench.core.hub import first_line

CONNECT_TIMEOUT = float(os.environ.get("BENCH_CONNECT_TIMEOUT", "5"))  # seconds per server check
SQLITE_HEADER = b"SQLite format 3\x00"
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb", "mssql", "oracle")  # SQLAlchemy dialects MLflow takes
MLFLOW_SCHEMES = ("file", "http", "https", "databricks", *SQL_SCHEMES)
WHAT = {"--storage": "the cell queue and Optuna studies", "--tracking-uri": "MLflow runs"}


def check_store(flag: str, url: str) -> Path | None:
    """Check the ``--storage`` URL or the ``--tracking-uri`` given as ``flag``; returns the SQLite database file or
    the local MLflow folder it names (None for a server, or ``none``).

    Raises:
        BenchError: see the module docstring; the message names the flag, the URL (without its password) and what to
            do.
    """
    if flag == "--tracking-uri":
        return check_tracking_uri(url)
    return check_database_url(flag, url)


def check_tracking_uri(uri: str) -> Path | None:
    """An MLflow tracking URI: ``none``, a local folder or ``file:`` URI, a database URL, or an ``http(s)`` server."""
    from bench.run.tracking import NO_TRACKING

    flag = "--tracking-uri"
    if uri == NO_TRACKING:
        return None
    scheme = urlparse(uri).scheme.lower()
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):
        return local_folder(flag, Path(uri))
    if scheme == "file":
        return local_folder(flag, Path(urlparse(uri).path))
    if scheme in ("http", "https"):
        check_http(flag, uri)
        return None
    if scheme.split("+")[0] in SQL_SCHEMES:
        return check_database_url(flag, uri)
    if scheme == "databricks":
        return None  # credentials live in the Databricks config; MLflow checks them itself
    raise BenchError(
        f"{flag} {uri!r}: unknown scheme {scheme!r}; MLflow takes a local folder, or {', '.join(MLFLOW_SCHEMES)} "
        "URIs (e.g. sqlite:///results/mlflow.db, http://host:5000), or 'none' for no MLflow runs"
    )


def local_folder(flag: str, path: Path) -> Path:
    """A local MLflow file store: a folder, or a path where one can be made."""
    path = path.expanduser()
    if path.is_symlink() and not path.exists():
        raise BenchError(f"{flag} {path}: a dangling symbolic link (to {os.readlink(path)})")
    if path.exists() and not path.is_dir():
        raise BenchError(f"{flag} {path} is a file, not a folder; give a folder for the MLflow file store, an "
                         "sqlite:/// URI or 'none'")  # fmt: skip
    return path


def check_database_url(flag: str, url: str) -> Path | None:
    """An SQLAlchemy URL: parsable, a known dialect with its driver installed; an SQLite file that is a database
    (or does not exist yet); a server that answers within :data:`CONNECT_TIMEOUT` seconds."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    example = "e.g. sqlite:///results/bench.db or postgresql://user@host/db"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError) as err:
        raise BenchError(f"{flag} {url!r} is not a database URL ({first_line(err)}); {example}") from err
    shown = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError as err:
        raise BenchError(f"{flag} {shown!r}: unknown database dialect {parsed.drivername!r}; SQLAlchemy knows "
                         f"{', '.join(SQL_SCHEMES)} (with an optional +driver); {example}") from err  # fmt: skip
    except ImportError as err:
        raise BenchError(f"{flag} {shown!r}: the driver of {parsed.drivername!r} is not installed ({first_line(err)}); "
                         "for PostgreSQL: pip install 'prune-bench[postgres]'") from err  # fmt: skip
    if dialect.name == "sqlite":
        return sqlite_file(flag, parsed.database)
    check_server(flag, url, shown, parsed.get_backend_name())
    return None


def sqlite_file(flag: str, database: str | None) -> Path:
    """The database file of an SQLite URL: not in memory (workers must share it), not a folder or dangling link,
    and, when it exists, an SQLite database that opens."""
    import sqlite3

    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise BenchError(f"{flag}: an in-memory SQLite database holds nothing across processes or runs; give a file, "
                         "e.g. sqlite:///results/bench.db")  # fmt: skip
    path = Path(database).expanduser()
    if path.is_symlink() and not path.exists():
        raise BenchError(f"{flag} database {path} is a dangling symbolic link (to {os.readlink(path)})")
    if not path.exists():
        return path
    if path.is_dir():
        raise BenchError(f"{flag} database {path} is a folder, not a file; give the path of a database file")
    if not path.is_file():
        raise BenchError(f"{flag} database {path} is not a regular file")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as err:
        raise BenchError(f"cannot read the {flag} database {path}: {err.strerror or err}") from err
    problem = None
    if header and header != SQLITE_HEADER:  # an empty file is an empty database
        problem = "it is not an SQLite database"
    else:
        try:
            conn = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=ro", uri=True, timeout=CONNECT_TIMEOUT)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                conn.close()
        except sqlite3.DatabaseError as err:
            if "locked" in str(err) or "busy" in str(err):
                return path  # another process writes to it: it is a database
            problem = str(err)
    if problem:
        raise BenchError(corrupt_database_message(flag, path, problem))
    return path


def corrupt_database_message(flag: str, path: Path, problem: str) -> str:
    """What to do about a corrupt queue/study or MLflow database."""
    if flag == "--tracking-uri":
        fix = ("a new one is made; the MLflow runs in it are lost, records and studies keep everything), or run with "
               "--tracking-uri none")  # fmt: skip
    else:
        fix = ("a new one is made; finished cells are kept in the records under cells/ and are not run again, the "
               "Optuna studies and the queue in it are lost)")  # fmt: skip
    return f"corrupt {flag} database {path} ({problem}): move it away and rerun ({fix}"


def check_server(flag: str, url: str, shown: str, backend: str) -> None:
    """Connect to a database server once, giving up after :data:`CONNECT_TIMEOUT` seconds."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    connect_args: dict[str, Any] = {}
    if backend in ("postgresql", "mysql", "mariadb"):
        connect_args["connect_timeout"] = max(1, int(CONNECT_TIMEOUT))
    try:
        engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except ImportError as err:
        raise BenchError(f"{flag} {shown!r}: its database driver is not installed ({first_line(err)}); for "
                         "PostgreSQL: pip install 'prune-bench[postgres]'") from err  # fmt: skip
    except Exception as err:  # noqa: BLE001 - bad URL parts (port, query options) surface here
        raise BenchError(f"{flag} {shown!r}: {first_line(err)}") from err

    def connect() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    error = _within(connect, CONNECT_TIMEOUT + 1)
    engine.dispose()
    if error is not None:
        raise BenchError(
            f"cannot reach the {flag} database {shown} ({error}): {WHAT[flag]} live there. Check that the server "
            "runs and the URL's user, host, port and database"
        )


def check_http(flag: str, uri: str) -> None:
    """One GET of the MLflow server's ``/health`` within :data:`CONNECT_TIMEOUT` seconds; any HTTP answer counts."""
    import urllib.error
    import urllib.request

    def get() -> None:
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=CONNECT_TIMEOUT):  # noqa: S310
                pass
        except urllib.error.HTTPError:
            pass  # the server answered

    error = _within(get, CONNECT_TIMEOUT + 1)
    if error is not None:
        raise BenchError(
            f"cannot reach the MLflow server {flag} {uri} ({error}): start it (mlflow server --host 0.0.0.0 --port "
            "5000 ...), check the URI, or run with --tracking-uri none (records and studies still keep everything)"
        )


def _within(call, seconds: float) -> str | None:
    """Run ``call`` in a daemon thread; None when it returned within ``seconds``, else why not (its error, or that
    it did not answer in time)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - reported to the caller
            outcome.append(err)

    thread = threading.Thread(target=run, name="bench-store-check", daemon=True)
    thread.start()
    thread.join(seconds)
    if not outcome:
        return f"no answer within {seconds:.0f} s"
    err = outcome[0]
    if err is None:
        return None
    reason = getattr(err, "reason", None) or getattr(err, "orig", None) or err
    return first_line(reason) if str(reason).strip() else type(reason).__name__
