"""The settings and the baseline file of the regression gate (``bench regress``).

:data:`SETTINGS` is everything that decides the gate's numbers (the tiny random BERT, the tasks, splits, budget);
the baseline file (``results/baselines/regression.json``) records them with the per-metric tolerances and every
cell's values, so that a run with other settings is refused instead of compared (:func:`check_settings`).
:func:`updated_baseline` is a pure function of records and baseline data; :func:`load_baseline` and
:func:`write_baseline` read and write the file. Running the gate is :mod:`bench.run.regress_run`, comparing a run
with the file :mod:`bench.results.regress`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.results.regress import cell_key, key_method, record_values

DEFAULT_BASELINE = Path("results/baselines/regression.json")

# Everything that decides the numbers; recorded in the baseline file and checked against it before a run.
SETTINGS: dict[str, Any] = {
    "tokenizer": "sentence-transformers/all-MiniLM-L6-v2",
    "init_seed": 0,  # torch.manual_seed before the random tiny encoder is built
    "model_config": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 256,
        "max_position_embeddings": 128,
    },
    "tasks": ["sst2", "squad"],
    "sparsities": [0.5, 0.9],
    "seed": 0,
    # One intra-op thread: on a busy 2-core CI machine two threads run 3-6x slower (they wait on each other), and
    # the numbers no longer depend on the machine's core count.
    "torch_threads": 1,
    "preset": "quick",
    # A random tiny encoder needs a large learning rate and a few epochs to learn anything in so few steps.
    "budget": {"epochs": 3, "batch_size": 16, "learning_rate": 3e-3, "max_length": 128, "doc_stride": 32},
    "splits": {
        "sst2": {"train_split": "train[:800]", "eval_split": "validation"},
        "squad": {"train_split": "train[:200]", "eval_split": "validation[:100]"},
    },
}

# Absolute tolerances of a new baseline file (the file's own tolerances win; edit them there): these two for every
# cell, and each task's metrics from the task (Task.regression_tolerances, see default_tolerances).
RUN_TOLERANCES: dict[str, float] = {"train_loss": 0.01, "encoder_sparsity": 0.002}


def default_tolerances(tasks: list[str]) -> dict[str, float]:
    """``{metric: absolute tolerance}`` of a new baseline file for cells of ``tasks``: :data:`RUN_TOLERANCES` and
    each task's metrics as the task declares them (``Task.regression_tolerances``, else
    ``bench.core.task.DEFAULT_REGRESSION_TOLERANCE``); a metric two tasks share gets the stricter one."""
    from bench.core import registry
    from bench.core.task import DEFAULT_REGRESSION_TOLERANCE

    tolerances = dict(RUN_TOLERANCES)
    for name in tasks:
        task = registry.tasks.get(name)
        for metric in task.metrics:
            value = float(task.regression_tolerances.get(metric, DEFAULT_REGRESSION_TOLERANCE))
            tolerances[metric] = min(value, tolerances.get(metric, value))
    return tolerances
TOLERANCES_COMMENT = (
    "Absolute tolerances (accuracy, f1, exact_match in points of %; encoder_sparsity a fraction; train_loss the "
    "Trainer's average training loss, regularizers included). Measured on the reference machine (2 cores, torch "
    "2.13.0 CPU, AVX-512): two runs are bit-identical. The same gate with the kernels forced to AVX2 "
    "(ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2, standing in for another CPU) "
    "moved train_loss by at most 0.0024, sst2 accuracy by at most 1.72 points (15 of 872 examples, movement at "
    "0.5: near-tied scores pick other weights), squad f1/exact_match and encoder sparsity not at all. Math "
    "changed on purpose moved train_loss by 0.013-0.24 (movement's score sign flipped) and 0.04-0.07 "
    "(magnitude ranking W instead of |W|). Hence train_loss 0.01 (4x the cross-CPU drift; the main detector), "
    "accuracy 2.5 points (about 1.5x the drift), f1 and exact_match 1.0 point (one of the 100 squad examples), "
    "encoder_sparsity 0.002 (about 200 of the 98,304 prunable weights: a method that misses its target)."
)


def current_settings() -> dict[str, Any]:
    """A copy of :data:`SETTINGS`, the settings this code runs with."""
    return copy.deepcopy(SETTINGS)


def load_baseline(path: Path) -> dict[str, Any] | None:
    """The baseline file's data, or None when there is no file.

    Raises:
        BenchError: the file is not JSON or lacks ``settings``, ``tolerances`` or ``cells``.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BenchError(f"baseline {path} cannot be read as JSON: {err}") from err
    missing = [k for k in ("settings", "tolerances", "cells") if not isinstance(data, dict) or k not in data]
    if missing:
        raise BenchError(f"baseline {path} lacks {', '.join(missing)}; regenerate it with --update-baseline")
    return data


def write_baseline(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON with sorted cells (stable diffs), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def check_settings(baseline: dict[str, Any], settings: dict[str, Any], path: Path) -> None:
    """Raise :class:`BenchError` naming the differences when ``baseline`` was made with other settings."""
    differences = diff_settings(baseline["settings"], settings)
    if differences:
        raise BenchError(
            f"baseline {path} was made with other settings ({'; '.join(differences)}); "
            "regenerate it for every method with bench regress --update-baseline"
        )


def diff_settings(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Readable ``key: old -> new`` lines for every leaf that differs between two settings trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += diff_settings(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def updated_baseline(
    baseline: dict[str, Any] | None, records: list[dict[str, Any]], methods: list[str], settings: dict[str, Any]
) -> dict[str, Any]:
    """The baseline data after a run of ``methods``: their cells replaced by the (finished) ``records``, other
    methods' cells and the file's tolerances kept (defaults for metrics without one). Pure."""
    from bench.config.cell import package_versions

    old = baseline or {}
    cells = {k: v for k, v in old.get("cells", {}).items() if key_method(k) not in methods}
    cells.update({cell_key(r): record_values(r) for r in records})
    return {
        "description": "Baseline of `bench regress` (the CI regression gate on a tiny random BERT). Regenerate "
        "it after an intended change with `bench regress --update-baseline`.",
        "settings": settings,
        "versions": {**old.get("versions", {}), **package_versions()},
        "tolerances": {**default_tolerances(settings["tasks"]), **old.get("tolerances", {})},
        "tolerances_comment": old.get("tolerances_comment", TOLERANCES_COMMENT),
        "cells": dict(sorted(cells.items())),
    }
