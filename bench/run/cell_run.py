"""One cell, start to record: HP search (when the cell has one), retrain the best settings, record, track.

:class:`CellRunner` is what a :class:`bench.run.worker.Worker` does with a cell it has claimed: open the cell's MLflow
run, run its Optuna study (:mod:`bench.run.search`; every trial a nested MLflow run on the train split minus the
tuning dev split), retrain the best trial's settings on the full train split, finalize, measure and evaluate
(:func:`bench.run.execute.train_and_evaluate`), and return the :class:`bench.results.cell_record.CellRecord`. A
cell that raises becomes a ``failed`` record (with its traceback) and one whose loss becomes NaN or infinite a
``diverged`` record (with the step, and no metric); a full disk or a broken database is not the cell's fault and
stops the worker (:func:`bench.run.failures.environment_problem`). Closing the run logs the record's numbers as
MLflow metrics (:func:`tracked_metrics`) and its verdicts as tags (:func:`verdict_tags`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from bench.config.cell import Cell
from bench.config.resolve import task_of
from bench.core import registry
from bench.results.cell_record import ABSENT, DIVERGED, FAILED, FINISHED, CellRecord
from bench.results.folder import ResultsFolder
from bench.run.execute import FINAL, TUNING, Run, train_and_evaluate

Log = Callable[[str], None]  # takes one line


class CellRunner:
    """Runs claimed cells and records them, with one worker's MLflow tracker, Optuna storage and results folder.

    Args:
        folder: the results folder (saved models, masks, predictions; a distilled cell's teacher model).
        tracker: the MLflow tracker (:func:`bench.run.tracking.make_tracker`; it may track nothing).
        storage: the Optuna storage of the studies (:func:`bench.run.search.make_storage`).
        worker: the worker's name, written into each record.
        log: where progress lines go (each already names its cell).
    """

    def __init__(self, folder: ResultsFolder, tracker: Any, storage: Any, worker: str, log: Log):
        self.folder, self.tracker, self.storage, self.worker, self.log = folder, tracker, storage, worker, log

    # ---- the cell's MLflow run -------------------------------------------------------------------------------
    def start_run(self, cell: Cell) -> str:
        """Open the cell's MLflow run (params: the whole cell; tags: method, task, sparsity, seed, the git commit;
        inputs: its train and eval splits); its run id."""
        tags = {"method": cell.method, "task": cell.task_name, "sparsity": str(cell.sparsity), "seed": str(cell.seed)}
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        run_id = self.tracker.start(cell.id, cell.label(), cell.to_dict(), tags)
        if run_id is not None:
            task = task_of(cell)
            source = {"path": task.dataset_id, "config_name": task.dataset_config}
            self.tracker.log_inputs(run_id, {"training": {**source, "split": task.train_split},
                                             "evaluation": {**source, "split": task.eval_split}})  # fmt: skip
        return run_id

    def close_run(self, run_id: str, record: CellRecord) -> None:
        """Close the cell's run: FINISHED with its metrics and verdict tags, or FAILED with its error (and the last
        5000 characters of its traceback, or its diverged step)."""
        self.tracker.log_text(run_id, json.dumps(record.to_dict(), indent=1, default=str), "record.json")
        if record.finished:
            self.tracker.log_metrics(run_id, tracked_metrics(record), record.history or [])
            best = (record.search or {}).get("best_trial")
            tags = {"best_trial": str(best)} if best is not None else {}
            self.tracker.end(run_id, "FINISHED", {**tags, **verdict_tags(record)})
        else:
            tags = {"error": record.error, "status": record.status}
            if record.traceback:
                tags["traceback"] = record.traceback[-5000:]
            if isinstance(record.diverged_step, int):
                tags["diverged_step"] = str(record.diverged_step)
            self.tracker.end(run_id, "FAILED", tags)

    # ---- search, final run, record ---------------------------------------------------------------------------
    def execute(self, cell: Cell, options: dict[str, Any], run_id: str, label: str) -> CellRecord:
        """Search (when the cell has one), then the final run; a failure becomes a failed record, a NaN/inf loss
        a diverged one (with the step, and no metrics).

        Args:
            options: the queue's per-cell settings outside the cell id (``save_model``, ``timeout`` in seconds
                per study, ``measure_speed``).
            run_id: the cell's MLflow run (trials are nested in it).
            label: ``[cell i/N] method/task@sparsity#seed``, the prefix of the cell's progress lines.

        Raises:
            whatever :func:`bench.run.failures.environment_problem` recognises (a full disk, a broken database):
            the cell is not recorded and runs again on the next run.
        """
        from bench.run.training import DivergenceError

        base = {"id": cell.id, "cell": cell.to_dict(), "git_commit": git_commit(), "mlflow_run_id": run_id,
                "worker": self.worker, "preset": options.get("preset")}  # fmt: skip
        started = time.perf_counter()
        teacher = self.folder.model(cell.distillation["teacher"]) if cell.distillation else None
        try:
            search = self.search(cell, options, run_id, teacher, label) if cell.search else None
            final = apply_params(cell, search["best_params"]) if search else cell
            save = self.folder.model(cell.id) if options.get("save_model") else None
            with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
                run = Run(FINAL, Path(workdir), save, teacher, masks_to=self.folder.masks(cell.id),
                          measure_speed=bool(options.get("measure_speed")),
                          predictions_to=self.folder.predictions(cell.id),
                          progress=lambda line: self.log(f"{label}: {line}"))  # fmt: skip
                result = train_and_evaluate(final, run)
        except DivergenceError as err:
            return CellRecord(**base, status=DIVERGED, error=str(err), diverged_step=err.step,
                              wall_seconds=time.perf_counter() - started)  # fmt: skip
        except Exception as err:  # noqa: BLE001 - isolate the cell, record, go on
            from bench.run.failures import environment_problem

            if environment_problem(err) is not None:
                raise  # a full disk or a broken database stops the matrix; the cell is not failed and runs on rerun
            print(traceback.format_exc(), file=sys.stderr)
            return CellRecord(**base, status=FAILED, error=repr(err), traceback=traceback.format_exc(),
                              wall_seconds=time.perf_counter() - started)  # fmt: skip
        extra = {"search": search, "final_budget": final.budget.__dict__, "final_hparams": final.method_hparams}
        return CellRecord(**base, status=FINISHED, **result, **(extra if search else {}),
                          wall_seconds=time.perf_counter() - started)  # fmt: skip

    def search(self, cell: Cell, options: dict[str, Any], run_id: str, teacher: Path | None, label: str
               ) -> dict[str, Any]:  # fmt: skip
        """Run (or resume) the cell's Optuna study; its summary (:func:`bench.run.search.summary`). The best trial's
        MLflow run is tagged ``best_trial=true``; a diverged trial is a failed trial and the study goes on."""
        from bench.run import search
        from bench.run.tracking import TrialCallback
        from bench.run.training import DivergenceError

        task = task_of(cell)
        study = search.open_study(cell, self.storage, task.greater_is_better)
        objective = self.objective(cell, run_id, teacher, label)
        started = time.perf_counter()
        search.run_study(study, cell.search["trials"], objective, options.get("timeout"),
                         [TrialCallback(self.tracker, task.primary_metric)], catch=(DivergenceError,))  # fmt: skip
        summary = search.summary(study, time.perf_counter() - started)
        best_run = study.best_trial.user_attrs.get("mlflow_run_id")
        if best_run and self.tracker.client is not None:
            self.tracker.client.set_tag(best_run, "best_trial", "true")
        return summary

    def objective(self, cell: Cell, parent_run: str, teacher: Path | None, label: str):
        """The Optuna objective of the cell's study: sample the budget knobs and the method's hyperparameters, train
        on the train split minus the tuning dev split, return the dev split's primary metric (task units). The trial
        reports dev values at :func:`bench.run.search.intermediate_steps` and is pruned by the study's pruner."""
        import optuna

        from bench.run import search

        method_cls = registry.methods.get(cell.method)
        primary = task_of(cell).primary_metric

        def objective(trial: optuna.Trial) -> float:
            budget, hparams = search.sample(trial, cell.search, method_cls)
            trial_cell = apply_params(cell, {**budget, **hparams})
            name = f"{cell.label()} trial {trial.number}"
            run_id = self.tracker.start(cell.id, name, {**budget, **hparams}, {"trial": str(trial.number)}, parent_run)
            trial.set_user_attr("mlflow_run_id", run_id)

            def report(step: int, value: float) -> None:
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {step} with dev {primary} {value:.3f}")

            with tempfile.TemporaryDirectory(prefix="bench-trial-") as workdir:
                run = Run(TUNING, Path(workdir), None, teacher, report, search.intermediate_steps,
                          progress=lambda line: self.log(f"{label} trial {trial.number}: {line}"))  # fmt: skip
                return train_and_evaluate(trial_cell, run)["metrics"][primary]

        return objective


