"""Cell records on disk: ``DIR/cells/<cell id>.json``, written atomically (temp file, then rename).

Every reader goes through :func:`load_record_file`, which checks each field a reader uses (its presence where
required, its type, finite metrics), so a hand-edited or foreign record is named with its bad field instead of
failing somewhere downstream. :func:`read_records` skips such records with a warning by default (one bad record
must not take down ``leaderboard``, ``plot``, ``report`` or ``compare``); ``bench run`` refuses a folder that holds
one (:mod:`bench.run.preflight`). ``bench forget`` (:mod:`bench.run.forget`) removes a cell so that it runs again.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.results.cell_record import (
    CELL_KEYS,
    DIVERGED,
    FAILED,
    FINISHED,
    REQUIRED_KEYS,
    STATUSES,
    CellRecord,
    record_problem,
)
from bench.results.folder import ResultsFolder


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: 0o666 without the process umask's bits."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # no /proc (macOS): read it by setting it, and put it back at once
    os.umask(umask)
    return 0o666 & ~umask


def write_record(output: Path, record: CellRecord | Mapping[str, Any]) -> Path:
    """Write ``record`` to ``DIR/cells/<id>.json`` so that readers never see a half-written file (the JSON of
    :meth:`CellRecord.to_dict`; a plain mapping is taken as it is). The file gets the mode the process umask gives
    any new file (a shared results folder stays readable to its group). Returns the file's path.

    Raises:
        OSError: the folder cannot be written (the temporary file is removed).
    """
    data = record.to_dict() if isinstance(record, CellRecord) else dict(record)
    path = ResultsFolder(output).record(record["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def forget_hint(path: Path) -> str:
    """How to make a record's cell run again, for messages about that record."""
    output = Path(path).parent.parent
    return (f"remove its cell with 'bench forget {output} {Path(path).stem[:12]}' (its record, queue row, "
            "study, saved model, masks and predictions; the cell then runs again)")  # fmt: skip


