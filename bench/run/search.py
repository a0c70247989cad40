"""Optuna HP search per cell: the same effort for every method, never on the reported split.

One study per cell, named by the cell id, in a relational storage (SQLite by default, any SQLAlchemy URL Optuna
accepts for many workers). TPE seeded from the cell seed samples the shared training knobs (learning rate,
warm-up fraction) and the method's own ``search_space(trial)``; a MedianPruner stops weak trials from their
intermediate dev-split evaluations. Trials train on the train split minus the tuning dev split and are scored
on the dev split. The best trial's settings are then retrained on the full train split and evaluated on the
eval split (always a retrain: a trial's model never saw the dev examples, the final model must).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from bench.config.search import search_spec  # noqa: F401 - the cell id part lives in bench.config; importable here too

FINISHED_STATES = ("COMPLETE", "PRUNED")


class NarrowedTrial:
    """An Optuna trial whose ``suggest_*`` calls honour fixed values and narrowed ranges.

    A method's ``search_space(trial)`` receives this wrapper, so a matrix config can narrow or fix any knob
    without the method knowing. A fixed knob is returned as is and not sampled.
    """

    def __init__(self, trial: Any, narrowing: dict[str, Any]):
        self._trial = trial
        self._narrowing = narrowing

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False):
        spec = self._narrowing.get(name)
        if spec is not None and not isinstance(spec, dict):
            return float(spec)
        spec = spec or {}
        return self._trial.suggest_float(
            name, spec.get("low", low), spec.get("high", high), step=step, log=spec.get("log", log)
        )

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False):
        spec = self._narrowing.get(name)
        if spec is not None and not isinstance(spec, dict):
            return int(spec)
        spec = spec or {}
        return self._trial.suggest_int(name, spec.get("low", low), spec.get("high", high), step=step, log=log)

    def suggest_categorical(self, name: str, choices: Any):
        spec = self._narrowing.get(name)
        if spec is not None and not isinstance(spec, dict):
            return spec
        return self._trial.suggest_categorical(name, (spec or {}).get("choices", choices))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


def sample(trial: Any, search: dict[str, Any], method_cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """(budget overrides, method hyperparameters) for one trial."""
    shared = NarrowedTrial(trial, {})
    budget = {}
    for name, spec in search["space"].items():
        if isinstance(spec, dict):
            budget[name] = shared.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            budget[name] = spec
    return budget, method_cls.search_space(NarrowedTrial(trial, search["method_space"]))


def open_study(cell: Any, storage: Any, greater_is_better: bool):
    """Create the cell's study, or load it when it exists (resume): TPE seeded from the cell, median pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=cell.id,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=cell.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        direction="maximize" if greater_is_better else "minimize",
        load_if_exists=True,
    )


def make_storage(url: str, heartbeat_seconds: int = 30):
    """Optuna RDB storage with trial heartbeats: a trial whose worker died is failed after a grace period and
    retried (same parameters), so killed trials are redone, never lost."""
    import warnings

    import optuna

    logging.getLogger("optuna").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    from bench.run.dblock import schema_lock

    with schema_lock(url):
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True},
            heartbeat_interval=heartbeat_seconds,
            grace_period=heartbeat_seconds * 3,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
        )


def fail_abandoned_trials(storage: Any, study_name: str) -> int:
    """Fail the RUNNING trials of the study ``study_name`` (a cell id) and queue each again with the same parameters,
    as Optuna's heartbeat does for a stale trial (``RetryHeartbeatStaleTrialCallback``); returns how many.

    Called by a worker that has just claimed the cell: only the claim's holder runs a cell's study, so a trial still
    RUNNING belongs to an attempt that died. The heartbeat alone fails it only after its grace period; a Ray task
    retried sooner than that would otherwise leave the killed trial RUNNING in the study and in the record.
    """
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no study: the cell has no search, or its first attempt died before creating it
        return 0
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        try:
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except RuntimeError:  # finished meanwhile (UpdateFinishedTrialError)
            continue
        retry(study, storage.get_trial(trial._trial_id))
        failed += 1
    return failed


def finished_trials(study: Any) -> list[Any]:
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED_STATES]


def run_study(
    study: Any, trials: int, objective: Callable, timeout: float | None, callbacks: list, catch: tuple = ()
) -> None:
    """Run trials until ``trials`` have finished (complete or pruned); finished ones are never redone.

    Trials raising one of ``catch`` (e.g. a diverged loss) are recorded as failed and replaced.
    """
    import optuna

    missing = trials - len(finished_trials(study))
    if missing <= 0:
        return
    states = tuple(getattr(optuna.trial.TrialState, s) for s in FINISHED_STATES)
    stop = optuna.study.MaxTrialsCallback(trials, states=states)
    study.optimize(
        objective, n_trials=missing, timeout=timeout, callbacks=[stop, *callbacks], gc_after_trial=True, catch=catch
    )


def best_trial(study: Any) -> Any:
    """The best complete trial.

    Raises:
        RuntimeError: no trial completed (all pruned or failed, or the timeout hit before the first).
    """
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        raise RuntimeError(f"study {study.study_name[:12]}: no complete trial to pick settings from")
    return study.best_trial


def summary(study: Any, seconds: float) -> dict[str, Any]:
    """What the cell record keeps of its search."""
    best = best_trial(study)
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
         "mlflow_run_id": t.user_attrs.get("mlflow_run_id")}
        for t in study.get_trials(deepcopy=False)
    ]  # fmt: skip
    return {
        "best_params": best.params,
        "best_value": best.value,
        "best_trial": best.number,
        "n_trials": len(finished_trials(study)),
        "search_seconds": seconds,
        "trials": trials,
    }


def intermediate_steps(total_steps: int, evaluations: int = 3) -> set[int]:
    """Optimizer steps after which a trial reports its dev metric to the pruner: at 1/n, 2/n ... (n-1)/n of
    training (``n = evaluations``); the trial's value itself is the finalized model's dev metric."""
    return {max(1, math.ceil(total_steps * k / evaluations)) for k in range(1, evaluations)}
