"""The matrix runner: expand a matrix into cells, run each cell once, record, track, rank.

A cell: build the task's model, ``method.prepare``, train through :class:`bench.training.PruningTrainer`,
``method.finalize``, measure sparsity by counting zeros, evaluate on the eval split, write the record
atomically, log to MLflow. Finished cells are skipped on rerun; a failing cell is recorded as failed and the
matrix goes on.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench import records, registry
from bench.cell import Cell
from bench.distillation import Distillation
from bench.errors import BenchError
from bench.presets import get_preset, task_settings
from bench.task import Featurization, Task


@dataclass
class Matrix:
    """What ``bench run`` was asked for. Every method gets the same budget, splits and seeds per task."""

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
    distill: bool = False
    distillation: dict[str, float] = field(default_factory=dict)  # Distillation fields; defaults are the paper's

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        for s in self.sparsities:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= s < 1.0:
                raise BenchError(f"sparsity must be a number in [0, 1), got {s!r}")
        if len(set(self.sparsities)) != len(self.sparsities):
            raise BenchError(f"duplicate sparsities in the matrix: {self.sparsities}")
        if len(set(self.seeds)) != len(self.seeds):
            raise BenchError(f"duplicate seeds in the matrix: {self.seeds}")
        self.methods = registry.methods.resolve(self.methods)
        self.tasks = registry.tasks.resolve(self.tasks)


def expand(matrix: Matrix) -> list[Cell]:
    """The cells of ``matrix``, dense (at sparsity 0, once per task and seed) before the pruned ones.

    With ``matrix.distill`` every pruned cell distils from the dense cell of its model, task and seed (whose id
    enters the pruned cell's id); that dense cell is added when the matrix lacks it.

    Raises:
        BenchError: unknown preset, method hyperparameter, budget or distillation setting.
    """
    preset = get_preset(matrix.preset)
    model = matrix.model or preset["model"]
    settings = Distillation(**matrix.distillation).to_dict() if matrix.distill else None
    cells = []
    for task_name, seed in itertools.product(matrix.tasks, matrix.seeds):
        spec = make_task(matrix, task_name).describe()
        budget = task_settings(preset, task_name, matrix.budget)[0]
        teacher = Cell(model, "dense", spec, 0.0, seed, budget, {})
        if settings is not None and "dense" not in matrix.methods:
            cells.append(teacher)
        for method_name in matrix.methods:
            method_cls = registry.methods.get(method_name)
            sparsities = matrix.sparsities if method_cls.prunes else [0.0]
            distillation = {**settings, "teacher": teacher.id} if settings and method_cls.prunes else None
            for sparsity in sparsities:
                method = method_cls(sparsity, **matrix.method_hparams.get(method_name, {}))
                hparams = method.hparams
                cells.append(Cell(model, method_name, spec, float(sparsity), seed, budget, hparams, distillation))
    return sorted(cells, key=lambda c: registry.methods.get(c.method).prunes)


def make_task(matrix: Matrix, task_name: str) -> Task:
    preset = get_preset(matrix.preset)
    overrides = {**matrix.splits.get("*", {}), **matrix.splits.get(task_name, {})}
    _, train_split, eval_split = task_settings(preset, task_name, overrides)
    return registry.tasks.get(task_name)(train_split=train_split, eval_split=eval_split)


@lru_cache(maxsize=4)
def load_tokenizer(model_id: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_id)


@lru_cache(maxsize=8)
def _train_features(task_key: str, model_id: str, feats: Featurization):
    task = task_from_cell_spec(task_key)
    return task.featurize(task.train_examples(), load_tokenizer(model_id), feats, train=True)


@lru_cache(maxsize=8)
def _eval_examples(task_key: str):
    return task_from_cell_spec(task_key).eval_examples()


def task_from_cell_spec(task_key: str) -> Task:
    import json

    spec = json.loads(task_key)
    return registry.tasks.get(spec["name"])(spec["train_split"], spec["eval_split"], spec["dev_fraction"])


def run_cell(cell: Cell, workdir: Path, save_models: Path | None = None, teacher_dir: Path | None = None) -> dict:
    """Train, finalize, measure and evaluate one cell. Returns the record's result fields.

    Args:
        cell: what to run.
        workdir: scratch folder for the Trainer.
        save_models: where to save the finalized model and tokenizer, or None.
        teacher_dir: the saved dense model to distil from (cells with ``distillation``).

    Raises:
        whatever the method, task or Trainer raises; :class:`bench.training.DivergenceError` on a NaN loss.
    """
    import json

    from transformers import DataCollatorWithPadding, set_seed

    from bench.sparsity import measure_sparsity
    from bench.training import PruningTrainer, freeze_pretrained, training_arguments

    set_seed(cell.seed)
    task_key = json.dumps(cell.task, sort_keys=True)
    task = task_from_cell_spec(task_key)
    feats = Featurization(cell.budget.max_length, cell.budget.doc_stride)
    tokenizer = load_tokenizer(cell.model)
    train_features = _train_features(task_key, cell.model, feats)

    model = task.build_model(cell.model)
    method = registry.methods.get(cell.method)(cell.sparsity, **cell.method_hparams)
    method.prepare(model, task=task, tokenizer=tokenizer)
    if not method.trains_weights:
        freeze_pretrained(model)
    distillation = cell.distillation or {}
    if cell.distillation and (teacher_dir is None or not Path(teacher_dir).is_dir()):
        raise RuntimeError(f"teacher {distillation['teacher'][:12]} has no saved model at {teacher_dir}; did it fail?")
    trainer = PruningTrainer(
        model=model,
        args=training_arguments(cell.budget, workdir, cell.seed),
        train_dataset=train_features,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        method=method,
        teacher=task.build_model(str(teacher_dir)) if cell.distillation else None,
        distillation=Distillation(**{k: v for k, v in distillation.items() if k != "teacher"}),
    )
    started = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - started
    method_info = method.finalize(model)
    sparsity = measure_sparsity(model)
    metrics = task.evaluate(trainer, _eval_examples(task_key), tokenizer, feats)
    if save_models is not None:
        model.save_pretrained(save_models)
        tokenizer.save_pretrained(save_models)
    return {
        "metrics": metrics,
        "primary_metric": task.primary_metric,
        "greater_is_better": task.greater_is_better,
        "sparsity": sparsity.to_dict(),
        "method_info": method_info,
        "train_seconds": train_seconds,
        "train_examples_per_s": train_output.metrics.get("train_samples_per_second"),
        "train_steps": train_output.global_step,
        "train_features": len(train_features),
        "history": [h for h in trainer.state.log_history if "loss" in h],
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_matrix(matrix: Matrix, log=print) -> list[dict[str, Any]]:
    """Run every cell of ``matrix`` not already finished in ``matrix.output``; returns all its records.

    Cells that raise are recorded with status ``failed`` and the traceback, and the matrix goes on.
    """
    from bench.tracking import Tracker, default_tracking_uri

    cells = expand(matrix)
    output = matrix.output
    records.cells_dir(output).mkdir(parents=True, exist_ok=True)
    tracker = Tracker(matrix.tracking_uri or default_tracking_uri(output))
    results, durations = [], []
    for index, cell in enumerate(cells, start=1):
        done = records.read_record(output, cell.id)
        if is_finished(done, matrix, cell):
            log(f"[cell {index}/{len(cells)}] {cell.label()} finished already ({cell.id[:12]}), skipped")
            results.append(done)
            continue
        log(progress_line(index, len(cells), cell, durations))
        started = time.perf_counter()
        record = run_tracked_cell(cell, matrix, tracker)
        durations.append(time.perf_counter() - started)
        results.append(record)
        log(f"[cell {index}/{len(cells)}] {cell.label()} {record['status']} in {durations[-1]:.0f}s")
    return results


def is_finished(record: dict[str, Any] | None, matrix: Matrix, cell: Cell) -> bool:
    """A finished record; a distillation teacher also needs its saved model."""
    if record is None or record.get("status") != records.FINISHED:
        return False
    return not needs_saved_model(matrix, cell) or model_dir(matrix, cell.id).is_dir()


def needs_saved_model(matrix: Matrix, cell: Cell) -> bool:
    return matrix.save_models or (matrix.distill and cell.method == "dense")


def model_dir(matrix: Matrix, cell_id: str) -> Path:
    return matrix.output / "models" / cell_id


def progress_line(index: int, total: int, cell: Cell, durations: list[float]) -> str:
    eta = ""
    if durations:
        remaining = (total - index + 1) * sum(durations) / len(durations)
        eta = f", ETA {int(remaining // 60)}m{int(remaining % 60):02d}s"
    return f"[cell {index}/{total}{eta}] {cell.label()} ({cell.id[:12]})"


def run_tracked_cell(cell: Cell, matrix: Matrix, tracker) -> dict[str, Any]:
    """Run ``cell`` inside its MLflow run and write its record (finished or failed)."""
    tags = {"method": cell.method, "task": cell.task_name, "sparsity": str(cell.sparsity), "seed": str(cell.seed)}
    run_id = tracker.start(cell.id, cell.label(), cell.to_dict(), tags)
    base = {"id": cell.id, "cell": cell.to_dict(), "git_commit": git_commit(), "mlflow_run_id": run_id}
    started = time.perf_counter()
    save = model_dir(matrix, cell.id) if needs_saved_model(matrix, cell) else None
    teacher = model_dir(matrix, cell.distillation["teacher"]) if cell.distillation else None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
            result = run_cell(cell, Path(workdir), save, teacher)
    except Exception as err:  # noqa: BLE001 - isolate the cell, record, go on
        record = {**base, "status": records.FAILED, "error": repr(err), "traceback": traceback.format_exc()}
        record["wall_seconds"] = time.perf_counter() - started
        records.write_record(matrix.output, record)
        tracker.end(run_id, "FAILED", {"error": repr(err)})
        print(record["traceback"], file=sys.stderr)
        return record
    history = result.pop("history")
    record = {**base, "status": records.FINISHED, **result, "wall_seconds": time.perf_counter() - started}
    records.write_record(matrix.output, record)
    tracker.log_metrics(run_id, tracked_metrics(record), history)
    tracker.end(run_id, "FINISHED")
    return record


def tracked_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers as flat MLflow metric names."""
    flat = {f"eval/{k}": v for k, v in record["metrics"].items()}
    flat.update({f"sparsity/{k}": v for k, v in record["sparsity"].items()})
    flat.update({f"method/{k}": v for k, v in record["method_info"].items()})
    for key in ("train_seconds", "train_examples_per_s", "wall_seconds", "train_steps"):
        if record.get(key) is not None:
            flat[key] = record[key]
    return flat
