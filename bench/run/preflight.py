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
  (:func:`bench.core.task.split_problem`), read from the dataset's split info without loading it;
- **free disk**: at least :data:`MIN_FREE_BYTES` on the output folder's file system, plus the size of the model's
  weights for every cell that will save its model (``--save-models``, and the dense teachers of ``--distill``).

On a valid matrix the checks cost about a second (the model's config and tokenizer, each dataset's split info).
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core import registry
from bench.core.errors import BenchError
from bench.core.hub import first_line, hub_hint, split_problem, with_hub_hint
from bench.results import records
from bench.results.folder import ResultsFolder

if TYPE_CHECKING:
    from bench.config.cell import Cell
    from bench.config.matrix import Matrix
    from bench.core.task import Task
    from bench.results.cell_record import CellRecord

MIN_FREE_BYTES = 256 * 2**20  # records, the MLflow and Optuna SQLite files and their journals, leaderboards
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
FOLDER_RULE = (
    "A results folder holds one protocol: one model, and per task the same splits, budget and HP-search settings "
    "(adding methods, sparsities, seeds or tasks is fine)"
)


def check(matrix: Matrix, cells: list[Cell]) -> None:
    """Raise :class:`bench.core.errors.BenchError` for anything that would make the matrix fail; write nothing."""

    target = writable_folder(Path(matrix.output), "output folder")
    check_stores(matrix.storage_url, matrix.tracking_uri or ResultsFolder(matrix.output).tracking_uri)
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
    """The folder that a write to ``path`` (a folder, made when missing) first touches: ``path`` itself when it
    exists, else its nearest existing ancestor.

    Raises:
        BenchError: ``path`` or an ancestor is a file, or that folder is not writable.
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
    cells = ResultsFolder(path).cells
    if existing == path and cells.exists() and not (cells.is_dir() and os.access(cells, os.W_OK | os.X_OK)):
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


# ---- model, heads, splits --------------------------------------------------------------------------------------
def check_model(model: str) -> tuple[Any, int | None]:
    """(the model's transformers config, bytes of its weight files or None when unknown).

    Raises:
        BenchError: a missing local folder or one that is not a saved model, a Hub id that cannot be resolved
            (offline: with a hint about ``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE``), no tokenizer, no weights, or an
            architecture outside the prunable table.
    """
    from transformers import AutoConfig, AutoTokenizer

    from bench.core.prunable import architecture_for

    local = Path(model).expanduser()
    is_local = local.exists() or looks_like_path(model)
    weights = check_local_model(model, local) if is_local else None
    try:
        config = AutoConfig.from_pretrained(model)
    except Exception as err:  # noqa: BLE001 - OSError, ValueError, Hub errors: all mean "cannot resolve"
        if is_local:
            raise BenchError(f"cannot load the model saved in {local}: {first_line(err)}") from err
        raise BenchError(with_hub_hint(
            f"cannot resolve model {model!r}: it is not a local folder, and the Hub id failed: {first_line(err)}"
        )) from err  # fmt: skip
    try:
        architecture_for(getattr(config, "model_type", None))
    except BenchError as err:
        raise BenchError(f"model {model!r}: {err}") from None
    if weights is None:
        weights = cached_weights(model)
    try:
        AutoTokenizer.from_pretrained(model)
    except Exception as err:  # noqa: BLE001 - a missing or broken tokenizer raises many kinds
        raise BenchError(with_hub_hint(f"model {model!r} has no usable tokenizer: {first_line(err)}")) from err
    return config, weights


POSITION_OFFSET = {"roberta": 2, "mpnet": 2}  # position ids start after the padding index


def check_length(model: str, config: Any, cells: list[Cell]) -> None:
    """Every cell's ``max_length`` fits the model's position embeddings.

    Raises:
        BenchError: naming the longest ``max_length`` and the model's limit.
    """
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return
    limit = positions - POSITION_OFFSET.get(getattr(config, "model_type", ""), 0)
    longest = max((c.budget.max_length for c in cells if c.model == model), default=0)
    if longest > limit:
        raise BenchError(f"--max-length {longest} is longer than model {model!r} takes ({limit} tokens, its position "
                         "embeddings); give --max-length (or budget.max_length) at most that")  # fmt: skip


def looks_like_path(model: str) -> bool:
    """A Hub id is ``name`` or ``owner/name``; anything with more slashes, or starting like a path, is a path."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def check_local_model(model: str, path: Path) -> int:
    """Bytes of the weights of the saved model in folder ``path``.

    Raises:
        BenchError: no such folder, a file, no ``config.json`` or no weight files.
    """
    if not path.exists():
        raise BenchError(
            f"model {model!r}: no such folder {path.absolute()}; give a saved model folder or a Hub id such as "
            "'sentence-transformers/all-MiniLM-L6-v2'"
        )
    if not path.is_dir():
        raise BenchError(f"model {model!r}: {path} is a file; give the folder a model was saved to (save_pretrained)")
    if not (path / "config.json").is_file():
        raise BenchError(f"model {model!r}: {path} has no config.json, so it is not a saved transformers model")
    size = weights_size(path)
    if size is None:
        raise BenchError(
            f"model {model!r}: {path} has no weights ({' or '.join(WEIGHT_PATTERNS)}); save the model with "
            "save_pretrained"
        )
    return size


def weights_size(folder: Path) -> int | None:
    """Bytes of the weight files in ``folder`` (safetensors when there are any, else PyTorch .bin), or None."""
    for pattern in WEIGHT_PATTERNS:
        files = sorted(folder.glob(pattern))
        if files:
            return sum(f.stat().st_size for f in files)
    return None


def cached_weights(model: str) -> int | None:
    """Bytes of a Hub model's weight files in the local Hub cache, or None when they are not there (yet).

    Raises:
        BenchError: ``HF_HUB_OFFLINE`` is set and the cache has the model's config but not its weights.
    """
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(model, allow_patterns=list(WEIGHT_PATTERNS), local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (yet): online, training downloads it
        folder = None
    size = weights_size(Path(folder)) if folder else None
    if size is None and hub_hint():
        raise BenchError(with_hub_hint(f"model {model!r}: its weights are not in the Hub cache"))
    return size


def distinct_tasks(cells: list[Cell]) -> list[Task]:
    """One task object per distinct task spec of the cells (name, dataset, splits)."""
    tasks = {}
    for cell in cells:
        key = json.dumps(cell.task, sort_keys=True)
        if key not in tasks:
            spec = cell.task
            task_cls = registry.tasks.get(spec["name"])
            tasks[key] = task_cls(spec["train_split"], spec["eval_split"], spec["dev_fraction"])
    return list(tasks.values())


def check_splits(task: Task) -> None:
    """The task's train and eval splits exist in its dataset, and their slices fit.

    Raises:
        BenchError: the dataset cannot be read, a split is missing (the available ones are listed), a slice
            reaches past its split's end (both numbers named), or selects nothing.
    """
    sizes = task.split_sizes()
    if sizes is None:
        return
    dataset = f"{task.dataset_id}" + (f" ({task.dataset_config})" if task.dataset_config else "")
    for role, spec in (("train split", task.train_split), ("eval split", task.eval_split)):
        problem = split_problem(spec, sizes, dataset)
        if problem:
            flag = "--train-split" if role == "train split" else "--eval-split"
            raise BenchError(f"task {task.name!r}: {role} {spec!r}: {problem} (set by {flag} or 'splits:' in the "
                             "config)")  # fmt: skip


# ---- schedules too short for their method (a warning, not a refusal) ----------------------------------------------
def schedule_warnings(cells: list[Cell]) -> list[str]:
    """One line per method whose pruning ramp in some cells is shorter than its ``min_ramp_steps``, naming the
    cells, the ramp they get and the steps they would need. Steps are counted from the train split's example count
    (a lower bound for QA, where one example can make several windows). Empty when every ramp is long enough or
    a split size is unknown.
    """
    short: dict[str, list[str]] = {}
    for cell in cells:
        method_cls = registry.methods.get(cell.method)
        if not method_cls.prunes or not method_cls.min_ramp_steps:
            continue
        examples = train_examples(cell)
        if examples is None:
            continue
        steps = math.ceil(math.ceil(examples / cell.budget.batch_size) * cell.budget.epochs)
        schedule = method_cls(cell.sparsity, **cell.method_hparams).pruning_schedule(max(1, steps))
        if schedule is not None and schedule.ramp_steps < method_cls.min_ramp_steps:
            short.setdefault(cell.method, []).append(f"{cell.label()} ramps {schedule.ramp_steps}")
    return [
        f"warning: {len(found)} {method} cell(s) prune over fewer steps than the method needs "
        f"(min_ramp_steps {registry.methods.get(method).min_ramp_steps}; see its docstring): {'; '.join(found[:4])}"
        f"{' ...' if len(found) > 4 else ''}. Their results will carry the 'short schedule' verdict; give more "
        "steps (--epochs, a larger --train-split) or warmup_steps/cooldown_steps"
        for method, found in short.items()
    ]


def train_examples(cell: Cell) -> int | None:
    """Examples in the cell's train split spec, from the dataset card's split sizes; None when unknown."""
    from datasets import ReadInstruction

    spec = cell.task
    try:
        sizes = _split_sizes(spec["name"], spec["train_split"], spec["eval_split"], spec["dev_fraction"])
        parts = ReadInstruction.from_spec(spec["train_split"]).to_absolute(sizes) if sizes else None
    except (BenchError, ValueError, KeyError, AssertionError):
        return None
    return sum(part.to - part.from_ for part in parts) if parts else None


@functools.lru_cache(maxsize=32)
def _split_sizes(name: str, train_split: str, eval_split: str, dev_fraction: float) -> dict[str, int] | None:
    return registry.tasks.get(name)(train_split, eval_split, dev_fraction).split_sizes()


# ---- free disk ---------------------------------------------------------------------------------------------------
def check_disk(matrix: Matrix, cells: list[Cell], folder: Path, done: dict[str, dict], weights: dict) -> None:
    """At least :data:`MIN_FREE_BYTES` free where the output folder goes, plus one model's weights per cell that
    will save its model.

    Raises:
        BenchError: not enough free space; both numbers are named.
    """
    saving = [
        c for c in cells
        if (matrix.save_models or (matrix.distill and c.method == "dense"))
        and ((done.get(c.id) or {}).get("status") != records.FINISHED
             or not ResultsFolder(matrix.output).model(c.id).is_dir())
    ]  # fmt: skip
    need = MIN_FREE_BYTES
    if saving:
        model = saving[0].model
        size = weights.get(model) or estimated_weights(model)
        need += len(saving) * size
    try:
        free = shutil.disk_usage(folder).free
    except OSError as err:
        raise BenchError(f"cannot check the free disk space of {folder}: {err.strerror or err}") from err
    if free < need:
        each = mib((need - MIN_FREE_BYTES) // max(1, len(saving)))
        saved = f" plus {len(saving)} saved model(s) of {each} MiB" if saving else ""
        raise BenchError(
            f"not enough free disk space for output folder {matrix.output}: {mib(free)} MiB free on {folder}, "
            f"need {mib(need)} MiB ({mib(MIN_FREE_BYTES)} MiB for records and databases{saved}); free some space or "
            "choose an --output on another disk"
        )


def estimated_weights(model: str) -> int:
    """fp32 bytes of the model's parameters, counted on the meta device (no memory, no download)."""
    import torch
    from transformers import AutoConfig, AutoModel

    with torch.device("meta"):
        net = AutoModel.from_config(AutoConfig.from_pretrained(model))
    return 4 * sum(p.numel() for p in net.parameters())


def mib(size: int) -> int:
    return int(size) // 2**20
