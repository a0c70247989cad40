"""The matrix runner end to end on a tiny random BERT (real tokenizer and data from the Hub cache)."""

from __future__ import annotations

import json

import pytest

from bench.results import leaderboard
from bench.results.folder import ResultsFolder
from bench.results.saved_masks import load_masks
from bench.run.runner import Matrix, expand, run_matrix
from tests.conftest import needs_minilm

pytestmark = needs_minilm


def tiny_matrix(tmp_path, model, **overrides) -> Matrix:
    fields = dict(
        methods=["dense", "magnitude", "movement"], tasks=["sst2"], sparsities=[0.5], seeds=[0], model=model,
        output=tmp_path / "out", budget={"epochs": 1, "batch_size": 16, "max_length": 64},
        splits={"*": {"train_split": "train[:48]", "eval_split": "validation[:24]"}},
    )  # fmt: skip
    fields.update(overrides)
    return Matrix(**fields)


def test_matrix_runs_records_tracks_and_ranks(tmp_path, tiny_model_dir):
    matrix = tiny_matrix(tmp_path, tiny_model_dir)
    results = run_matrix(matrix, log=lambda line: None)
    assert [r["status"] for r in results] == ["finished"] * 3
    assert [r["cell"]["method"] for r in results] == ["dense", "magnitude", "movement"]
    for rec in results:
        target = rec["cell"]["sparsity"]
        assert abs(rec["sparsity"]["encoder_sparsity"] - target) <= 0.005
        assert 0 <= rec["metrics"]["accuracy"] <= 100
        assert rec["cell"]["versions"]["torch"]
        on_disk = json.loads(ResultsFolder(matrix.output).record(rec["id"]).read_text())
        assert on_disk["metrics"] == rec["metrics"]
        kept = load_masks(ResultsFolder(matrix.output).masks(rec["id"]))
        pruned = sum(int((~mask).sum()) for mask, _, _ in kept.values())
        assert pruned == rec["sparsity"]["prunable_zeros"], "the saved masks are the finalized model's zeros"

    board = leaderboard.write(matrix.output)
    lines = board.splitlines()
    assert lines[2].startswith("| dense"), "dense sits on top"
    assert "sst2 accuracy↑ @ 50%" in lines[0]
    assert "sp 50.0%" in board and (matrix.output / "leaderboard.csv").exists()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{matrix.output.resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("prune-bench").experiment_id])
    assert len(runs) == 3 and all(run.info.status == "FINISHED" for run in runs)
    by_cell = {run.data.tags["cell_id"]: run for run in runs}
    for rec in results:
        run = by_cell[rec["id"]]
        assert run.data.metrics["eval/accuracy"] == pytest.approx(rec["metrics"]["accuracy"])
        assert run.data.metrics["sparsity/encoder_sparsity"] == pytest.approx(rec["sparsity"]["encoder_sparsity"])
        assert run.data.metrics["train_loss"] == pytest.approx(rec["train_loss"])
        # A loss curve even for a 3-step run (it logged nothing when the Trainer logged every 10 steps).
        curve = client.get_metric_history(run.info.run_id, "train/loss")
        assert [m.step for m in curve] == list(range(1, rec["train_steps"] + 1))
        assert run.data.tags["mlflow.source.git.commit"] == rec["git_commit"]
        inputs = {i.tags[0].value: i.dataset.name for i in run.inputs.dataset_inputs}
        assert inputs == {"training": "nyu-mll/glue/sst2:train[:48]", "evaluation": "nyu-mll/glue/sst2:validation[:24]"}
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        assert artifacts == ["record.json"]
        # kept in the results folder (a local store's default would be ./mlruns wherever the command ran)
        saved = json.loads((matrix.output / "mlartifacts" / run.info.run_id / "artifacts" / "record.json").read_text())
        assert saved["id"] == rec["id"] and saved["metrics"] == rec["metrics"]


def test_rerun_skips_finished_cells(tmp_path, tiny_model_dir, monkeypatch):
    matrix = tiny_matrix(tmp_path, tiny_model_dir, methods=["dense", "magnitude"])
    first = run_matrix(matrix, log=lambda line: None)

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr("bench.run.cell_run.train_and_evaluate", must_not_train)
    lines = []
    second = run_matrix(tiny_matrix(tmp_path, tiny_model_dir, methods=["dense", "magnitude"]), log=lines.append)
    assert [r["id"] for r in second] == [r["id"] for r in first]
    assert lines == ["2 of 2 cells already done, skipped: 2 finished"]


