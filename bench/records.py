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


def read_record(output: Path, cell_id: str) -> dict[str, Any] | None:
    path = record_path(output, cell_id)
    return json.loads(path.read_text()) if path.exists() else None


def read_records(output: Path) -> list[dict[str, Any]]:
    """Every record in ``DIR/cells``, sorted by file name."""
    return [json.loads(p.read_text()) for p in sorted(cells_dir(output).glob("*.json"))]