class CorruptRecord(BenchError):
    """A record file a reader cannot use; ``path`` and ``problem`` (naming the field) are kept apart."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"corrupt record {path}: {problem}. Fix or move the file away, {forget_hint(path)}, "
                         "or use a new --output")


def load_record_file(path: Path) -> CellRecord:
    """The record in ``path``, checked for every field readers rely on (:mod:`bench.results.cell_record`).

    Raises:
        BenchError: unreadable file, bad JSON, not a JSON object, a missing or mistyped key (``id``, ``status``,
            ``cell`` with its ``model``, ``method``, ``task``, ``budget``, ``sparsity``, ``seed``), an id that is
            not the file's name, or a field of the wrong type (:func:`record_problem`). The message names the file
            and the field.
    """

    def corrupt(problem: str) -> CorruptRecord:
        return CorruptRecord(path, problem)

    try:
        record = json.loads(Path(path).read_text())
    except UnicodeDecodeError as err:
        raise corrupt(f"not text ({err.reason})") from err
    except json.JSONDecodeError as err:
        raise corrupt(f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from err
    except RecursionError as err:
        raise corrupt("nested too deeply") from err
    except OSError as err:
        raise BenchError(f"cannot read record {path}: {err.strerror or err}") from err
    if not isinstance(record, dict):
        raise corrupt(f"expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise corrupt(f"missing key(s) {', '.join(missing)}")
    if not isinstance(record["id"], str) or not isinstance(record["status"], str):
        raise corrupt("'id' and 'status' must be strings")
    if not isinstance(record["cell"], dict):
        raise corrupt(f"'cell' must be an object, got {type(record['cell']).__name__}")
    for key, kind in CELL_KEYS.items():
        if key not in record["cell"]:
            raise corrupt(f"'cell' lacks {key!r}")
        if not isinstance(record["cell"][key], kind) or isinstance(record["cell"][key], bool):
            raise corrupt(f"'cell.{key}' has the wrong type ({type(record['cell'][key]).__name__})")
    if "name" not in record["cell"]["task"]:
        raise corrupt("'cell.task' lacks 'name'")
    if record["id"] != Path(path).stem:
        raise corrupt(f"its id {record['id'][:12]}... is not its file name")
    problem = record_problem(record)
    if problem:
        raise corrupt(problem)
    return CellRecord.from_dict(record)


def predictions_problem(output: Path, record: Mapping[str, Any]) -> str | None:
    """What is wrong with a finished record's saved predictions (``OUTPUT/predictions/<id>.npz``) as readers use
    them, or None (no file is fine: older records saved none)."""
    import zipfile

    import numpy as np

    if record["status"] != FINISHED:
        return None
    path = ResultsFolder(output).predictions(record["id"])
    if not path.exists():
        return None
    key = f"per_example/{record['primary_metric']}"
    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data.files:
                return None
            values = np.asarray(data[key], dtype=float)
    except (OSError, ValueError, EOFError, TypeError, KeyError, zipfile.BadZipFile) as err:
        return f"its predictions file {path} cannot be read ({type(err).__name__}: {err})"
    if values.ndim != 1:
        return f"its predictions file {path}: {key!r} has shape {values.shape}, expected one value per example"
    return None


def record_files(output: Path) -> list[Path]:
    """The record files of ``DIR/cells``, sorted by name; hidden files (a writer's temporary files) are skipped."""
    return [p for p in sorted(ResultsFolder(output).cells.glob("*.json")) if not p.name.startswith(".")]


def read_record(output: Path, cell_id: str) -> CellRecord | None:
    """The record of ``cell_id``, or None when there is none.

    Raises:
        BenchError: the record file is corrupt (see :func:`load_record_file`); the message names it.
    """
    path = ResultsFolder(output).record(cell_id)
    return load_record_file(path) if path.exists() else None


OnBad = str | Callable[[Path, str], None]


def read_records(output: Path, on_bad: OnBad = "warn", skipped: list[tuple[Path, str]] | None = None
                 ) -> list[CellRecord]:  # fmt: skip
    """Every record in ``DIR/cells``, sorted by file name (temporary files of a writer are skipped).

    A record that cannot be used (see :func:`load_record_file`: a corrupt or hand-edited file, a missing or
    mistyped field, a metric that is a string or NaN; or a predictions file that cannot be read) is handled by
    ``on_bad``: ``"warn"`` (default) leaves it out and prints ``bench: warning: skipped record FILE: PROBLEM`` for
    each and then how many were skipped, to stderr; ``"skip"`` leaves it out silently; ``"raise"`` raises; a
    callable gets ``(path, problem)`` for each and the record is left out. ``skipped``, when given, collects the
    ``(path, problem)`` pairs of the records left out.

    Raises:
        BenchError: with ``on_bad="raise"``, the first bad record; the message names the file and the field.
    """
    found, bad = [], []
    for path in record_files(output):
        try:
            record = load_record_file(path)
            problem = predictions_problem(output, record)
            if problem:
                raise CorruptRecord(path, problem)
        except BenchError as err:
            if on_bad == "raise":
                raise
            bad.append((path, getattr(err, "problem", str(err))))
            continue
        found.append(record)
    if skipped is not None:
        skipped.extend(bad)
    if bad and on_bad == "warn":
        for path, problem in bad:
            print(f"bench: warning: skipped record {path}: {problem}", file=sys.stderr)
        print(f"bench: warning: {len(bad)} record{'s' if len(bad) > 1 else ''} of {output} skipped (named above); fix "
              f"or move them, or remove their cells with bench forget {output} ID", file=sys.stderr)
    elif bad and callable(on_bad):
        for path, problem in bad:
            on_bad(path, problem)
    return found


def require_results(output: Path) -> None:
    """Raise BenchError unless ``output`` is a results folder (it has ``cells/``, made by ``bench run``)."""
    if not ResultsFolder(output).cells.is_dir():
        raise BenchError(f"no results in {output}: expected a folder with cells/ (made by bench run)")


def find_cell(records: list[Any], prefix: str) -> Any:
    """The record whose cell id starts with ``prefix``.

    Raises:
        BenchError: no cell or several cells match; the message lists some ids.
    """
    found = [r for r in records if r["id"].startswith(prefix)]
    if len(found) != 1:
        listed = ", ".join(r["id"][:12] for r in (found or records)[:8])
        what = "no cell" if not found else f"{len(found)} cells"
        raise BenchError(f"{what} with id starting {prefix!r}; ids: {listed or '(none)'}")
    return found[0]


__all__ = ["DIVERGED", "FAILED", "FINISHED", "STATUSES", "CellRecord", "CorruptRecord", "find_cell", "load_record_file",
           "read_record", "read_records", "record_files", "require_results", "write_record"]