def test_failing_cell_is_recorded_and_matrix_goes_on(tmp_path, tiny_model_dir, monkeypatch):
    from bench.methods.magnitude import Magnitude

    def explode(self, step, total_steps, lr=None):
        raise RuntimeError("boom in step hook")

    monkeypatch.setattr(Magnitude, "step", explode)
    results = run_matrix(tiny_matrix(tmp_path, tiny_model_dir), log=lambda line: None)
    status = {r["cell"]["method"]: r["status"] for r in results}
    assert status == {"dense": "finished", "magnitude": "failed", "movement": "finished"}
    failed = next(r for r in results if r["status"] == "failed")
    assert "boom in step hook" in failed["traceback"]


def test_dense_runs_once_at_sparsity_zero(tmp_path, tiny_model_dir):
    cells = expand(tiny_matrix(tmp_path, tiny_model_dir, sparsities=[0.5, 0.9]))
    assert [(c.method, c.sparsity) for c in cells] == [
        ("dense", 0.0), ("magnitude", 0.5), ("magnitude", 0.9), ("movement", 0.5), ("movement", 0.9),
    ]  # fmt: skip
    assert len({c.id for c in cells}) == len(cells)


def test_distillation_trains_teacher_first_and_reuses_it(tmp_path, tiny_model_dir):
    matrix = tiny_matrix(tmp_path, tiny_model_dir, methods=["movement"], distill=True)
    cells = expand(matrix)
    assert [c.method for c in cells] == ["dense", "movement"], "the missing teacher is added and runs first"
    teacher, student = cells
    assert teacher.distillation is None
    assert student.distillation == {"temperature": 2.0, "alpha_distil": 0.9, "alpha_ce": 0.1, "teacher": teacher.id}
    plain = expand(tiny_matrix(tmp_path, tiny_model_dir, methods=["movement"]))[0]
    assert plain.id != student.id, "distillation settings enter the cell id"

    results = run_matrix(matrix, log=lambda line: None)
    assert [r["status"] for r in results] == ["finished", "finished"]
    assert (matrix.output / "models" / teacher.id / "config.json").exists()
    lines = []
    run_matrix(tiny_matrix(tmp_path, tiny_model_dir, methods=["movement"], distill=True), log=lines.append)
    assert lines == ["2 of 2 cells already done, skipped: 2 finished"]


def test_search_runs_trials_per_cell_tracks_them_nested_and_retrains_the_best(tmp_path, tiny_model_dir):
    from mlflow.tracking import MlflowClient

    matrix = tiny_matrix(tmp_path, tiny_model_dir, methods=["dense", "movement"], trials=2)
    results = run_matrix(matrix, log=lambda line: None)
    assert [r["status"] for r in results] == ["finished", "finished"]
    for rec in results:
        search = rec["search"]
        assert search["n_trials"] == 2 and len(search["trials"]) == 2
        assert rec["final_budget"]["learning_rate"] == search["best_params"]["learning_rate"]
        if rec["cell"]["method"] == "movement":
            assert rec["final_hparams"]["warmup_frac"] == search["best_params"]["warmup_frac"]
        assert rec["train_features"] == 48, "the final model trains on the full train split"

    client = MlflowClient(tracking_uri=f"sqlite:///{matrix.output.resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("prune-bench").experiment_id])
    parents = {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2 and len(trials) == 4
    assert all(t.data.tags["mlflow.parentRunId"] in parents for t in trials)
    assert all(t.data.tags["optuna.state"] in ("COMPLETE", "PRUNED") for t in trials)
    assert sum(t.data.tags.get("best_trial") == "true" for t in trials) == 2
    by_run = {t.info.run_id for t in trials}
    assert {t["mlflow_run_id"] for rec in results for t in rec["search"]["trials"]} == by_run
    leaderboard.write(matrix.output)
    details = (matrix.output / "leaderboard.md").read_text().split("## Cells")[1]
    assert "learning_rate=" in details and "warmup_frac=" in details


def test_mlflow_environment_variables_are_honoured_and_the_flag_wins(tmp_path, tiny_model_dir, monkeypatch):
    from mlflow.tracking import MlflowClient

    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "my-experiment")
    (rec,) = run_matrix(tiny_matrix(tmp_path, tiny_model_dir, methods=["dense"]), log=lambda line: None)
    client = MlflowClient(tracking_uri=elsewhere)
    (run,) = client.search_runs([client.get_experiment_by_name("my-experiment").experiment_id])
    assert run.data.tags["cell_id"] == rec["id"] and not (tmp_path / "out" / "mlflow.db").exists()

    flagged = f"sqlite:///{tmp_path / 'flag.db'}"
    matrix = tiny_matrix(tmp_path, tiny_model_dir, methods=["dense"], output=tmp_path / "out2", tracking_uri=flagged)
    run_matrix(matrix, log=lambda line: None)
    client = MlflowClient(tracking_uri=flagged)
    assert len(client.search_runs([client.get_experiment_by_name("my-experiment").experiment_id])) == 1
