"""``bench run --executor ray`` on a real Ray cluster (issue 18): a 2 × 2 tiny matrix with 2 trials per cell, a Ray
worker killed mid-trial (the cell is retried and resumed, nothing lost, nothing recorded twice), ``--distill``
students after their teacher, a node that dies mid-cell; and the executor's bad input (exit 2, one line, nothing
written).

The cluster is two 1-CPU nodes on 127.0.0.1, started as on two machines (``ray start --head``, then ``ray start
--address``; each ``--block`` in its own session, with its own ports); it serves the module, and at the end every
process of both sessions is ended by id and none may be left. Skipped where the ray extra is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from bench.cli.app import main
from bench.results import records
from bench.testing import ray_cluster as cluster
from bench.testing.ray_cluster import RAY_ENV, answers, free_port, session_processes
from tests.conftest import needs_minilm

pytestmark = [pytest.mark.slow, pytest.mark.integration, needs_minilm]

NO_RAY = "the ray extra is not installed (pip install 'prune-bench[ray]')"
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason=NO_RAY)

MATRIX = """\
methods: [{methods}]
tasks: [sst2]
sparsities: [0.5, 0.9]
model: {model}
trials: {trials}
lease_seconds: 4
budget: {{epochs: 1, batch_size: 8, max_length: 48}}
splits: {{"*": {{train_split: "train[:64]", eval_split: "validation[:24]"}}}}
"""


class Cluster(NamedTuple):
    address: str
    head: int  # the session of every process of the head node (GCS, raylet, its workers): `ray start` leads it
    node: int  # the same of the second node


def start_node(folder: Path, name: str, *args: str) -> subprocess.Popen:
    """A 1-CPU node (:func:`bench.testing.ray_cluster.start_node`), its output in ``folder/<name>.log``."""
    return cluster.start_node(folder / f"{name}.log", "--num-cpus=1", *args)


def alive_nodes(address: str) -> int:
    code = f"import ray; ray.init(address={address!r}); print(sum(n['Alive'] for n in ray.nodes()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **RAY_ENV})
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A Ray cluster of two 1-CPU nodes on 127.0.0.1, made as on many machines: ``ray start --head``, then
    ``ray start --address``; all their processes are ended after."""
    pytest.importorskip("ray", reason=NO_RAY)
    folder = tmp_path_factory.mktemp("ray-cluster")
    # Ray's session folder holds AF_UNIX sockets, whose paths may not exceed 107 bytes: a short folder of its own,
    # not pytest's (/tmp/pytest-of-root/pytest-262/ray-cluster0/ray/session_<date>_<pid>/sockets/plasma_store is 110).
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = start_node(folder, "head", "--head", f"--port={port}", "--include-dashboard=false", "--disable-usage-stats",
                      f"--temp-dir={temp}", f"--ray-client-server-port={free_port()}")  # fmt: skip
    node = None
    try:
        wait_until(lambda: answers(address), head, folder / "head.log", "the Ray head")
        node = start_node(folder, "node", f"--address={address}")
        wait_until(lambda: alive_nodes(address) == 2, node, folder / "node.log", "the second node")
        yield Cluster(address, head.pid, node.pid)
    finally:
        for started in (node, head):
            if started is not None:
                stop_session(started)
        shutil.rmtree(temp, ignore_errors=True)


