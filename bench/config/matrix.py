"""Matrices: what ``bench run`` was asked for, validated, and expanded into cells.

Every method of a matrix gets the same budget, splits, seeds and search effort per task. Dense runs once per
task and seed at sparsity 0; with distillation it is the teacher of every pruned cell of its task and seed.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config.cell import Cell
from bench.config.presets import get_preset, schedule_hparams, task_settings
from bench.core import registry
from bench.core.errors import BenchError
from bench.core.task import Task
from bench.run.distillation import Distillation
from bench.run.search import search_spec


@dataclass
class Matrix:
    """A method × task × sparsity × seed matrix with its preset, overrides and infrastructure settings.

    ``trials`` None takes the preset's number of HP-search trials per cell (0 turns the search off);
    ``search_space`` narrows (``{low, high, log}``) or fixes (a value) any shared or method knob.

    Every field is checked by :func:`bench.config.fields.check_field` (the same checks as a config file's values).

    Raises:
        BenchError: a sparsity outside [0, 1) or not a number, duplicate sparsities/seeds/methods/tasks,
            unknown method, task or preset names, a negative trial count, any value of the wrong type or range.
    """

    methods: list[str]
    tasks: list[str]
    sparsities: list[float]
    seeds: list[int] = field(default_factory=lambda: [0])
    preset: str = "quick"
    model: str | None = None
    output: Path = Path("results/quick")
    budget: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, dict[str, str]] = field(default_factory=dict)  # {task: {"train_split": ..}} or {"*": ..}
    method_hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    tracking_uri: str | None = None
    save_models: bool = False
    measure_speed: bool = False  # time CPU inference of each finalized cell; not part of the cell id
    distill: bool = False
    distillation: dict[str, float] = field(default_factory=dict)  # Distillation fields; defaults are the paper's
    trials: int | None = None
    timeout: float | None = None  # seconds per study; not part of the cell id
    search_space: dict[str, Any] = field(default_factory=dict)
    storage: str | None = None  # SQLAlchemy URL of the Optuna studies and the cell queue
    lease_seconds: float = 120.0

    def __post_init__(self) -> None:
        from dataclasses import MISSING, fields

        from bench.config.fields import check_field

        for f in fields(self):
            value = check_field(f.name, getattr(self, f.name))
            if value is None and f.default_factory is not MISSING:
                value = f.default_factory()
            elif value is None and f.default is not MISSING:
                value = f.default
            setattr(self, f.name, value)
        check_search_ranges(get_preset(self.preset)["search"]["space"], self.search_space)

    @property
    def storage_url(self) -> str:
        """The Optuna/queue database: ``storage`` or an embedded SQLite file in the output folder."""
        from bench.results.folder import ResultsFolder

        return self.storage or ResultsFolder(self.output).storage_url


def expand(matrix: Matrix) -> list[Cell]:
    """The cells of ``matrix``, dense (at sparsity 0, once per task and seed) before the pruned ones.

    With ``matrix.distill`` every pruned cell distils from the dense cell of its model, task and seed (whose id
    enters the pruned cell's id); that dense cell is added when the matrix lacks it.

    Raises:
        BenchError: unknown preset, method hyperparameter, budget, search or distillation setting.
    """
    preset = get_preset(matrix.preset)
    model = matrix.model or preset["model"]
    settings = Distillation(**matrix.distillation).to_dict() if matrix.distill else None
    trials = preset["search"]["trials"] if matrix.trials is None else matrix.trials
    model_type = outside_architecture(model)
    cells = []
    for task_name, seed in itertools.product(matrix.tasks, matrix.seeds):
        spec = make_task(matrix, task_name).describe()
        budget = task_settings(preset, task_name, matrix.budget)[0]

        def cell(method: str, sparsity: float, distillation: dict | None = None) -> Cell:
            method_cls = registry.methods.get(method)
            given = {**schedule_hparams(preset, method_cls.defaults), **matrix.method_hparams.get(method, {})}
            hparams = method_cls(sparsity, **given).hparams
            search = search_spec(trials, preset["search"]["space"], matrix.search_space, method_cls)
            plugins = registry.plugin_origins(method, task_name, model_type) or None  # noqa: B023
            return Cell(model, method, spec, float(sparsity), seed, budget, hparams, distillation, search=search,  # noqa: B023
                        plugins=plugins)  # fmt: skip

        teacher = cell("dense", 0.0)
        if settings is not None and "dense" not in matrix.methods:
            cells.append(teacher)
        for method_name in matrix.methods:
            method_cls = registry.methods.get(method_name)
            distillation = {**settings, "teacher": teacher.id} if settings and method_cls.prunes else None
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


def check_search_ranges(shared: dict[str, Any], narrowing: dict[str, Any]) -> None:
    """A narrowed shared knob (a partial ``{low, high}`` merged with the preset's range) still has low <= high.

    Raises:
        BenchError: the merged range is empty, or a log range reaches 0.
    """
    for name, spec in narrowing.items():
        if name in shared and isinstance(spec, dict):
            merged = {**shared[name], **spec}
            if merged["low"] > merged["high"]:
                raise BenchError(
                    f"search_space.{name}: low {merged['low']!r} exceeds high {merged['high']!r} "
                    f"(the preset's range is {shared[name]['low']!r} to {shared[name]['high']!r})"
                )
            if merged.get("log") and merged["low"] <= 0:
                raise BenchError(f"search_space.{name}: a log range needs low > 0, got {merged['low']!r}")


def matrix_id(cells: list[Cell]) -> str:
    """sha256 of the sorted cell ids: the same cells make the same matrix, in any order."""
    return hashlib.sha256("\n".join(sorted(c.id for c in cells)).encode()).hexdigest()


def make_task(matrix: Matrix, task_name: str) -> Task:
    preset = get_preset(matrix.preset)
    overrides = {**matrix.splits.get("*", {}), **matrix.splits.get(task_name, {})}
    _, train_split, eval_split = task_settings(preset, task_name, overrides)
    return registry.tasks.get(task_name)(train_split=train_split, eval_split=eval_split)


__all__ = ["Matrix", "expand", "make_task", "matrix_id"]
