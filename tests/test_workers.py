"""Several worker processes on one matrix: every cell finalized once, every trial recorded, nothing lost when a
worker is killed mid-trial.

Runs on an embedded SQLite storage always, and on PostgreSQL when ``BENCH_TEST_POSTGRES`` holds a reachable URL
(``.ci/run`` starts a throwaway server; ``.ci/postgres.sh start DIR`` does it on a laptop).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from bench.run.queue import FINISHED, CellQueue
from tests.conftest import needs_minilm

pytestmark = [pytest.mark.integration, needs_minilm]

POSTGRES = os.environ.get("BENCH_TEST_POSTGRES")


def postgres_reachable(url: str | None) -> bool:
    if not url:
        return False
    try:
        with sa.create_engine(url).connect():
            return True
    except Exception:  # noqa: BLE001 - unreachable or no driver: skip
        return False


def fresh_postgres_database(url: str) -> str:
    """A new empty database on the server of ``url``, so test runs never share state."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with sa.create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    return url.rsplit("/", 1)[0] + "/" + name


STORAGES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=pytest.mark.skipif(
            not postgres_reachable(POSTGRES),
            reason="no PostgreSQL server: set BENCH_TEST_POSTGRES=postgresql://user@host:port/db "
            "(.ci/postgres.sh start DIR starts one)",
        ),
    ),
]

MATRIX = """
methods: [magnitude, movement]
tasks: [sst2]
sparsities: [0.5, 0.9]
model: {model}
trials: 3
lease_seconds: 4
storage: {storage}
budget: {{epochs: 1, batch_size: 8, max_length: 48}}
splits: {{"*": {{train_split: "train[:64]", eval_split: "validation[:24]"}}}}
"""


def bench(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "bench.cli.app", *args], stdout=handle, stderr=handle, env=env)


def wait_for(condition, timeout: float, what: str, procs=()) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        for proc in procs:
            assert proc.poll() is None or condition(), f"a worker exited early while waiting for {what}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def running_trial(storage: str, study_name: str) -> bool:
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return False
    return any(t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False))


@pytest.mark.parametrize("kind", STORAGES)
def test_two_workers_share_a_matrix_and_survive_a_kill(kind, tmp_path, tiny_model_dir):
    storage = f"sqlite:///{tmp_path / 'bench.db'}" if kind == "sqlite" else fresh_postgres_database(POSTGRES)
    config = tmp_path / "matrix.yaml"
    config.write_text(textwrap.dedent(MATRIX.format(model=tiny_model_dir, storage=storage)))
    out_a, out_b = tmp_path / "a", tmp_path / "b"

    a = bench("run", "--config", str(config), "--output", str(out_a), log=tmp_path / "a.log")
    queue = CellQueue(storage, lease_seconds=4)
    wait_for(lambda: len(queue.cells()) == 4, 120, "the matrix in the queue", [a])
    first = queue.cells()[0].cell_id
    wait_for(lambda: running_trial(storage, first), 120, "a running trial of the first cell", [a])
    b = bench("worker", "--storage", storage, "--output", str(out_b), "--lease-seconds", "4", log=tmp_path / "b.log")
    time.sleep(1.0)
    a.send_signal(signal.SIGKILL)  # mid-trial
    a.wait()
    assert b.wait(timeout=600) == 0, (tmp_path / "b.log").read_text()[-3000:]

    rows = queue.cells()
    assert len(rows) == 4 and all(r.state == FINISHED for r in rows)
    assert all(queue.row(r.cell_id).finalize_count == 1 for r in rows), "no cell is finalized twice"
    for row in rows:
        trials = optuna.load_study(study_name=row.cell_id, storage=storage).get_trials()
        finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
        assert len(finished) == 3, f"{row.cell_id[:8]}: {[t.state.name for t in trials]}"
        assert not [t for t in trials if t.state.name == "RUNNING"], "no trial is left running"
    killed = optuna.load_study(study_name=first, storage=storage).get_trials()
    assert any(t.state.name == "FAIL" for t in killed), "the killed trial is recorded as failed, then retried"
    records_b = sorted(p.stem for p in (out_b / "cells").glob("*.json"))
    assert records_b == sorted(r.cell_id for r in rows), "the surviving worker holds every record"
    recs = [json.loads(p.read_text()) for p in (out_b / "cells").glob("*.json")]
    assert all(r["status"] == "finished" and r["search"]["n_trials"] == 3 for r in recs)
    assert (out_b / "leaderboard.md").read_text().count("learning_rate=") == 4, "cell details show best params"
