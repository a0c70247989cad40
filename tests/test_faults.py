"""Faults: a plugin that raises, a loss that becomes NaN, kill -9 and SIGTERM with a rerun, two ``bench run``
processes on one output folder. Real processes where the fault is about processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.cli.app import main
from bench.results import leaderboard, records
from bench.results.folder import ResultsFolder
from bench.run.queue import CLAIMED, FINISHED, CellQueue
from bench.run.runner import run_matrix
from tests.conftest import needs_minilm
from tests.test_runner import tiny_matrix

pytestmark = [pytest.mark.integration, needs_minilm]


def mlflow_runs(output: Path, matrices: bool = False):
    """The MLflow runs of ``output``'s cells (and, with ``matrices``, the run each bench run ends with)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{Path(output).resolve() / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("prune-bench").experiment_id])
    return [r for r in runs if matrices or r.data.tags.get("matrix") != "true"]


# ---- a plugin that raises in any hook ------------------------------------------------------------------------------
def _raise(hook: str):
    def boom(self, *args, **kwargs):
        raise RuntimeError(f"boom in {hook}")

    return boom


@pytest.mark.parametrize("hook", ["make_mask", "param_groups", "regularization_loss", "step", "set_final_masks"])
def test_a_plugin_raising_in_any_hook_fails_only_its_cell(hook, tmp_path, tiny_model_dir, monkeypatch):
    from bench.methods.movement import Movement

    monkeypatch.setattr(Movement, hook, _raise(hook))
    matrix = tiny_matrix(tmp_path, tiny_model_dir, methods=["dense", "movement", "magnitude"])
    results = run_matrix(matrix, log=lambda line: None)

    status = {r["cell"]["method"]: r["status"] for r in results}
    assert status == {"dense": "finished", "movement": "failed", "magnitude": "finished"}
    failed = next(r for r in results if r["status"] == "failed")
    assert failed["error"] == f"RuntimeError('boom in {hook}')"
    assert f"boom in {hook}" in failed["traceback"] and "Traceback" in failed["traceback"]
    assert "metrics" not in failed
    on_disk = records.read_record(matrix.output, failed["id"])
    assert on_disk["status"] == "failed" and on_disk["traceback"] == failed["traceback"]
    run = next(r for r in mlflow_runs(matrix.output) if r.data.tags["cell_id"] == failed["id"])
    assert run.info.status == "FAILED"
    assert f"boom in {hook}" in run.data.tags["error"] and f"boom in {hook}" in run.data.tags["traceback"]


