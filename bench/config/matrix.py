"""Matrices: what ``bench run`` was asked for, validated, and expanded into cells.

Every method of a matrix gets the same budget, splits, seeds and search effort per task. Dense runs once per
task and seed at sparsity 0; with distillation it is the teacher of every pruned cell of its task and seed.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

from bench.config.cell import Cell
from bench.config.model import MatrixConfig
from bench.config.presets import get_preset, schedule_hparams, task_settings
from bench.config.search import search_spec
from bench.core import registry
from bench.core.paths import QUEUE_DB  # the default --storage: an SQLite file in the output folder
from bench.core.task import Task


class Matrix(MatrixConfig):
    """A validated :class:`bench.config.model.MatrixConfig`, built from keyword arguments (the Python API) or by
    ``MatrixConfig.build`` (flags and a config file), and what the runner asks of it.

    Raises:
        BenchError: any bad value, in one line (see :class:`bench.config.model.MatrixConfig`).
    """

    @property
    def storage_url(self) -> str:
        """The Optuna/queue database: ``storage`` or an embedded SQLite file in the output folder,
        ``sqlite:///<absolute OUTPUT>/bench.db``."""
        return self.storage or f"sqlite:///{(Path(self.output) / QUEUE_DB).resolve()}"


def expand(matrix: Matrix) -> list[Cell]:
    """The cells of ``matrix``, dense (at sparsity 0, once per task and seed) before the pruned ones.

    With ``matrix.distill`` every pruned cell distils from the dense cell of its model, task and seed (whose id
    enters the pruned cell's id); that dense cell is added when the matrix lacks it.

    Raises:
        BenchError: unknown preset, method hyperparameter, budget, search or distillation setting.
    """
    preset = get_preset(matrix.preset)
    model = matrix.model or preset["model"]
    settings = matrix.distillation.to_dict() if matrix.distill else None
    trials = preset["search"]["trials"] if matrix.trials is None else matrix.trials
    model_type = outside_architecture(model)
    reference = registry.reference_method() if settings is not None else None  # the teacher of --distill
    cells = []
    for task_name, seed in itertools.product(matrix.tasks, matrix.seeds):
        spec = make_task(matrix, task_name).describe()
        budget = task_settings(preset, task_name, matrix.budget.given())[0]

        def cell(method: str, sparsity: float, distillation: dict | None = None) -> Cell:
            method_cls = registry.methods.get(method)
            given = {**schedule_hparams(preset, method_cls.defaults), **matrix.method_hparams.get(method, {})}
            hparams = method_cls(sparsity, **given).hparams
            search = search_spec(trials, preset["search"]["space"], matrix.search_space, method_cls)
            plugins = registry.plugin_origins(method, task_name, model_type) or None  # noqa: B023
            return Cell(model, method, spec, float(sparsity), seed, budget, hparams, distillation, search=search,  # noqa: B023
                        plugins=plugins)  # fmt: skip

        teacher = cell(reference, 0.0) if reference is not None else None
        if teacher is not None and reference not in matrix.methods:
            cells.append(teacher)
        for method_name in matrix.methods:
            method_cls = registry.methods.get(method_name)
            distillation = {**settings, "teacher": teacher.id} if teacher is not None and method_cls.prunes else None
            for sparsity in matrix.sparsities if method_cls.prunes else [0.0]:
                cells.append(cell(method_name, sparsity, distillation))
    return sorted(cells, key=lambda c: registry.methods.get(c.method).prunes)


def outside_architecture(model: str) -> str | None:
    """The ``model_type`` of ``model`` when an architecture table from outside prune-bench is installed (its version
    then enters the ids of the model's cells), else None without reading the model's config.

    A config that cannot be read gives None here; the preflight checks refuse such a model with the reason.
    """
    if all(entry.builtin for entry in registry.architectures.entries.values()):
        return None
    from transformers import AutoConfig

    try:
        return getattr(AutoConfig.from_pretrained(model), "model_type", None)
    except Exception:  # noqa: BLE001 - the preflight checks name the problem
        return None


def matrix_id(cells: list[Cell]) -> str:
    """sha256 of the sorted cell ids: the same cells make the same matrix, in any order."""
    return hashlib.sha256("\n".join(sorted(c.id for c in cells)).encode()).hexdigest()


def make_task(matrix: Matrix, task_name: str) -> Task:
    preset = get_preset(matrix.preset)
    overrides = {**_given(matrix.splits.get("*")), **_given(matrix.splits.get(task_name))}
    _, train_split, eval_split = task_settings(preset, task_name, overrides)
    return registry.tasks.get(task_name)(train_split=train_split, eval_split=eval_split)


def _given(splits: Any) -> dict[str, str]:
    return splits.given() if splits is not None else {}


__all__ = ["Matrix", "expand", "make_task", "matrix_id"]
