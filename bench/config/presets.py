"""Presets: the model and per-task budgets and splits of a matrix, and optionally a pruning schedule.

``quick`` fits a 2-core CPU (the six-cell dense/magnitude/movement × mnli/squad matrix in under 20 minutes);
``proxy`` is the shortest budget at which score-based methods are given a paper-like schedule (SST-2 full train,
about 8.4k optimizer steps, a 1.5k-step pruning warm-up and a 30% cool-down); ``paper`` is the setup of Sanh, Wolf &
Rush (2020), "Movement Pruning", section 5 and appendix A.

A preset's ``schedule`` (``warmup_steps``, ``cooldown_steps``, ``warmup_frac``, ``cooldown_frac``) replaces the
method defaults of those names for every method that has them, so that every method of a matrix prunes on the same
schedule; a matrix's own ``method_hparams`` still win.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.config.cell import Budget
from bench.core.errors import BenchError
from bench.core.registry import unknown_name_message

QUICK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# The shared knobs' search ranges for MiniLM-sized models (a preset's copy must not be edited in place).
SMALL_MODEL_SPACE = {
    "learning_rate": {"low": 3e-5, "high": 3e-4, "log": True},
    "warmup_ratio": {"low": 0.0, "high": 0.2},
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "MiniLM-L6 on slices of train/eval, 1 epoch: minutes per cell on a 2-core CPU",
        # Search is off by default so that the six-cell main job fits 20 minutes on 2 cores; --trials N turns it
        # on (each trial costs about one cell).
        "search": {"trials": 0, "space": SMALL_MODEL_SPACE},
        "model": QUICK_MODEL,
        "budget": Budget(epochs=1, batch_size=32, learning_rate=2e-4, warmup_ratio=0.1, max_length=128),
        # Each task's slices and budget changes under a preset live with the task (Task.presets).
    },
    "proxy": {
        "description": "SST-2 proxy of the paper's schedule: full train, length 64, batch 16, 2 epochs (~8.4k steps)",
        "search": {"trials": 0, "space": SMALL_MODEL_SPACE},
        "model": QUICK_MODEL,
        "budget": Budget(epochs=2, batch_size=16, learning_rate=1e-4, warmup_ratio=0.06, max_length=64),
        # Pruning warm-up 1.5k steps, cubic ramp until 70% of the run, cool-down 30% (2.5k steps at 2 epochs).
        "schedule": {"warmup_steps": 1500, "cooldown_frac": 0.3},
    },
    "paper": {
        "description": "Movement Pruning (Sanh et al. 2020) setup: BERT-base, full splits, 6/10 epochs",
        "search": {
            "trials": 20,
            "space": {
                "learning_rate": {"low": 1e-5, "high": 1e-4, "log": True},
                "warmup_ratio": {"low": 0.0, "high": 0.2},
            },
        },  # fmt: skip
        "model": "bert-base-uncased",
        "budget": Budget(epochs=6, batch_size=32, learning_rate=3e-5, warmup_ratio=0.1, max_length=128),
    },
}


def get_preset(name: str) -> dict[str, Any]:
    """The preset called ``name``.

    Raises:
        BenchError: unknown preset, with "did you mean" and the valid names.
    """
    if name not in PRESETS:
        raise BenchError(unknown_name_message("preset", name, sorted(PRESETS)))
    return {**PRESETS[name], "name": name}


def task_settings(preset: dict[str, Any], task: str, overrides: dict[str, Any] | None = None):
    """(budget, train_split or None, eval_split or None) of ``task`` under ``preset`` plus ``overrides``.

    The task's own settings under the preset come from its class (:attr:`bench.core.task.Task.presets`, looked up by
    the preset's ``name``); ``overrides`` may hold Budget fields and ``train_split``/``eval_split``; they win over
    the preset.

    Raises:
        BenchError: an override names no Budget field; an unknown task.
    """
    from bench.core import registry

    per_task = registry.tasks.get(task).presets.get(preset.get("name", ""), {})
    overrides = dict(overrides or {})
    splits = {k: overrides.pop(k, None) or per_task.get(k) for k in ("train_split", "eval_split")}
    budget_fields = {**per_task.get("budget", {}), **{k: v for k, v in overrides.items() if v is not None}}
    valid = set(Budget.__dataclass_fields__)
    unknown = sorted(set(budget_fields) - valid)
    if unknown:
        raise BenchError(f"unknown budget setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    base = preset["budget"]
    budget_fields = {k: same_kind(v, getattr(base, k)) for k, v in budget_fields.items()}
    return replace(base, **budget_fields), splits["train_split"], splits["eval_split"]


def schedule_hparams(preset: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The preset's pruning-schedule settings that a method with hyperparameter ``defaults`` takes."""
    return {k: v for k, v in preset.get("schedule", {}).items() if k in defaults}


def same_kind(value: Any, default: Any) -> Any:
    """``value`` as the type of the preset's ``default`` where that loses nothing (``--epochs 1`` gives 1.0, a
    config's ``epochs: 1`` gives 1: both become the preset's int 1), so equal budgets give equal cell ids."""
    if isinstance(value, bool) or isinstance(default, bool):
        return value
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    return value
