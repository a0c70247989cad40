"""MLflow tracking: one run per cell, logged in a few batched calls.

The store is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else an embedded SQLite file in the output folder
(``sqlite:///DIR/mlflow.db``), with no server to start; open it with ``mlflow ui --backend-store-uri
sqlite:///DIR/mlflow.db``. The experiment is ``--experiment``, else ``MLFLOW_EXPERIMENT_NAME``, else
``prune-bench``. A store without an artifact server keeps artifacts in ``DIR/mlartifacts``. One ``log_metric``
call on SQLite costs milliseconds, so everything goes through ``log_batch``.

Each cell's run holds the whole cell as params; method/task/sparsity/seed, the verdicts and
``mlflow.source.git.commit`` as tags; the final metrics, ``train_loss`` and the loss curve (the Trainer logs about
:data:`bench.config.budget.LOSS_CURVE_POINTS` points per run, every step in short runs); the train and eval splits as
dataset inputs (``mlflow.data``, Hugging Face sources: no data is copied); and the record as an artifact. Trials are
runs nested in their cell's run. ``bench run`` ends with a run per matrix holding the leaderboard (and the plots,
when ``DIR/plots`` has any) as artifacts.

Why not the ready-made callbacks: transformers' ``MLflowCallback`` logs through MLflow's fluent API (one active run
per process, its own run per ``Trainer``) and would open a run per trial and per final run, not nest them under the
cell; it also logs every metric call on its own (milliseconds each on SQLite). optuna-integration's
``MLflowCallback`` logs a trial only after it ends (no intermediate values with their steps) and is one more
package. The client calls here are few and batched.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

EXPERIMENT = "prune-bench"
_BATCH = 900  # MLflow accepts up to 1000 metrics per log_batch
NO_TRACKING = "none"  # --tracking-uri none: no MLflow runs (as the Trainer's report_to="none")


def make_tracker(uri: str, experiment: str | None = None, artifacts: Path | None = None) -> Tracker | NullTracker:
    """The tracker for ``uri``: :class:`NullTracker` for ``"none"``, else MLflow at ``uri`` in ``experiment``
    (:func:`experiment_name`); a new experiment of a store without an artifact server keeps its artifacts in the
    folder ``artifacts``."""
    if uri == NO_TRACKING:
        return NullTracker()
    local = artifacts is not None and not uri.startswith(("http://", "https://", "databricks"))
    return Tracker(uri, experiment_name(experiment), Path(artifacts).resolve().as_uri() if local else None)


def log_matrix(uri: str, experiment: str | None, output: Path, cell_ids: list[str]) -> str | None:
    """At the end of ``bench run``: one run for the matrix (tag ``matrix=true``, its cells' ids as a text artifact)
    holding the leaderboard and any plots of ``output`` as artifacts; its id (None without tracking)."""
    from bench.results.folder import ResultsFolder

    folder = ResultsFolder(output)
    tracker = make_tracker(uri, experiment, folder.tracking_artifacts)
    if isinstance(tracker, NullTracker):
        return None
    run_id = tracker.start_matrix(f"matrix of {len(cell_ids)} cells", {"output": str(output)})
    tracker.log_text(run_id, "\n".join(cell_ids), "cells.txt")
    tracker.log_files(run_id, [p for p in (folder.leaderboard_md, folder.leaderboard_csv) if p.is_file()])
    plots = sorted(folder.plots.glob("*.png")) if folder.plots.is_dir() else []
    tracker.log_files(run_id, plots, "plots")
    tracker.end(run_id)
    return run_id


def tracking_uri(flag: str | None, default: str) -> str:
    """The MLflow store: ``flag`` (``--tracking-uri``), else ``MLFLOW_TRACKING_URI``, else ``default``."""
    return flag or os.environ.get("MLFLOW_TRACKING_URI") or default


def experiment_name(flag: str | None) -> str:
    """The MLflow experiment: ``flag`` (``--experiment``), else ``MLFLOW_EXPERIMENT_NAME``, else :data:`EXPERIMENT`."""
    return flag or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict → ``{"a.b": "value"}`` with JSON for lists, for MLflow params."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


class Tracker:
    """Logs cells to MLflow at ``uri`` under experiment ``experiment``."""

    def __init__(self, uri: str, experiment: str = EXPERIMENT, artifact_location: str | None = None):
        os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        from bench.run.dblock import schema_lock

        self.uri = uri
        with schema_lock(uri):  # two processes creating one SQLite store race in MLflow's migrations
            self.client = MlflowClient(tracking_uri=uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id if found else self.client.create_experiment(experiment, artifact_location)
            )

    def start(
        self, cell_id: str, run_name: str, params: dict[str, Any], tags: dict[str, str], parent: str | None = None
    ) -> str:
        """Create a RUNNING run for a cell (or, with ``parent``, a trial nested in the cell's run); returns its id."""
        from mlflow.entities import Param, RunTag

        tags = {**tags, "cell_id": cell_id, **({"mlflow.parentRunId": parent} if parent else {})}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        flat = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(flat), 90):
            self.client.log_batch(run.info.run_id, params=flat[i : i + 90])
        self.client.log_batch(run.info.run_id, tags=[RunTag("mlflow.runName", run_name)])
        return run.info.run_id

    def log_metrics(
        self, run_id: str, metrics: dict[str, float], history: list[dict[str, Any]] = (), prefix: str = "train"
    ) -> None:
        """Final metrics (step 0) and a per-step history (``[{"step": 10, "loss": 1.1}, ...]``, logged as
        ``prefix/name``) in batches."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items() if _is_number(v)]
        for entry in history:
            step = int(entry.get("step", 0))
            batch += [
                Metric(f"{prefix}/{k}", float(v), now, step) for k, v in entry.items() if k != "step" and _is_number(v)
            ]
        for i in range(0, len(batch), _BATCH):
            self.client.log_batch(run_id, metrics=batch[i : i + _BATCH])

    def start_matrix(self, run_name: str, params: dict[str, Any]) -> str:
        """Create a RUNNING run for a whole matrix (tag ``matrix=true``, no ``cell_id``); returns its id."""
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={"matrix": "true"})
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in flatten(params).items()])
        return run.info.run_id

    def log_inputs(self, run_id: str, splits: dict[str, dict[str, Any]]) -> None:
        """Log each split as a dataset input of the run: ``{"training": {"path", "config_name", "split"}, ...}``
        (a Hugging Face source; no data is read or copied)."""
        from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        inputs = []
        for context, spec in splits.items():
            source = HuggingFaceDatasetSource(spec["path"], config_name=spec.get("config_name"), split=spec["split"])
            name = f"{spec['path']}/{spec.get('config_name') or ''}:{spec['split']}"
            dataset = MetaDataset(source, name=name)
            inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
        self.client.log_inputs(run_id, datasets=inputs)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        """An artifact ``name`` holding ``text`` (e.g. the cell's record as ``record.json``)."""
        self.client.log_text(run_id, text, name)

    def log_files(self, run_id: str, paths: list[Path], folder: str | None = None) -> None:
        """Files as artifacts of the run (under ``folder``)."""
        for path in paths:
            self.client.log_artifact(run_id, str(path), folder)

    def fail_running(self, cell_id: str, reason: str) -> list[str]:
        """Mark every RUNNING run of ``cell_id`` (the cell's run and its trials' runs) FAILED, tagged ``error``.

        Called by the worker that has just claimed the cell: any run still RUNNING belongs to an attempt that was
        killed, so it must not stay "running" forever. Returns the run ids it closed.
        """
        query = f"tags.cell_id = '{cell_id}' and attributes.status = 'RUNNING'"
        stale = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1000)
        for run in stale:
            self.end(run.info.run_id, "FAILED", {"error": reason})
        return [run.info.run_id for run in stale]

    def end(self, run_id: str, status: str = "FINISHED", tags: dict[str, str] | None = None) -> None:
        """Close the run with ``status`` (FINISHED, FAILED or KILLED)."""
        for key, value in (tags or {}).items():
            self.client.set_tag(run_id, key, value[:5000])
        self.client.set_terminated(run_id, status=status)


class NullTracker:
    """``--tracking-uri none``: records and the study database still hold everything; nothing goes to MLflow and
    MLflow is not imported. Run ids are None."""

    uri = NO_TRACKING
    client = None

    def start(self, *args: Any, **kwargs: Any) -> None:
        return None

    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        return None

    def log_inputs(self, *args: Any, **kwargs: Any) -> None:
        return None

    def log_text(self, *args: Any, **kwargs: Any) -> None:
        return None

    def log_files(self, *args: Any, **kwargs: Any) -> None:
        return None

    def fail_running(self, *args: Any, **kwargs: Any) -> list[str]:
        return []

    def end(self, *args: Any, **kwargs: Any) -> None:
        return None


class TrialCallback:
    """Optuna callback that completes each trial's nested MLflow run (Optuna's MLflowCallback is deprecated).

    The objective creates the run when the trial starts and keeps its id in the trial's user attribute
    ``mlflow_run_id``; this callback logs the intermediate dev values (with their steps), the trial's value and
    its state, and closes the run: COMPLETE → FINISHED, PRUNED → KILLED, FAIL → FAILED.
    """

    STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}

    def __init__(self, tracker: Tracker, metric: str):
        self.tracker = tracker
        self.metric = metric

    def __call__(self, study: Any, trial: Any) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id is None:
            return
        history = [{"step": step, self.metric: value} for step, value in sorted(trial.intermediate_values.items())]
        final = {"trial_value": trial.value} if trial.value is not None else {}
        self.tracker.log_metrics(run_id, final, history, prefix="dev")
        tags = {"optuna.state": trial.state.name, "optuna.trial_number": str(trial.number)}
        self.tracker.end(run_id, self.STATUS.get(trial.state.name, "FAILED"), tags)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
