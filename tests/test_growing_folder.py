"""One results folder grown by many matrices, with real ``bench run`` processes on a tiny random BERT: a later
matrix sees the cells it shares with an earlier one (done, failed, teachers), and two runs started at once with
different protocols never both write to the folder. Every process has a timeout, so a hang fails the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results import records
from bench.results.folder import ResultsFolder
from tests.conftest import needs_minilm

pytestmark = [pytest.mark.integration, needs_minilm]

TIMEOUT = 180  # seconds per process; each takes about 10 s
# the magnitude method raises in every optimizer step: its cells fail, the others finish
FAILING = (
    "import sys\nimport bench.methods.magnitude as m\n"
    "def boom(*args, **kwargs):\n    raise RuntimeError('boom in step')\n"
    "m.Magnitude.step = boom\nfrom bench.cli.app import main\nsys.exit(main(sys.argv[1:]))"
)


def tiny(model: str, out: Path, epochs: str = "1") -> list[str]:
    return ["--tasks", "sst2", "--model", model, "--epochs", epochs, "--batch-size", "8", "--max-length", "32",
            "--train-split", "train[:32]", "--eval-split", "validation[:16]", "--output", str(out),
            "--tracking-uri", "none"]  # fmt: skip


def command(*args: str, failing: bool = False) -> list[str]:
    start = ["-c", FAILING] if failing else ["-m", "bench.cli.app"]
    return [sys.executable, *start, "run", *args]


def bench_run(*args: str, failing: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        return subprocess.run(command(*args, failing=failing), capture_output=True, text=True, env=env,
                              timeout=TIMEOUT)  # fmt: skip
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"bench run {' '.join(args)} hung for {TIMEOUT} s: {err.stderr!r:.2000}") from None


def by_method(out: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for rec in records.read_records(out):
        found.setdefault(rec["cell"]["method"], []).append(rec)
    return found


@pytest.mark.parametrize("saved", [False, True], ids=["teacher-without-model", "teacher-with-model"])
def test_distill_reuses_a_teacher_trained_by_an_earlier_matrix(saved, tmp_path, tiny_model_dir):
    out = tmp_path / "d"
    first = bench_run("--methods", "dense", "--sparsities", "0.5", *tiny(tiny_model_dir, out),
                      *(["--save-models"] if saved else []))  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    teacher = by_method(out)["dense"][0]
    before = ResultsFolder(out).record(teacher["id"]).read_bytes()

    second = bench_run("--methods", "magnitude", "--sparsities", "0.5", "--distill", *tiny(tiny_model_dir, out))
    assert second.returncode == 0, second.stderr[-2000:]
    student = by_method(out)["magnitude"][0]
    assert student["status"] == "finished" and student["cell"]["distillation"]["teacher"] == teacher["id"]
    if saved:
        assert f"reusing the dense teacher dense/sst2@0#0 ({teacher['id'][:12]})" in second.stderr
        assert "1 of 2 cells already done, skipped: 1 finished" in second.stderr
        assert "dense/sst2@0#0 finished in" not in second.stderr, "the saved teacher is not trained again"
        assert ResultsFolder(out).record(teacher["id"]).read_bytes() == before
    else:
        assert "finished earlier without saving its model" in second.stderr, "it says why the teacher runs again"
        assert "[cell 1/2] dense/sst2@0#0 finished in" in second.stderr
    assert (out / "models" / teacher["id"] / "config.json").is_file()


def test_a_later_matrix_reports_and_retries_the_failures_of_shared_cells(tmp_path, tiny_model_dir):
    out = tmp_path / "d"
    first = bench_run("--methods", "dense,magnitude", "--sparsities", "0.5", *tiny(tiny_model_dir, out), failing=True)
    assert first.returncode == 1 and "FAILED magnitude/sst2 @ 0.5" in first.stderr, first.stderr[-2000:]

    smaller = bench_run("--methods", "magnitude", "--sparsities", "0.5", *tiny(tiny_model_dir, out))
    assert smaller.returncode == 1, "a failed shared cell fails the smaller matrix too"
    assert "1 of 1 cells already done, skipped: 1 failed; rerun failed ones with --retry-failed" in smaller.stderr
    assert "1 of 1 cells did not finish" in smaller.stderr and "FAILED magnitude/sst2 @ 0.5" in smaller.stderr

    larger = bench_run("--methods", "dense,magnitude", "--sparsities", "0.5,0.9", *tiny(tiny_model_dir, out))
    assert larger.returncode == 1, larger.stderr[-2000:]
    assert "2 of 3 cells already done, skipped: 1 finished, 1 failed; rerun failed ones" in larger.stderr
    assert "1 of 3 cells did not finish" in larger.stderr and "FAILED magnitude/sst2 @ 0.5 " in larger.stderr
    assert "magnitude/sst2@0.9#0 finished in" in larger.stderr, "the new cell ran"

    retried = bench_run("--methods", "magnitude", "--sparsities", "0.5", "--retry-failed", *tiny(tiny_model_dir, out))
    assert retried.returncode == 0, retried.stderr[-2000:]
    assert "[cell 1/1] magnitude/sst2@0.5#0 finished in" in retried.stderr
    assert sorted(r["status"] for r in records.read_records(out)) == ["finished"] * 3

    again = bench_run("--methods", "dense,magnitude", "--sparsities", "0.5,0.9", *tiny(tiny_model_dir, out))
    assert again.returncode == 0 and "3 of 3 cells already done, skipped: 3 finished\n" in again.stderr


def test_two_runs_started_at_once_with_different_budgets_one_is_refused(tmp_path, tiny_model_dir):
    out = tmp_path / "d"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = [tmp_path / f"epochs{e}.log" for e in ("1", "2")]
    procs = [
        subprocess.Popen(command("--methods", "dense,magnitude", "--sparsities", "0.5", *tiny(tiny_model_dir, out, e)),
                         stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env)
        for e, log in zip(("1", "2"), logs, strict=True)
    ]  # fmt: skip
    try:
        results = [(p.wait(timeout=TIMEOUT), log.read_text()) for p, log in zip(procs, logs, strict=True)]
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], f"exactly one run is refused: {[(c, e[-1500:]) for c, e in results]}"
    refused = next(err for code, err in results if code == 2)
    assert "another protocol" in refused and "budget epochs" in refused and "Traceback" not in refused
    assert len([line for line in refused.splitlines() if line.startswith("bench: error:")]) == 1
    epochs = {json.dumps(r["cell"]["budget"]["epochs"]) for r in records.read_records(out)}
    assert len(records.read_records(out)) == 2 and len(epochs) == 1, f"the folder holds one protocol: {epochs}"
