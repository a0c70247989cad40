"""One training run of a cell: build, prepare, train, finalize, measure, evaluate.

Used for the final run of every cell (full train split → eval split) and for every HP-search trial (train minus
the tuning dev split → dev split). Tokenizers and features are cached per process, and ``Dataset.map`` caches
them on disk by fingerprint, so a second cell on the same task does not tokenize again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.config.cell import Cell
from bench.config.resolve import load_tokenizer, task_by_key
from bench.core import registry
from bench.core.task import Featurization, Task
from bench.run.distillation import Distillation

FINAL, TUNING = "final", "tuning"


@dataclass(frozen=True)
class Run:
    """What to train on and where to put things.

    Attributes:
        data: FINAL (train split → eval split) or TUNING (train minus dev → dev, for trials).
        workdir: scratch folder for the Trainer.
        save_to: where to save the finalized model and tokenizer, or None.
        teacher_dir: the saved dense model to distil from, for cells with ``distillation``.
        report: for trials, ``report(step, dev_value)`` at a few steps during training (may raise to prune).
        report_steps: the optimizer steps at which ``report`` is called, from the run's total steps.
        masks_to: where to save the finalized model's masks (:mod:`bench.results.saved_masks`), or None.
        predictions_to: where to save the per-example eval results (:mod:`bench.results.predictions`), or None.
        measure_speed: time CPU inference of the finalized model against the dense one (:mod:`bench.deploy.inference`).
        progress: called with ``"step s/S (p%)"`` every 10% of the optimizer steps or minute, and once training
            is over (:mod:`bench.run.progress`), or None.
    """

    data: str
    workdir: Path
    save_to: Path | None = None
    teacher_dir: Path | None = None
    report: Callable[[int, float], None] | None = None
    report_steps: Callable[[int], set[int]] | None = None
    masks_to: Path | None = None
    measure_speed: bool = False
    predictions_to: Path | None = None
    progress: Callable[[str], None] | None = None


@lru_cache(maxsize=16)
def _examples(task_key: str, data: str, seed: int):
    """Raw (train, eval) examples: FINAL → (train, eval splits); TUNING → (train minus dev, dev), carved with
    ``seed``."""
    task = task_by_key(task_key)
    if data == FINAL:
        return task.train_examples(), task.eval_examples()
    return task.tuning_splits(seed)


@lru_cache(maxsize=16)
def _train_features(task_key: str, data: str, seed: int, model_id: str, feats: Featurization):
    train = _examples(task_key, data, seed)[0]
    return task_by_key(task_key).featurize(train, load_tokenizer(model_id), feats, train=True)


def train_and_evaluate(cell: Cell, run: Run) -> dict[str, Any]:
    """Train ``cell`` as ``run`` says, finalize, measure sparsity, evaluate. Returns the record's result fields.

    Raises:
        whatever the method, task or Trainer raises; :class:`bench.run.training.DivergenceError` on a NaN loss;
        RuntimeError when a distilled cell's teacher has no saved model.
    """
    from transformers import DataCollatorWithPadding, set_seed

    from bench.config.budget import training_arguments
    from bench.core.sparsity import measure_sparsity
    from bench.results.saved_masks import save_masks
    from bench.run.training import DevReporter, PruningTrainer, check_finite, freeze_pretrained

    set_seed(cell.seed)
    task_key = json.dumps(cell.task, sort_keys=True)
    task = task_by_key(task_key)
    feats = Featurization(cell.budget.max_length, cell.budget.doc_stride)
    tokenizer = load_tokenizer(cell.model)
    train_features = _train_features(task_key, run.data, cell.seed, cell.model, feats)
    eval_examples = _examples(task_key, run.data, cell.seed)[1]

    model = task.build_model(cell.model)
    method = registry.methods.get(cell.method)(cell.sparsity, seed=cell.seed, **cell.method_hparams)
    method.prepare(model, task=task, tokenizer=tokenizer)
    if not method.trains_weights:
        freeze_pretrained(model)
    trainer = PruningTrainer(
        model=model,
        args=training_arguments(cell.budget, run.workdir, cell.seed),
        train_dataset=train_features,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        method=method,
        teacher=load_teacher(task, cell, run.teacher_dir),
        distillation=Distillation(**{k: v for k, v in (cell.distillation or {}).items() if k != "teacher"}),
    )
    if run.report is not None:
        evaluate = lambda: task.evaluate(trainer, eval_examples, tokenizer, feats)[task.primary_metric]  # noqa: E731
        trainer.add_callback(DevReporter(evaluate, run.report, run.report_steps))
    if run.progress is not None:
        from transformers import PrinterCallback

        from bench.run.progress import StepClock
        from bench.run.training import StepProgress

        trainer.add_callback(StepProgress(StepClock(run.progress)))
        trainer.remove_callback(PrinterCallback)  # without a terminal it prints every loss log (~50 per run); the
        # progress lines say where the run is, and the losses are in the record and MLflow
    started = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - started
    if run.progress is not None:
        run.progress(f"trained in {train_seconds:.0f}s; finalizing and evaluating")
    schedule = method.pruning_schedule(train_output.global_step)
    method_info = method.finalize(model)
    check_finite(model, train_output.global_step)
    sparsity = measure_sparsity(model)
    evaluation = task.evaluate_per_example(trainer, eval_examples, tokenizer, feats)
    judged = judgement(cell, run, task, evaluation, method, method_info, schedule, task_key)
    if run.masks_to is not None:
        save_masks(model, run.masks_to)
    if run.save_to is not None:
        model.save_pretrained(run.save_to)
        tokenizer.save_pretrained(run.save_to)
    deployment = deployment_report(model, task, cell, run)
    return {
        **deployment,
        **judged,
        "metrics": evaluation.metrics,
        "primary_metric": task.primary_metric,
        "greater_is_better": task.greater_is_better,
        "sparsity": sparsity.to_dict(),
        "method_info": method_info,
        "train_seconds": train_seconds,
        "train_examples_per_s": train_output.metrics.get("train_samples_per_second"),
        "train_steps": train_output.global_step,
        "train_loss": train_output.training_loss,
        "train_features": len(train_features),
        "history": [h for h in trainer.state.log_history if "loss" in h],
    }


def judgement(cell: Cell, run: Run, task: Task, evaluation, method, method_info, schedule, task_key: str):
    """For final runs: the metric intervals, the trivial baseline, the verdicts (:mod:`bench.results.verdicts`) and the
    pruning schedule in steps, as record fields; the per-example results go to ``run.predictions_to``."""
    if run.data != FINAL:
        return {}
    from bench.results import verdicts
    from bench.results.predictions import save_predictions

    baseline = _baseline(task_key)
    summary = verdicts.baseline_summary(baseline, seed=0)  # one interval per task and split, whatever the cell seed
    if run.predictions_to is not None:
        save_predictions(run.predictions_to, evaluation, baseline)
    ramp = schedule.ramp_steps if schedule is not None else None
    judged = verdicts.judge(task.primary_metric, task.greater_is_better, evaluation, summary, cell.sparsity,
                            method_info, ramp, method.min_ramp_steps)  # fmt: skip
    return {
        "metric_intervals": verdicts.evaluation_intervals(evaluation, cell.seed),
        "baseline": summary,
        "verdicts": judged,
        "schedule": schedule.to_dict() if schedule is not None else None,
    }


@lru_cache(maxsize=16)
def _baseline(task_key: str):
    return task_by_key(task_key).trivial_baseline(_examples(task_key, FINAL, 0)[1])


def deployment_report(model, task: Task, cell: Cell, run: Run) -> dict[str, Any]:
    """For final runs: ``export`` (file sizes and compaction, :func:`bench.deploy.export.size_report`) and, with
    ``run.measure_speed``, ``speed`` (:func:`bench.deploy.inference.speed_report` against the dense pretrained
    model)."""
    if run.data != FINAL:
        return {}
    from bench.deploy.export import size_report

    out: dict[str, Any] = {"export": size_report(model)}
    if run.measure_speed:
        from bench.deploy.inference import speed_report

        out["speed"] = speed_report(model, task.build_model(cell.model))
    return out


def load_teacher(task: Task, cell: Cell, teacher_dir: Path | None):
    if not cell.distillation:
        return None
    if teacher_dir is None or not Path(teacher_dir).is_dir():
        teacher = cell.distillation["teacher"][:12]
        raise RuntimeError(f"teacher {teacher} has no saved model at {teacher_dir}; did its dense cell fail?")
    return task.build_model(str(teacher_dir))
