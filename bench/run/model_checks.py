"""The model and data checks of ``bench run`` (:func:`bench.run.preflight.check`): before anything is written.

- **model**: it resolves (a local folder with ``config.json`` and weights, or a Hub id, from the cache when
  ``HF_HUB_OFFLINE`` is set), has a tokenizer, and its architecture is in the prunable table
  (:func:`check_model`); ``max_length`` fits its position embeddings (:func:`check_length`);
- **splits**: every task's train and eval split exists and a slice does not reach past the split's end
  (:func:`check_splits`, :func:`bench.core.hub.split_problem`), read from the dataset's split info without loading it.

Each check raises :class:`bench.core.errors.BenchError` naming the bad value and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core import registry
from bench.core.errors import BenchError
from bench.core.hub import first_line, hub_hint, split_problem, with_hub_hint

if TYPE_CHECKING:
    from bench.config.cell import Cell
    from bench.core.task import Task

WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


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
