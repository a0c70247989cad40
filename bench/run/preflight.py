"""Checks that run before a matrix writes anything: bad input fails fast, with exit code 2 and nothing written.

:func:`check` runs on every ``bench run`` right after the matrix is expanded into cells and before the output
folder, the cell queue (``bench.db``) or the MLflow store are created. Each check raises
:class:`bench.core.errors.BenchError` naming the bad value and the fix:

- **output folder**: it, or its nearest existing ancestor, is a folder this process can write (not a file, a
  dangling link or read-only); the same for the folder of an SQLite ``--storage``/``--tracking-uri`` file;
- **databases**: ``--storage`` and ``--tracking-uri`` parse, name a known dialect or scheme, an SQLite file that is
  a database (not corrupt), or a server that answers within a few seconds (:mod:`bench.run.stores`);
- **records already there**: every ``OUTPUT/cells/*.json`` parses as a record (a corrupt one is named), and comes
  from the same *protocol* (a folder holds one protocol: the same model, and per task the same splits, budget
  and HP-search settings; adding methods, sparsities, seeds or tasks is fine, and a rerun skips finished cells);
  :func:`check_queued` checks the cells already queued again, under the queue's lock, when the matrix is queued
  (two runs started at once have no records yet);
- **model**: it resolves (a local folder with ``config.json`` and weights, or a Hub id, from the cache when
  ``HF_HUB_OFFLINE`` is set), has a tokenizer, its architecture is in the prunable table, and every task's head
  fits it (:meth:`bench.core.task.Task.check_model`: a fine-tuned classifier with another label count is refused), and
  ``max_length`` fits its position embeddings;
- **splits**: every task's train and eval split exists and a slice does not reach past the split's end
  (:func:`bench.core.hub.split_problem`), read from the dataset's split info without loading it;
- **free disk**: at least :data:`bench.run.cost_checks.MIN_FREE_BYTES` on the output folder's file system, plus
  the size of the model's weights for every cell that will save its model (``--save-models``, and the dense
  teachers of ``--distill``).

The model and split checks live in :mod:`bench.run.model_checks`, the disk check and the warnings about pruning
schedules too short for their method in :mod:`bench.run.cost_checks`.

On a valid matrix the checks cost about a second (the model's config and tokenizer, each dataset's split info).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core import paths
from bench.core.errors import BenchError
from bench.results import records
from bench.results.folder import ResultsFolder
from bench.run.cost_checks import check_disk
from bench.run.model_checks import check_length, check_model, check_splits, distinct_tasks
from bench.run.tracking import tracking_uri

if TYPE_CHECKING:
    from bench.config.cell import Cell
    from bench.config.matrix import Matrix
    from bench.results.cell_record import CellRecord

FOLDER_RULE = (
    "A results folder holds one protocol: one model, and per task the same splits, budget and HP-search settings "
    "(adding methods, sparsities, seeds or tasks is fine)"
)


def check(matrix: Matrix, cells: list[Cell]) -> None:
    """Raise :class:`bench.core.errors.BenchError` for anything that would make the matrix fail; write nothing."""

    target = writable_folder(Path(matrix.output), "output folder")
    check_stores(matrix.storage_url, tracking_uri(matrix.tracking_uri, ResultsFolder(matrix.output).tracking_uri))
    done = check_records(matrix, cells)
    tasks = distinct_tasks(cells)
    weights: dict[str, int | None] = {}
    for model in sorted({c.model for c in cells}):
        config, weights[model] = check_model(model)
        check_length(model, config, cells)
        for task in tasks:
            task.check_model(model, config)
    for task in tasks:
        check_splits(task)
    check_disk(matrix, cells, target, done, weights)


def check_stores(storage: str, tracking_uri: str) -> None:
    """The queue/study database and the MLflow store (:func:`bench.run.stores.check_store`: parsable, a known dialect
    or scheme, a server that answers, an SQLite file that is a database), and the folder a local one goes in.

    Raises:
        BenchError: naming the flag and the URL.
    """
    from bench.run.stores import check_store

    for flag, url in (("--storage", storage), ("--tracking-uri", tracking_uri)):
        local = check_store(flag, url)  # an SQLite file, or MLflow's local folder store
        if local is not None and local.is_dir():
            writable_folder(local, f"{flag} folder")
        elif local is not None:
            writable_folder(local.absolute().parent, f"folder of the {flag} database {local}")


# ---- the output folder --------------------------------------------------------------------------------------
def writable_folder(path: Path, what: str) -> Path:
    """The folder that a write to ``path`` first touches (:func:`bench.core.paths.writable_folder`), for a folder
    that may be a results folder: when ``path`` exists and has a records folder ``cells/``, that must be a writable
    folder too.

    Raises:
        BenchError: ``path`` cannot be made or written (see :func:`bench.core.paths.writable_folder`), or its
            ``cells/`` is not a writable folder.
    """
    existing = paths.writable_folder(path, what)
    cells = ResultsFolder(existing).cells
    if existing == Path(path).expanduser().absolute() and cells.exists() and not (
        cells.is_dir() and os.access(cells, os.W_OK | os.X_OK)
    ):
        raise BenchError(f"cannot write records to {cells} (not a writable folder); choose another --output")
    return existing


def check_records(matrix: Matrix, cells: list[Cell]) -> dict[str, CellRecord]:
    """``{cell id: record}`` of the records already in the output folder, each read and compared with the matrix.

    Raises:
        BenchError: a corrupt record, or one from another protocol (see :data:`FOLDER_RULE`); the file is named.
    """
    if not ResultsFolder(matrix.output).cells.is_dir():
        return {}
    expected = protocols(cells)
    models = {c.model for c in cells}
    found = {path: records.load_record_file(path) for path in records.record_files(matrix.output)}  # corrupt: first
    for path, record in found.items():
        conflict = protocol_conflict(record.cell, models, expected)
        if conflict:
            raise BenchError(
                f"output folder {matrix.output} holds records of another protocol: {path} {conflict}. "
                f"{FOLDER_RULE}. Use a new --output for this matrix, or run it with the folder's settings"
            )
    return {record.id: record for record in found.values()}


def check_queued(matrix: Matrix, cells: list[Cell], queued: list[tuple[str, dict[str, Any]]]) -> None:
    """Compare the cells already in the queue (``[(cell id, cell dict)]``, of earlier or concurrent matrices,
    read under the queue's insert lock) with the matrix: the folder-protocol check of :func:`check_records` that
    holds when two runs start at once, before either has written a record.

    Raises:
        BenchError: a queued cell of another protocol (see :data:`FOLDER_RULE`), naming it and the queue.
    """
    expected, models = protocols(cells), {c.model for c in cells}
    for cell_id, cell in queued:
        conflict = protocol_conflict(cell, models, expected)
        if conflict:
            what = f"{cell['method']}/{cell['task']['name']} @ {cell['sparsity']} seed {cell['seed']}"
            raise BenchError(
                f"output folder {matrix.output} holds cells of another protocol in its queue {matrix.storage_url} "
                f"(queued by another bench run, maybe still running): cell {cell_id[:12]} ({what}) {conflict}. "
                f"{FOLDER_RULE}. Use a new --output for this matrix, or run it with the folder's settings"
            )


def _json(value: Any) -> Any:
    """``value`` as it reads back from a record (tuples become lists, and so on)."""
    return json.loads(json.dumps(value, sort_keys=True))


def _protocol(cell: dict[str, Any]) -> dict[str, Any]:
    search = cell.get("search") or None
    shared = {k: v for k, v in search.items() if k != "method_space"} if search else None
    return {"task": {k: v for k, v in cell["task"].items() if k != "name"}, "budget": cell["budget"], "search": shared}


def protocols(cells: list[Cell]) -> dict[str, Any]:
    """Per task name: the protocol of the matrix's cells, and per method its own search knobs."""
    out: dict[str, Any] = {}
    for cell in cells:
        data = _json(cell.to_dict())
        entry = out.setdefault(cell.task_name, {"protocol": _protocol(data), "method_space": {}})
        entry["method_space"][cell.method] = (data.get("search") or {}).get("method_space")
    return out


def protocol_conflict(cell: dict[str, Any], models: set[str], expected: dict[str, Any]) -> str | None:
    """How a record's cell departs from the matrix's protocol, as a phrase, or None when it fits."""
    if cell["model"] not in models:
        return f"was run on model {cell['model']!r}; this matrix uses {', '.join(repr(m) for m in sorted(models))}"
    task = cell["task"]["name"]
    if task not in expected:
        return None  # a task this matrix does not run: it may stay
    theirs, mine = _protocol(cell), expected[task]["protocol"]
    for part in ("task", "budget"):
        keys = sorted(set(theirs[part]) | set(mine[part]))
        for key in keys:
            if theirs[part].get(key) != mine[part].get(key):
                label = key if part == "task" else f"budget {key}"
                return (f"ran task {task!r} with {label} {theirs[part].get(key)!r}; "
                        f"this matrix has {mine[part].get(key)!r}")  # fmt: skip
    if (theirs["search"] is None) != (mine["search"] is None):
        state = lambda s: "without HP search" if s is None else f"with an HP search of {s['trials']} trials"  # noqa: E731
        return f"ran task {task!r} {state(theirs['search'])}; this matrix runs it {state(mine['search'])}"
    if theirs["search"] != mine["search"]:
        keys = sorted(set(theirs["search"]) | set(mine["search"]))
        key = next(k for k in keys if theirs["search"].get(k) != mine["search"].get(k))
        return (f"ran task {task!r} with search {key} {theirs['search'].get(key)!r}; "
                f"this matrix has {mine['search'].get(key)!r}")  # fmt: skip
    method = cell["method"]
    spaces = expected[task]["method_space"]
    theirs_space = (cell.get("search") or {}).get("method_space")
    if method in spaces and theirs_space != spaces[method]:
        return f"tuned {method} on {task!r} with knobs {theirs_space!r}; this matrix has {spaces[method]!r}"
    return None