def test_bench_run_summarises_failures_exits_1_and_retry_failed_reruns_only_them(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    from bench.methods.movement import Movement

    config = tmp_path / "matrix.yaml"
    config.write_text(MATRIX.format(model=tiny_model_dir, methods="[dense, movement]", train=48))
    out = tmp_path / "out"
    original_step = Movement.step
    monkeypatch.setattr(Movement, "step", _raise("step"))
    assert main(["run", "--config", str(config), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 of 2 cells did not finish" in err and "FAILED movement/sst2 @ 0.5" in err and "boom in step" in err

    monkeypatch.setattr(Movement, "step", original_step)
    assert main(["run", "--config", str(config), "--output", str(out)]) == 1, "failed cells are not rerun by default"
    err = capsys.readouterr().err
    assert "2 of 2 cells already done, skipped: 1 finished, 1 failed; rerun failed ones with --retry-failed" in err
    assert main(["run", "--config", str(config), "--output", str(out), "--retry-failed"]) == 0
    err = capsys.readouterr().err
    assert "1 of 2 cells already done, skipped: 1 finished\n" in err, "the finished dense cell is not rerun"
    assert {r["status"] for r in records.read_records(out)} == {"finished"}


# ---- NaN / inf -------------------------------------------------------------------------------------------------------
def test_a_nan_loss_stops_the_cell_as_diverged_with_its_step(tmp_path, tiny_model_dir, monkeypatch):
    from bench.methods.magnitude import Magnitude

    original_step = Magnitude.step

    def counting_step(self, step, total_steps, lr=None):
        self.seen_step = step
        return original_step(self, step, total_steps, lr)

    def nan_after_two(self):
        return torch.tensor(float("nan")) if getattr(self, "seen_step", 0) >= 2 else None

    monkeypatch.setattr(Magnitude, "step", counting_step)
    monkeypatch.setattr(Magnitude, "regularization_loss", nan_after_two)
    matrix = tiny_matrix(tmp_path, tiny_model_dir, methods=["dense", "magnitude"])
    results = run_matrix(matrix, log=lambda line: None)

    diverged = next(r for r in results if r["cell"]["method"] == "magnitude")
    assert diverged["status"] == "diverged" and diverged["diverged_step"] == 3
    assert "step 3" in diverged["error"] and "nan" in diverged["error"]
    assert "metrics" not in diverged and "sparsity" not in diverged, "no metric from a diverged model"
    assert CellQueue(matrix.storage_url).row(diverged["id"]).state == "diverged"
    run = next(r for r in mlflow_runs(matrix.output) if r.data.tags["cell_id"] == diverged["id"])
    assert run.info.status == "FAILED" and run.data.tags["diverged_step"] == "3"
    assert not any(k.startswith("eval/") for k in run.data.metrics)
    leaderboard.write(matrix.output)
    board = (matrix.output / "leaderboard.md").read_text()
    assert "diverged at step 3" in board
    assert "magnitude" not in board.split("## Cells")[0], "a diverged cell has no leaderboard value"


def test_non_finite_weights_after_the_last_step_are_diverged_too(tmp_path, tiny_model_dir, monkeypatch):
    from bench.methods.magnitude import Magnitude

    original = Magnitude.finalize

    def finalize_into_inf(self, model):
        info = original(self, model)
        model.base_model.encoder.layer[0].attention.self.query.weight.data[0, 0] = float("inf")
        return info

    monkeypatch.setattr(Magnitude, "finalize", finalize_into_inf)
    results = run_matrix(tiny_matrix(tmp_path, tiny_model_dir, methods=["magnitude"]), log=lambda line: None)
    assert results[0]["status"] == "diverged" and "not finite" in results[0]["error"]
    assert results[0]["diverged_step"] == 3 and "metrics" not in results[0]  # 48 examples / batch 16


# ---- processes: kill -9, SIGTERM, two bench run on one folder -------------------------------------------------
MATRIX = """\
methods: {methods}
tasks: [sst2]
sparsities: [0.5]
model: {model}
budget: {{epochs: 1, batch_size: 8, max_length: 48}}
splits: {{"*": {{train_split: "train[:{train}]", eval_split: "validation[:32]"}}}}
"""


def bench_run(config: Path, out: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    handle = log.open("a")
    command = [sys.executable, "-m", "bench.cli.app", "run", "--config", str(config), "--output", str(out)]
    return subprocess.Popen(command, stdout=handle, stderr=handle, env=env)


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        assert proc.poll() is None, f"bench run exited early while waiting for {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def claimed_cell(out: Path) -> str | None:
    """A cell claimed by a worker but not finished yet (queried read-only, without creating the database)."""
    if not (out / "bench.db").exists():
        return None
    rows = [r for r in CellQueue(f"sqlite:///{out.resolve() / 'bench.db'}").cells() if r.state == CLAIMED]
    return rows[0].cell_id if rows else None


def visible_records(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in ResultsFolder(out).cells.glob("*.json")}


def test_kill_9_then_rerun_keeps_finished_cells_restarts_the_killed_one_and_fails_its_mlflow_run(
    tmp_path, tiny_model_dir
):
    config = tmp_path / "matrix.yaml"
    config.write_text(MATRIX.format(model=tiny_model_dir, methods="[dense, magnitude, movement]", train=2000))
    out, log = tmp_path / "out", tmp_path / "run.log"

    first = bench_run(config, out, log)
    wait_for(lambda: len(visible_records(out)) == 1, 300, "the first finished record", first, log)
    wait_for(lambda: claimed_cell(out) is not None, 120, "a claimed second cell", first, log)
    killed_cell = claimed_cell(out)
    time.sleep(1.0)  # mid-training
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = visible_records(out)
    assert len(before) == 1 and all(json.loads(b)["status"] == "finished" for b in before.values())
    running = [r for r in mlflow_runs(out) if r.info.status == "RUNNING"]
    assert [r.data.tags["cell_id"] for r in running] == [killed_cell], "the killed cell's run was left running"

    started = time.time()
    second = bench_run(config, out, log)
    assert second.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert time.time() - started < 100, "the dead holder's claim is released at once, not after its 120 s lease"
    after = visible_records(out)
    assert len(after) == 3 and all(json.loads(b)["status"] == "finished" for b in after.values())
    assert {k: after[k] for k in before} == before, "the finished cell was not recomputed or rewritten"
    queue = CellQueue(f"sqlite:///{out.resolve() / 'bench.db'}")
    assert all(queue.row(r.cell_id).finalize_count == 1 for r in queue.cells())
    runs = mlflow_runs(out)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    killed_runs = sorted(r.info.status for r in runs if r.data.tags["cell_id"] == killed_cell)
    assert killed_runs == ["FAILED", "FINISHED"], "the killed attempt is FAILED, the restart FINISHED"
    assert "taking the cell over" in log.read_text()


def test_sigterm_gives_the_claim_back_and_marks_the_run_killed(tmp_path, tiny_model_dir):
    config = tmp_path / "matrix.yaml"
    config.write_text(MATRIX.format(model=tiny_model_dir, methods="[dense]", train=6000))
    out, log = tmp_path / "out", tmp_path / "run.log"
    proc = bench_run(config, out, log)
    wait_for(lambda: claimed_cell(out) is not None, 120, "a claimed cell", proc, log)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, log.read_text()[-3000:]
    queue = CellQueue(f"sqlite:///{out.resolve() / 'bench.db'}")
    assert [r.state for r in queue.cells()] == ["pending"], "the claim was given back"
    assert [r.info.status for r in mlflow_runs(out)] == ["KILLED"]
    assert not visible_records(out)


def test_two_bench_run_processes_on_one_folder_never_run_a_cell_twice(tmp_path, tiny_model_dir):
    config = tmp_path / "matrix.yaml"
    methods = "[dense, magnitude, movement, soft_movement]"
    config.write_text(MATRIX.format(model=tiny_model_dir, methods=methods, train=160))
    out = tmp_path / "out"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [bench_run(config, out, log) for log in logs]
    for proc, log in zip(procs, logs, strict=True):
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]

    queue = CellQueue(f"sqlite:///{out.resolve() / 'bench.db'}")
    rows = queue.cells()
    assert len(rows) == 4 and all(r.state == FINISHED for r in rows)
    assert all(queue.row(r.cell_id).finalize_count == 1 for r in rows)
    everything = mlflow_runs(out, matrices=True)
    runs = mlflow_runs(out)
    assert len(everything) - len(runs) == 2, "each bench run process ends with a run for its matrix"
    assert sorted(r.data.tags["cell_id"] for r in runs) == sorted(r.cell_id for r in rows), "one run per cell"
    assert all(r.info.status == "FINISHED" for r in everything)
    recs = records.read_records(out)
    assert len(recs) == 4 and all(r["status"] == "finished" for r in recs)
    both_logs = "".join(log.read_text() for log in logs)
    assert both_logs.count(" finished in ") == 4, "every cell ran exactly once, in one of the two processes"


def test_a_stop_request_whose_exit_was_swallowed_still_stops_at_the_next_step():
    from types import SimpleNamespace

    from bench.run import stop
    from bench.run.training import PruningCallback

    steps = []
    callback = PruningCallback(SimpleNamespace(step=lambda *args: steps.append(args)))
    state = SimpleNamespace(global_step=1, max_steps=10)
    callback.on_step_end(None, state, None)
    stop.requested.set()
    try:
        with pytest.raises(SystemExit) as exit_info:
            callback.on_step_end(None, state, None)
    finally:
        stop.requested.clear()
    assert exit_info.value.code == 143 and len(steps) == 1, "the method's step is not run after the stop"
