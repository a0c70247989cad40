"""``bench forget DIR CELL_ID[,..]``: remove cells from a results folder so that they run again.

A finished or failed cell is skipped by every later ``bench run`` of its matrix: its record is in ``DIR/cells`` and
also in the cell queue (``bench.db``), which writes it back to ``DIR/cells`` at the end of a run. Deleting the record
file alone therefore changes nothing. Forgetting a cell removes everything that makes it "done", in this order:

1. its row in the cell queue (so no run adopts or writes back its record),
2. its Optuna study (so an HP search starts over instead of resuming),
3. its record ``DIR/cells/<id>.json``,
4. its saved model ``DIR/models/<id>/``, masks ``DIR/masks/<id>.safetensors`` and predictions
   ``DIR/predictions/<id>.npz``.

The next ``bench run`` of a matrix that has the cell queues and runs it again (with that run's flags, e.g.
``--save-models``). MLflow runs are history and are kept. A cell a live worker is running is refused.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.results import records
from bench.results.folder import ResultsFolder


def artifacts(results: Path, cell_id: str) -> dict[str, Path]:
    """The files and folders of one cell in ``results``, by what they are."""
    folder = ResultsFolder(results)
    return {
        "record": folder.record(cell_id),
        "model": folder.model(cell_id),
        "masks": folder.masks(cell_id),
        "predictions": folder.predictions(cell_id),
    }


def local_ids(results: Path) -> set[str]:
    """Cell ids that have a record, a saved model, masks or predictions in ``results``."""
    found = {p.stem for p in records.record_files(results)} | ResultsFolder(results).artifact_ids()
    return {i for i in found if not i.startswith(".")}


def resolve(refs: list[str], known: set[str]) -> list[str]:
    """Full cell ids for ``refs`` (ids or unique prefixes), in order, without repeats.

    Raises:
        BenchError: a reference that matches no cell, or several.
    """
    out: list[str] = []
    for ref in refs:
        found = sorted(i for i in known if i.startswith(ref))
        if ref in known:
            found = [ref]
        if len(found) != 1:
            listed = ", ".join(i[:12] for i in (found or sorted(known))[:8]) or "(none)"
            what = "no cell" if not found else f"{len(found)} cells"
            raise BenchError(f"{what} with id starting {ref!r} in the results folder or its queue; ids: {listed}")
        if found[0] not in out:
            out.append(found[0])
    return out


def forget(results: Path, refs: list[str], storage: str | None = None, log: Callable[[str], None] = print
           ) -> list[dict[str, Any]]:  # fmt: skip
    """Forget the cells ``refs`` (ids or unique prefixes) of the results folder ``results`` (see the module
    docstring); ``storage`` is the queue's database (default: ``DIR/bench.db`` when it exists). ``log`` gets one
    line per cell. Returns ``[{"id", "label", "removed": [what was removed]}]``.

    Raises:
        BenchError: no results folder, a bad ``storage``, a reference that matches no cell or several, or a cell
            that a live worker holds (nothing is removed then).
    """
    from bench.run.stores import check_store

    results = Path(results)
    records.require_results(results)
    if storage is None and ResultsFolder(results).queue_db.is_file():
        storage = ResultsFolder(results).storage_url
    queue = None
    if storage is not None:
        check_store("--storage", storage)
        from bench.run.queue import CellQueue

        queue = CellQueue(storage)
    queued = {row.cell_id: row for row in queue.cells()} if queue else {}
    ids = resolve(refs, local_ids(results) | set(queued))
    busy = [i for i in ids if _held_by_live_worker(queue, i)]
    if busy:
        raise BenchError(f"cell {busy[0][:12]} is being run by a live worker ({queued[busy[0]].worker}); stop it, or "
                         "wait for it to finish, then forget the cell")  # fmt: skip
    done = []
    for cell_id in ids:
        label = _label(results, cell_id, queued.get(cell_id))
        removed = []
        if queue is not None:
            try:
                if queue.forget(cell_id):
                    removed.append("queue row")
            except RuntimeError as err:
                raise BenchError(f"{err}; stop it, or wait for it to finish, then forget the cell") from None
            if _delete_study(storage, cell_id):
                removed.append("study")
        for what, path in artifacts(results, cell_id).items():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(what)
        log(f"forgot cell {cell_id[:12]} ({label}): removed {', '.join(removed) or 'nothing (nothing was left)'}")
        done.append({"id": cell_id, "label": label, "removed": removed})
    return done


def _held_by_live_worker(queue: Any, cell_id: str) -> bool:
    import time

    from bench.run.queue import CLAIMED, holder_is_dead

    row = queue.row(cell_id) if queue is not None else None
    return bool(row is not None and row.state == CLAIMED and (row.lease_until or 0) > time.time()
                and not holder_is_dead(row.worker))  # fmt: skip


def _label(results: Path, cell_id: str, row: Any) -> str:
    """``method/task @ sparsity seed N`` from the queue row or the record, or "unreadable record"."""
    cell = row.cell if row is not None else None
    if cell is None:
        try:
            found = records.read_record(results, cell_id)
            cell = found.cell if found else None
        except BenchError:
            return "unreadable record"
    if not cell:
        return "no record"
    try:
        return f"{cell['method']}/{cell['task']['name']} @ {cell['sparsity']} seed {cell['seed']}"
    except (KeyError, TypeError):
        return "unreadable cell"


def _delete_study(storage: str, cell_id: str) -> bool:
    """Delete the Optuna study named ``cell_id`` from ``storage``; False when there is none (or no Optuna tables)."""
    import sqlalchemy as sa

    engine = sa.create_engine(storage)
    try:
        has_studies = sa.inspect(engine).has_table("studies")
    finally:
        engine.dispose()
    if not has_studies:
        return False
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        optuna.delete_study(study_name=cell_id, storage=storage)
    except KeyError:
        return False
    return True
