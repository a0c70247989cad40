"""Training a cell through the transformers Trainer with a pruning method's hooks attached.

The method touches training in three places, and only there: its optimizer parameter groups
(:meth:`PruningTrainer.create_optimizer`), its regularization loss (:meth:`PruningTrainer.compute_loss`) and its
after-step hook (:class:`PruningCallback`). Nothing reaches the model's forward. The Trainer's arguments for a
cell's budget come from :func:`bench.config.budget.training_arguments`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from bench.core.method import PruningMethod
from bench.run import stop
from bench.run.distillation import Distillation, distillation_loss, teacher_forward


class PruningCallback(TrainerCallback):
    """Calls ``method.step(t, T)`` once before training (t=0) and after every optimizer step."""

    def __init__(self, method: PruningMethod):
        self.method = method

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self.method.step(0, state.max_steps, _weights_lr(optimizer))

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        stop.check()  # a SIGTERM whose SystemExit was swallowed still stops the run here
        self.method.step(state.global_step, state.max_steps, _weights_lr(optimizer))


class StepProgress(TrainerCallback):
    """Reports the optimizer step through a :class:`bench.run.progress.StepClock` (every 10% of the steps or minute)."""

    def __init__(self, clock):
        self.clock = clock

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock.start(state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        self.clock.step(state.global_step)


def _weights_lr(optimizer) -> float | None:
    """Learning rate of the first parameter group (the decayed weights), None when unknown."""
    return optimizer.param_groups[0]["lr"] if optimizer is not None and optimizer.param_groups else None


class DevReporter(TrainerCallback):
    """During an HP-search trial, evaluate on the dev split at a few steps and report the primary metric.

    Args:
        evaluate: returns the primary dev metric of the model as it is now (masks in their training state).
        report: ``report(step, value)``; it raises ``optuna.TrialPruned`` to stop the trial.
        steps: ``steps(total_steps)`` → the optimizer steps after which to evaluate.
    """

    def __init__(self, evaluate, report, steps):
        self.evaluate, self.report, self.steps_of = evaluate, report, steps
        self.steps: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        self.steps = self.steps_of(state.max_steps)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            value = self.evaluate()
            if model is not None:
                model.train()
            self.report(state.global_step, value)


class DivergenceError(RuntimeError):
    """The training loss (or, after finalizing, a weight) became NaN or infinite.

    Attributes:
        step: the optimizer step (1-based) whose loss was not finite; for a non-finite finalized weight, the
            number of steps trained.
    """

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class PruningTrainer(Trainer):
    """A Trainer whose optimizer and loss include the pruning method's parameter groups and regularizer.

    Args:
        method: the prepared pruning method.
        teacher: a fine-tuned model with the same head; when given, the task loss becomes the distillation loss
            of :func:`bench.run.distillation.distillation_loss` with ``distillation`` settings.
    """

    def __init__(
        self,
        *args: Any,
        method: PruningMethod,
        teacher: torch.nn.Module | None = None,
        distillation: Distillation | None = None,
        **kwargs: Any,
    ):
        self.method = method
        self.teacher = teacher
        self.distillation = distillation or Distillation()
        super().__init__(*args, **kwargs)
        self.add_callback(PruningCallback(method))
        if teacher is not None:
            self.teacher = teacher.to(self.args.device).eval()

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        extra = self.method.param_groups()
        if extra and not any(g.get("_pruning") for g in optimizer.param_groups):
            own = {id(p) for group in extra for p in group["params"]}
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if id(p) not in own]
            for group in extra:
                optimizer.add_param_group({**group, "_pruning": True})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training and self.teacher is not None:
            loss = distillation_loss(outputs, teacher_forward(self.teacher, inputs), loss, self.distillation)
        if model.training:
            regularization = self.method.regularization_loss()
            if regularization is not None:
                loss = loss + regularization
            if not torch.isfinite(loss.detach()):
                step = self.state.global_step + 1
                raise DivergenceError(f"training loss is {loss.item()} at step {step}", step)
        return (loss, outputs) if return_outputs else loss


def freeze_pretrained(model: torch.nn.Module) -> None:
    """Freeze every pretrained parameter; the task head (outside ``model.base_model``) stays trainable.

    Parametrization ``original`` tensors inside the encoder are frozen too; scores stay trainable because they
    belong to the mask modules, which the method hands to the optimizer itself.
    """
    base = model.base_model
    scores = {id(p) for name, p in base.named_parameters() if ".parametrizations." in name and "original" not in name}
    for param in base.parameters():
        if id(param) not in scores:
            param.requires_grad_(False)


def check_finite(model: torch.nn.Module, steps: int) -> None:
    """Raise :class:`DivergenceError` when any parameter of ``model`` holds a NaN or an infinity.

    Run on the finalized model before evaluating, so that no metric is ever recorded from a diverged model
    (a method's after-step hook can break the weights after the last loss was computed).
    """
    for name, param in model.named_parameters():
        if not torch.isfinite(param.detach()).all():
            raise DivergenceError(f"parameter {name} is not finite after {steps} steps", steps)
