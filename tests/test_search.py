"""HP search: seeded studies reproduce their trials, resume adds only the missing ones, knobs narrow or fix."""

from __future__ import annotations

import optuna
import pytest

from bench.config.cell import Budget, Cell
from bench.core import registry
from bench.core.errors import BenchError
from bench.run.search import (
    NarrowedTrial,
    fail_abandoned_trials,
    make_storage,
    open_study,
    run_study,
    sample,
    search_spec,
)

SHARED = {"learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}, "warmup_ratio": {"low": 0.0, "high": 0.2}}
MOVEMENT = registry.methods.get("movement")


def make_cell(seed: int = 0, narrowing: dict | None = None) -> Cell:
    search = search_spec(6, SHARED, narrowing or {}, MOVEMENT)
    return Cell("m", "movement", {"name": "sst2"}, 0.9, seed, Budget(), {}, None, {"torch": "x"}, search=search)


def fake_objective(cell: Cell, calls: list):
    def objective(trial):
        budget, hparams = sample(trial, cell.search, MOVEMENT)
        calls.append(trial.number)
        return -abs(budget["learning_rate"] - 1e-4) - abs(hparams["warmup_frac"] - 0.1)

    return objective


def params_of(study) -> list[dict]:
    return [t.params for t in study.get_trials() if t.state.name == "COMPLETE"]


def test_seeded_study_reproduces_the_same_trials(tmp_path):
    cell = make_cell(seed=3)
    studies = []
    for name in ("a", "b"):
        storage = make_storage(f"sqlite:///{tmp_path / name}.db")
        study = open_study(cell, storage, greater_is_better=True)
        run_study(study, 6, fake_objective(cell, []), None, [])
        studies.append(study)
    assert params_of(studies[0]) == params_of(studies[1])
    assert len(params_of(studies[0])) == 6
    assert studies[0].study_name == cell.id
    other = open_study(make_cell(seed=4), make_storage(f"sqlite:///{tmp_path}/c.db"), True)
    run_study(other, 6, fake_objective(make_cell(seed=4), []), None, [])
    assert params_of(other) != params_of(studies[0]), "the sampler is seeded from the cell seed"


def test_resume_after_interruption_adds_only_missing_trials(tmp_path):
    cell = make_cell()
    url = f"sqlite:///{tmp_path / 'study.db'}"
    calls: list[int] = []
    base = fake_objective(cell, calls)

    def interrupted(trial):
        if trial.number == 3:
            raise KeyboardInterrupt  # the process is stopped in the middle of the fourth trial
        return base(trial)

    with pytest.raises(KeyboardInterrupt):
        run_study(open_study(cell, make_storage(url), True), 6, interrupted, None, [])
    first = params_of(open_study(cell, make_storage(url), True))
    assert len(first) == 3

    calls.clear()
    study = open_study(cell, make_storage(url), True)
    run_study(study, 6, base, None, [])
    assert len(params_of(study)) == 6 and params_of(study)[:3] == first
    assert len(calls) == 3, "only the missing trials ran"
    run_study(study, 6, base, None, [])
    assert len(calls) == 3, "a finished study runs nothing"


def test_a_new_holder_fails_the_dead_attempts_running_trial_and_retries_its_parameters(tmp_path):
    """A trial left RUNNING by a killed attempt (inside the heartbeat's grace period) is failed by the worker that
    claims the cell next and queued again with the same parameters; the study then ends with the asked number of
    finished trials and none RUNNING."""
    cell = make_cell()
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_seconds=3600)
    study = open_study(cell, storage, True)
    run_study(study, 2, fake_objective(cell, []), None, [])
    with pytest.warns(UserWarning, match="Heartbeat"):  # ask() outside optimize(), standing in for a dead attempt
        killed = study.ask()  # the attempt died here: the trial stays RUNNING
    killed.suggest_float("learning_rate", 1e-5, 1e-3, log=True)
    assert fail_abandoned_trials(storage, "no-such-study") == 0
    assert fail_abandoned_trials(storage, cell.id) == 1
    states = [t.state for t in study.get_trials()]
    assert states.count(optuna.trial.TrialState.RUNNING) == 0
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.params for t in waiting] == [study.trials[killed.number].params]
    run_study(study, 4, fake_objective(cell, []), None, [])
    finished = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 4, "the retry and one new trial make up the four"
    lost = study.trials[killed.number].params["learning_rate"]
    assert finished[2].params["learning_rate"] == lost, "the retry runs the killed trial's parameters"


def test_narrowing_fixes_and_narrows_knobs():
    magnitude = registry.methods.get("magnitude")  # its space: cooldown_frac
    narrowing = {"warmup_ratio": 0.05, "learning_rate": {"high": 2e-5}, "cooldown_frac": 0.25}
    spec = search_spec(4, SHARED, narrowing, magnitude)
    assert spec["space"]["warmup_ratio"] == 0.05
    assert spec["space"]["learning_rate"] == {"low": 1e-5, "high": 2e-5, "log": True}
    assert spec["method_space"] == {"cooldown_frac": 0.25}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    budget, hparams = sample(trial, spec, magnitude)
    assert budget["warmup_ratio"] == 0.05 and 1e-5 <= budget["learning_rate"] <= 2e-5
    assert hparams == {"cooldown_frac": 0.25} and "cooldown_frac" not in trial.params, "a fixed knob is not sampled"
    assert search_spec(0, SHARED, {}, MOVEMENT) is None


def test_narrowing_only_enters_the_cells_of_its_method():
    magnitude = registry.methods.get("magnitude")
    assert search_spec(4, SHARED, {"mask_lr": 0.02}, magnitude)["method_space"] == {}


def test_unknown_knob_is_refused_with_the_valid_ones():
    with pytest.raises(BenchError, match="unknown search knob.*mask_rate.*valid: .*learning_rate.*mask_lr"):
        search_spec(4, SHARED, {"mask_rate": 0.1}, MOVEMENT)


def test_narrowed_trial_ranges():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = NarrowedTrial(study.ask(), {"x": {"low": 0.4, "high": 0.5}, "n": 3, "c": {"choices": ["b"]}})
        assert 0.4 <= trial.suggest_float("x", 0.0, 1.0) <= 0.5
        assert trial.suggest_int("n", 0, 10) == 3
        assert trial.suggest_categorical("c", ["a", "b"]) == "b"