def apply_params(cell: Cell, params: dict[str, Any]) -> Cell:
    """The cell with sampled budget fields and method hyperparameters put in (its id is not used after this)."""
    budget = {k: v for k, v in params.items() if k in cell.budget.__dataclass_fields__}
    hparams = {k: v for k, v in params.items() if k not in budget}
    return replace(cell, budget=replace(cell.budget, **budget), method_hparams={**cell.method_hparams, **hparams})


@cache
def git_commit() -> str | None:
    """The commit of the prune-bench source tree that runs (the code this process loaded: read once), or None
    outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def verdict_tags(record: CellRecord) -> dict[str, str]:
    """MLflow tags of a finished record's verdicts: ``verdict.chance`` = "true"/"false" and so on."""
    found = record.verdicts or {}
    tags = {f"verdict.{k}": str(found[k]).lower() for k in ("chance", "projection", "short_schedule") if k in found}
    if found.get("reached_fraction") is not None:
        tags["verdict.reached_fraction"] = f"{found['reached_fraction']:.4f}"
    return tags


# record fields logged as metrics
TIMINGS = ("train_loss", "train_seconds", "train_examples_per_s", "wall_seconds", "train_steps")


def tracked_metrics(record: CellRecord) -> dict[str, float]:
    """The finished record's numbers as flat MLflow metric names (seconds, examples/s, steps, metric units)."""
    flat = {f"eval/{k}": v for k, v in record.metrics.items()}
    flat.update({f"sparsity/{k}": v for k, v in record.sparsity.items()})
    flat.update({f"method/{k}": v for k, v in record.method_info.items() if isinstance(v, (int, float))})
    for name in TIMINGS:
        value = getattr(record, name)
        if value is not None and value is not ABSENT:  # a null (no throughput measured) and an unset field are left out
            flat[name] = value
    for metric, interval in (record.metric_intervals or {}).items():
        flat[f"eval/{metric}_ci_low"], flat[f"eval/{metric}_ci_high"] = interval["low"], interval["high"]
    if record.search:
        flat["search/n_trials"] = record.search["n_trials"]
        flat["search/seconds"] = record.search["search_seconds"]
        flat["search/best_dev_value"] = record.search["best_value"]
    return flat
