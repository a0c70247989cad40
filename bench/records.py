"""Cell records on disk: ``DIR/cells/<cell id>.json``, written atomically (temp file, then rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FINISHED = "finished"
FAILED = "failed"
DIVERGED = "diverged"  # the training loss became NaN or infinite; no metric is recorded


def cells_dir(output: Path) -> Path:
    return Path(output) / "cells"


def record_path(output: Path, cell_id: str) -> Path:
    return cells_dir(output) / f"{cell_id}.json"


def write_record(output: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (which has an ``id``) so that readers never see a half-written file."""
    path = record_path(output, record["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


REQUIRED_KEYS = ("id", "status", "cell")
CELL_KEYS = {"model": str, "method": str, "task": dict, "budget": dict, "sparsity": (int, float), "seed": int}


def load_record_file(path: Path) -> dict[str, Any]:
    """The record in ``path``, checked for the keys every reader relies on.

    Raises:
        BenchError: unreadable file, bad JSON, not a JSON object, a missing or mistyped key (``id``, ``status``,
            ``cell`` with its ``model``, ``method``, ``task``, ``budget``, ``sparsity``, ``seed``), or an id that is
            not the file's name. The message names the file.
    """
    from bench.errors import BenchError

    def corrupt(problem: str) -> BenchError:
        return BenchError(
            f"corrupt record {path}: {problem}. Move the file away or delete it (its cell then runs again), "
            "or use a new --output"
        )

    try:
        record = json.loads(Path(path).read_text())
    except UnicodeDecodeError as err:
        raise corrupt(f"not text ({err.reason})") from err
    except json.JSONDecodeError as err:
        raise corrupt(f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from err
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
    return record


def record_files(output: Path) -> list[Path]:
    """The record files of ``DIR/cells``, sorted by name; hidden files (a writer's temporary files) are skipped."""
    return [p for p in sorted(cells_dir(output).glob("*.json")) if not p.name.startswith(".")]


def read_record(output: Path, cell_id: str) -> dict[str, Any] | None:
    """The record of ``cell_id``, or None when there is none.

    Raises:
        BenchError: the record file is corrupt (see :func:`load_record_file`); the message names it.
    """
    path = record_path(output, cell_id)
    return load_record_file(path) if path.exists() else None


def read_records(output: Path) -> list[dict[str, Any]]:
    """Every record in ``DIR/cells``, sorted by file name (temporary files of a writer are skipped).

    Raises:
        BenchError: a record file is corrupt (see :func:`load_record_file`); the message names it.
    """
    return [load_record_file(p) for p in record_files(output)]


def require_results(output: Path) -> None:
    """Raise BenchError unless ``output`` is a results folder (it has ``cells/``, made by ``bench run``)."""
    from bench.errors import BenchError

    if not cells_dir(output).is_dir():
        raise BenchError(f"no results in {output}: expected a folder with cells/ (made by bench run)")


def find_cell(records: list[dict], prefix: str) -> dict:
    """The record whose cell id starts with ``prefix``.

    Raises:
        BenchError: no cell or several cells match; the message lists some ids.
    """
    from bench.errors import BenchError

    found = [r for r in records if r["id"].startswith(prefix)]
    if len(found) != 1:
        listed = ", ".join(r["id"][:12] for r in (found or records)[:8])
        what = "no cell" if not found else f"{len(found)} cells"
        raise BenchError(f"{what} with id starting {prefix!r}; ids: {listed or '(none)'}")
    return found[0]