def wait_until(condition, proc: subprocess.Popen, log: Path, what: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"{what} did not start:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, f"{what} did not come up in {timeout:.0f} s"
        time.sleep(0.5)


def stop_session(started: subprocess.Popen) -> None:
    """End a node and every process of its session (raylet, GCS, workers), by id; none may outlive the tests."""
    left = cluster.stop_node(started)
    assert not left, f"Ray processes outlived the tests: {left}"


def bench_run(config: Path, out: Path, address: str, log: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, **RAY_ENV, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "bench.cli.app", "run", "--config", str(config), "--output", str(out),
               "--executor", "ray", "--ray-address", address, *extra]  # fmt: skip
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def study_trials(storage: str, cell_id: str) -> list:
    import optuna

    try:
        return optuna.load_study(study_name=cell_id, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []


def cell_process(sids: tuple[int, ...], cell_id: str):
    """The Ray worker process (in one of the sessions ``sids``) running ``cell_id``'s task (its title names the
    task), or None."""
    for proc in (p for sid in sids for p in session_processes(sid)):
        try:
            if f"bench-cell-{cell_id[:12]}" in " ".join(proc.cmdline()):
                return proc
        except Exception:  # noqa: BLE001 - gone meanwhile
            continue
    return None


def queue_rows(storage: str):
    import sqlalchemy as sa

    engine = sa.create_engine(storage)
    try:
        if not sa.inspect(engine).has_table("bench_cells"):
            return []
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT cell_id, state, finalize_count FROM bench_cells")).fetchall()
    finally:
        engine.dispose()


def mid_second_trial(run: subprocess.Popen, log: Path, out: Path, sids: tuple[int, ...]):
    """``(cell id, its finished trial numbers, its Ray worker process)`` of the first cell seen running its second
    trial in one of the sessions ``sids`` (a kill then has a finished trial to keep and a running one to lose)."""
    storage, deadline = f"sqlite:///{out.resolve() / 'bench.db'}", time.time() + 300
    while True:
        assert run.poll() is None, f"bench run ended before a second trial ran:\n{log.read_text()[-3000:]}"
        assert time.time() < deadline, "no second trial running within 300 s"
        for cell_id, state, _ in queue_rows(storage) if (out / "bench.db").exists() else []:
            trials = study_trials(storage, cell_id)
            done = [t.number for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
            if state == "claimed" and done and any(t.state.name == "RUNNING" for t in trials):
                proc = cell_process(sids, cell_id)
                if proc is not None:
                    return cell_id, done, proc
        time.sleep(0.05)


def check_once_each(out: Path, cells: int, killed: str, kept: list[int]) -> list[dict]:
    """Every cell finished and finalized once, one record each, 2 finished trials per study; the killed cell's
    trials finished before the kill kept (its study resumed from the database). Returns the records."""
    storage = f"sqlite:///{out.resolve() / 'bench.db'}"
    rows = queue_rows(storage)
    assert len(rows) == cells and {r.state for r in rows} == {"finished"}
    assert [r.finalize_count for r in rows] == [1] * cells, "a cell was finalized twice"
    found = records.read_records(out)
    assert sorted(r["id"] for r in found) == sorted(r.cell_id for r in rows), "one record per cell, no other"
    for record in found:
        finished = [t for t in study_trials(storage, record["id"]) if t.state.name in ("COMPLETE", "PRUNED")]
        assert len(finished) == 2 and record["search"]["n_trials"] == 2, "a trial was lost or run twice"
        assert record["worker"].startswith("ray:")
        if record["id"] == killed:
            assert kept == [t.number for t in finished][: len(kept)], (kept, [t.number for t in finished])
    return found


@needs_ray
def test_a_2x2_matrix_runs_as_ray_tasks_and_a_killed_worker_loses_and_duplicates_nothing(
    ray_cluster, tmp_path, tiny_model_dir
):
    from tests.test_faults import mlflow_runs

    config, out, log = tmp_path / "matrix.yaml", tmp_path / "out", tmp_path / "run.log"
    config.write_text(MATRIX.format(methods="magnitude, movement", model=tiny_model_dir, trials=2))
    run = bench_run(config, out, ray_cluster.address, log)
    killed, kept, proc = mid_second_trial(run, log, out, (ray_cluster.head, ray_cluster.node))
    proc.send_signal(signal.SIGKILL)  # the Ray worker, mid-trial
    assert run.wait(timeout=600) == 0, log.read_text()[-4000:]

    check_once_each(out, 4, killed, kept)
    attempts = [r for r in mlflow_runs(out) if r.data.tags.get("cell_id") == killed and "trial" not in r.data.tags]
    statuses = sorted(r.info.status for r in attempts)
    assert statuses == ["FAILED", "FINISHED"], f"the killed attempt is failed and the retry finished: {statuses}"
    text = log.read_text()
    assert "[4/4 cell tasks done]" in text and "retr" in text  # Ray said it retries the task


@needs_ray
def test_distilled_students_start_after_their_teacher_finished(ray_cluster, tmp_path, tiny_model_dir):
    from tests.test_faults import mlflow_runs

    config, out, log = tmp_path / "matrix.yaml", tmp_path / "out", tmp_path / "run.log"
    config.write_text(MATRIX.format(methods="magnitude", model=tiny_model_dir, trials=0))
    run = bench_run(config, out, ray_cluster.address, log, "--distill")
    assert run.wait(timeout=600) == 0, log.read_text()[-4000:]

    found = {r["cell"]["method"] + str(r["cell"]["sparsity"]): r for r in records.read_records(out)}
    assert sorted(found) == ["dense0.0", "magnitude0.5", "magnitude0.9"]
    assert {r["status"] for r in found.values()} == {"finished"}
    teacher = found["dense0.0"]
    runs = {r.data.tags["cell_id"]: r for r in mlflow_runs(out)}
    for student in (found["magnitude0.5"], found["magnitude0.9"]):
        assert student["cell"]["distillation"]["teacher"] == teacher["id"]
        assert runs[student["id"]].info.start_time >= runs[teacher["id"]].info.end_time, "a student ran too early"


# ---- bad input: exit 2, one line, nothing written ----------------------------------------------------------------
def args(out: Path, *extra: str) -> list[str]:
    return ["run", "--methods", "magnitude", "--tasks", "sst2", "--sparsities", "0.5", "--output", str(out), *extra]


def test_executor_ray_without_the_ray_extra_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(args(tmp_path / "out", "--executor", "ray")) == 2
    err = capsys.readouterr().err
    assert err == "bench: error: --executor ray needs the ray extra: pip install 'prune-bench[ray]'\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--executor", "dask"], "--executor: unknown executor 'dask' (str); valid: local, ray"),
        (["--ray-address", "127.0.0.1:6379"], "--ray-address: applies to --executor ray only"),
        (["--gpus-per-cell", "1"], "--gpus-per-cell: applies to --executor ray only"),
        (["--executor", "ray", "--cpus-per-cell", "0"], "--cpus-per-cell: expected a number > 0 and <= 1024, got 0"),
        (["--executor", "ray", "--ray-address", "nohost"], "--ray-address: expected host:port"),
    ],
)
def test_bad_executor_settings_are_one_line_and_exit_2(extra, message, tmp_path, capsys, tiny_model_dir):
    if "nohost" in extra and importlib.util.find_spec("ray") is None:
        pytest.skip(NO_RAY)
    assert main([*args(tmp_path / "out", "--model", tiny_model_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bench: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


@needs_ray
def test_a_ray_address_where_no_head_answers_is_one_line_and_exit_2(tmp_path, capsys, tiny_model_dir):
    address = f"127.0.0.1:{free_port()}"
    command = [*args(tmp_path / "out", "--model", tiny_model_dir), "--executor", "ray", "--ray-address", address]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bench: error: --ray-address {address}: no Ray head answers there") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_help_and_ls_do_not_import_ray():
    code = ("import sys; from bench.cli.app import build_parser, main; build_parser(); main(['ls', 'methods']); "
            "print('ray' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_the_executor_settings_stay_out_of_the_cell_id(tiny_model_dir):
    from bench.config.matrix import Matrix, expand

    fields = dict(methods=["magnitude"], tasks=["sst2"], sparsities=[0.5], model=tiny_model_dir)
    local = expand(Matrix(**fields))
    on_ray = expand(Matrix(**fields, execution={"executor": "ray", "cpus_per_cell": 2, "gpus_per_cell": 0.5}))
    assert [c.id for c in local] == [c.id for c in on_ray]


def test_a_cell_whose_task_ray_gave_up_on_is_recorded_failed_once(tmp_path, tiny_model_dir):
    """The driver's side of a task whose worker died on every try (no Ray needed): a failed record under the
    task's own claim, and nothing over a record the cell already has."""
    from bench.config.matrix import Matrix, expand
    from bench.run.queue import CellQueue
    from bench.run.ray_executor import claim_name, record_lost, task_settings

    cells = expand(Matrix(methods=["magnitude"], tasks=["sst2"], sparsities=[0.5, 0.9], model=tiny_model_dir))
    storage = f"sqlite:///{tmp_path / 'bench.db'}"
    queue = CellQueue(storage)
    queue.add_matrix("m", [{"id": c.id, "cell": c.to_dict(), "options": {}} for c in cells])
    settings = task_settings(tmp_path / "out", storage, 120.0, "none", None, "m")
    lost, done = queue.cells("m")
    assert queue.claim(lost.cell_id, claim_name(settings, lost.cell_id))  # the dead task's claim
    record = record_lost(queue, settings, lost, RuntimeError("The worker died unexpectedly"))
    assert record["status"] == "failed" and "Ray gave up on its task" in record["error"]
    assert "The worker died unexpectedly" in record["error"]
    assert records.read_record(tmp_path / "out", lost.cell_id)["status"] == "failed"
    assert queue.row(lost.cell_id).finalize_count == 1

    assert queue.claim(done.cell_id, "someone") and queue.finish(done.cell_id, "someone", {"status": "finished"})
    assert record_lost(queue, settings, done, RuntimeError("late"))["status"] == "finished"
    assert records.read_record(tmp_path / "out", done.cell_id) is None, "no record over the finished one"


@needs_ray
def test_a_node_that_dies_mid_cell_gets_its_cell_retried_on_another(ray_cluster, tmp_path, tiny_model_dir):
    """Last in the module: it ends the second node (every process of its session, as a machine that dies)."""
    config, out, log = tmp_path / "matrix.yaml", tmp_path / "out", tmp_path / "run.log"
    # 64 times the examples of the other tests: each trial runs long enough (512 steps, about 8 s) for the poll to
    # see the cell on the second node in its second trial even on a loaded machine (CI runs missed the window with
    # 8 steps, and with 64 steps: about 1 s).
    matrix = MATRIX.format(methods="magnitude", model=tiny_model_dir, trials=2).replace("train[:64]", "train[:4096]")
    config.write_text(matrix)
    run = bench_run(config, out, ray_cluster.address, log)
    killed, kept, _ = mid_second_trial(run, log, out, (ray_cluster.node,))
    for proc in session_processes(ray_cluster.node):
        proc.kill()
    assert run.wait(timeout=600) == 0, log.read_text()[-4000:]
    check_once_each(out, 2, killed, kept)
