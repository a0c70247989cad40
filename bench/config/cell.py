"""Cells: one (model, method, task, sparsity, seed, budget, hyperparameters, versions) point of a matrix.

A cell's id is the sha256 of its canonical JSON (sorted keys, no whitespace), never a timestamp, so the
same cell always gets the same id, in any process, and a rerun can skip what is finished. A cell that uses a plugin
from a distribution other than prune-bench also carries that distribution's name and version (``plugins``), so a
new version of the plugin makes new cells; cells of built-in plugins have no ``plugins`` and keep their ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

VERSIONED_PACKAGES = ("prune-bench", "torch", "transformers", "datasets", "accelerate")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages whose change can change a result."""
    found = {}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


@dataclass(frozen=True)
class Budget:
    """Training budget, identical for every method of a task within a matrix.

    Attributes:
        epochs: passes over the train split.
        batch_size: train examples (features, for QA) per optimizer step.
        learning_rate: peak learning rate of the weights (AdamW, linear decay).
        warmup_ratio: fraction of steps of linear learning-rate warm-up.
        weight_decay: AdamW weight decay of the weights (not of biases, LayerNorm or scores).
        max_length: tokens per feature; padding is dynamic.
        doc_stride: window overlap for long QA contexts, in tokens.
        eval_batch_size: examples per evaluation batch.
    """

    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_length: int = 128
    doc_stride: int = 128
    eval_batch_size: int = 64


@dataclass(frozen=True)
class Cell:
    """One point of a matrix. Every field enters :attr:`id`.

    ``plugins``: ``{role: {"name", "distribution", "version"}}`` for the method, task and architecture plugins of the
    cell that come from outside prune-bench (:func:`bench.core.registry.plugin_origins`); None (left out of the id) when
    every plugin is built in.
    """

    model: str
    method: str
    task: dict[str, Any]
    sparsity: float
    seed: int
    budget: Budget
    method_hparams: dict[str, Any] = field(default_factory=dict)
    distillation: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=package_versions)
    search: dict[str, Any] | None = None
    plugins: dict[str, dict[str, str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """All fields; ``search`` only when the cell has an HP search and ``plugins`` only when it uses an outside
        plugin (so cells without them keep their ids)."""
        data = asdict(self)
        if data["search"] is None:
            del data["search"]
        if not data["plugins"]:
            del data["plugins"]
        return data

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    @property
    def id(self) -> str:
        """sha256 hex digest of :meth:`canonical_json` (64 characters)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @property
    def task_name(self) -> str:
        return self.task["name"]

    def label(self) -> str:
        """Short human label: ``method/task@sparsity#seed``."""
        return f"{self.method}/{self.task_name}@{self.sparsity:g}#{self.seed}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        return cls(**{**data, "budget": Budget(**data["budget"])})
