"""A :class:`bench.config.cell.Budget` as transformers ``TrainingArguments``, and the optimizer steps it gives.

Shared by the training run (:mod:`bench.run.execute`), the export check (:mod:`bench.deploy.export`, which must not
import the run wing) and the schedule warnings of ``bench run`` (:mod:`bench.run.cost_checks`). torch and
transformers are imported inside :func:`training_arguments`, so reading a budget's step count does not load them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config.cell import Budget

# Loss points the Trainer logs per run (the record's history and MLflow's loss curve): logging every 1/50 of the
# steps gives 50 points in a 55,000-step run and one per step in a 7-step run (every 10 steps logged none there).
LOSS_CURVE_POINTS = 50

if TYPE_CHECKING:
    from transformers import TrainingArguments


def training_arguments(budget: Budget, output_dir: Path, seed: int, **extra: Any) -> TrainingArguments:
    """TrainingArguments for a cell: seeded data order, deterministic algorithms (``full_determinism``), no
    checkpoints, no integrations, CPU when no GPU.

    Args:
        budget: epochs, batch sizes (examples, or QA features, per step), peak learning rate, warm-up, weight decay.
        output_dir: the Trainer's scratch folder (nothing is saved there: no checkpoints).
        seed: the cell seed, for the model's initialisation and the data order.
        extra: further ``TrainingArguments`` fields, e.g. ``eval_strategy``.
    """
    import sys

    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=budget.epochs,
        per_device_train_batch_size=budget.batch_size,
        per_device_eval_batch_size=budget.eval_batch_size,
        learning_rate=budget.learning_rate,
        warmup_steps=budget.warmup_ratio,
        weight_decay=budget.weight_decay,
        lr_scheduler_type="linear",
        seed=seed,
        data_seed=seed,
        full_determinism=True,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="steps",
        logging_steps=1 / LOSS_CURVE_POINTS,  # a fraction: about that many loss points, every step in short runs
        report_to="none",
        disable_tqdm=not sys.stderr.isatty(),  # progress bars in a terminal, not in CI logs
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        **extra,
    )


def total_steps(n_train_features: int, budget: Budget) -> int:
    """Optimizer steps of a run: ceil(ceil(features / batch) × epochs), at least 1 (the Trainer's count for
    ``num_train_epochs`` with one process and no gradient accumulation)."""
    return max(1, math.ceil(math.ceil(n_train_features / budget.batch_size) * budget.epochs))
