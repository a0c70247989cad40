"""What running a matrix will take, checked by ``bench run`` before anything is written (:mod:`bench.run.preflight`).

- **free disk** (:func:`check_disk`, a refusal): at least :data:`MIN_FREE_BYTES` on the output folder's file system,
  plus the size of the model's weights for every cell that will save its model (``--save-models``, and the dense
  teachers of ``--distill``);
- **pruning schedules too short for their method** (:func:`schedule_warnings`, a warning only): a cell whose
  pruning ramp, in optimizer steps, is shorter than its method's ``min_ramp_steps``.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from bench.config.budget import total_steps
from bench.core import registry
from bench.core.errors import BenchError
from bench.results.folder import ResultsFolder

if TYPE_CHECKING:
    from bench.config.cell import Cell
    from bench.config.matrix import Matrix
    from bench.results.cell_record import CellRecord

MIN_FREE_BYTES = 256 * 2**20  # records, the MLflow and Optuna SQLite files and their journals, leaderboards


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
        steps = total_steps(examples, cell.budget)
        schedule = method_cls(cell.sparsity, **cell.method_hparams).pruning_schedule(steps)
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
def check_disk(matrix: Matrix, cells: list[Cell], folder: Path, done: dict[str, CellRecord],
               weights: dict[str, int | None]) -> None:  # fmt: skip
    """At least :data:`MIN_FREE_BYTES` free where the output folder goes, plus one model's weights per cell that
    will save its model (``--save-models``, and with ``--distill`` the reference method's cells, the teachers) and
    has not saved it yet.

    Args:
        folder: the output folder, or its nearest existing ancestor (:func:`bench.core.paths.writable_folder`).
        done: ``{cell id: record}`` of the records already in the output folder.
        weights: bytes of each model's weight files, None when unknown (then estimated from its config).

    Raises:
        BenchError: not enough free space; both numbers are named, in MiB.
    """
    saving = [c for c in cells if saves_model(matrix, c) and not model_saved(matrix, c, done.get(c.id))]
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


def saves_model(matrix: Matrix, cell: Cell) -> bool:
    """Whether ``cell`` keeps its finalized model: ``--save-models``, or it is a ``--distill`` teacher (a cell of the
    registry's reference method, the one that prunes nothing)."""
    return matrix.save_models or (matrix.distill and registry.is_reference(cell.method))


def model_saved(matrix: Matrix, cell: Cell, record: CellRecord | None) -> bool:
    """Whether ``cell`` finished earlier and its saved model is in the output folder (it will not run again)."""
    return record is not None and record.finished and ResultsFolder(matrix.output).model(cell.id).is_dir()


def estimated_weights(model: str) -> int:
    """fp32 bytes of the model's parameters, counted on the meta device (no memory, no download)."""
    import torch
    from transformers import AutoConfig, AutoModel

    with torch.device("meta"):
        net = AutoModel.from_config(AutoConfig.from_pretrained(model))
    return 4 * sum(p.numel() for p in net.parameters())


def mib(size: int) -> int:
    """Whole MiB (2**20 bytes) in ``size`` bytes, rounded down."""
    return int(size) // 2**20
