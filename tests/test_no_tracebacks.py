"""Nothing a user does prints a traceback (issue 14, section 2).

Every case runs ``python -m bench`` in a real process and checks its exit code and what it printed: one
``bench: error: ...`` line for bad input (exit 2, nothing written), one line naming the file for a full disk or a
broken database met while working (exit 1), one line naming a log file for a bug (exit 1). The matrices name a
local model folder that does not exist, so that a check that fails to fire can never start training (the model
check would stop it, with another message). Hand-edited records are skipped by the reading commands, which name
the file and the field and count them.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from bench.results import records
from bench.results.folder import ResultsFolder
from tests.test_bad_input import needs_glue
from tests.test_significance_board import correct, new_record, write

BASE = ("run", "--methods", "dense,magnitude", "--tasks", "sst2", "--sparsities", "0.5", "--model", "/no/such/model")


def bench(*args: str, cwd: Path | None = None, timeout: float = 120, env: dict | None = None,
          file_limit: int | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """``python -m bench ARGS`` (``file_limit``: RLIMIT_FSIZE in bytes, a disk that fills up)."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))) if file_limit else None
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, **(env or {})}, preexec_fn=limit)  # fmt: skip


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]


def refused(proc: subprocess.CompletedProcess, *words: str, code: int = 2) -> str:
    """The one error line of ``proc`` (exit ``code``), checked for ``words`` (case-insensitive)."""
    no_traceback(proc)
    assert proc.returncode == code, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("bench: error: ")]
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]!r}"
    return lines[0]


def only_line(proc: subprocess.CompletedProcess) -> None:
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers (a hung server)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


# ---- --storage and --tracking-uri, checked before anything is written -----------------------------------------------
@pytest.mark.parametrize(
    ("storage", "words"),
    [
        ("sqlite3x://x/bench.db", ["--storage", "unknown database dialect 'sqlite3x'", "sqlite, postgresql"]),
        ("not a url", ["--storage 'not a url' is not a database URL", "sqlite:///"]),
        ("postgresql://bench@127.0.0.1:{port}/bench", ["cannot reach the --storage database", "refused"]),
        ("sqlite:///{tmp}", ["--storage database", "is a folder, not a file"]),
        ("sqlite://", ["--storage", "in-memory"]),
    ],
    ids=["unknown-dialect", "unparsable", "server-down", "folder", "in-memory"],
)
def test_bad_storage_url_is_one_line_before_anything_is_written(tmp_path, storage, words):
    out = tmp_path / "out"
    storage = storage.format(port=free_port(), tmp=tmp_path)
    proc = bench(*BASE, "--storage", storage, "--output", str(out))
    refused(proc, *words)
    only_line(proc)
    assert not out.exists()


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("foo://x", ["--tracking-uri 'foo://x': unknown scheme 'foo'", "none"]),
        ("http://127.0.0.1:{port}", ["cannot reach the MLflow server", "refused", "--tracking-uri none"]),
        ("sqlite:///{tmp}", ["--tracking-uri database", "is a folder"]),
    ],
    ids=["unknown-scheme", "server-down", "folder"],
)
def test_bad_tracking_uri_is_one_line_before_anything_is_written(tmp_path, uri, words):
    out = tmp_path / "out"
    proc = bench(*BASE, "--tracking-uri", uri.format(port=free_port(), tmp=tmp_path), "--output", str(out))
    refused(proc, *words)
    assert not out.exists()


@pytest.mark.parametrize(("flag", "scheme"), [("--storage", "postgresql"), ("--tracking-uri", "postgresql"),
                                             ("--tracking-uri", "http")])  # fmt: skip
def test_a_server_that_never_answers_is_given_up_on_quickly(tmp_path, silent_server, flag, scheme):
    url = f"http://127.0.0.1:{silent_server}" if scheme == "http" else f"postgresql://b@127.0.0.1:{silent_server}/b"
    proc = bench(*BASE, flag, url, "--output", str(tmp_path / "out"), env={"BENCH_CONNECT_TIMEOUT": "1"}, timeout=60)
    line = refused(proc, "cannot reach")
    assert any(word in line for word in ("no answer within", "timed out", "timeout")), line
    assert not (tmp_path / "out").exists()


def test_none_is_a_valid_tracking_uri(tmp_path):
    proc = bench(*BASE, "--tracking-uri", "none", "--output", str(tmp_path / "out"))
    refused(proc, "model '/no/such/model'", "no such folder")  # got past the store checks to the model


@pytest.mark.parametrize("name", ["bench.db", "mlflow.db"])
def test_corrupt_database_file_is_named_with_what_to_do(tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"this was a database once" * 100)
    proc = bench(*BASE, "--output", str(out))
    flag = "--storage" if name == "bench.db" else "--tracking-uri"
    refused(proc, f"corrupt {flag} database {out / name}", "not an SQLite database", "move it away")
    assert sorted(p.name for p in out.iterdir()) == [name], "nothing was written"


@pytest.mark.parametrize(("tracking", "flag", "name"), [("none", "--storage", "bench.db"),
                                                         (None, "--tracking-uri", "mlflow.db")])  # fmt: skip
def test_a_disk_that_fills_while_working_is_one_line_naming_the_database(tmp_path, tracking, flag, name):
    out = tmp_path / "w"
    args = ["worker", "--storage", f"sqlite:///{out / 'bench.db'}", "--output", str(out)]
    proc = bench(*args, *(["--tracking-uri", tracking] if tracking else []), file_limit=64 * 1024)
    refused(proc, f"the {flag} database", str(out / name), "free some space", "rerun", code=1)


# ---- flags and paths ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--epochs", "1e9", ["--epochs", "<= 1000", "1000000000"]),
        ("--batch-size", "1000000000", ["--batch-size", "<= 65536"]),
        ("--max-length", "100000", ["--max-length", "<= 8192"]),
        ("--learning-rate", "1000", ["--learning-rate", "<= 1"]),
        ("--trials", "1000000000", ["--trials", "<= 10000"]),
        ("--timeout", "1e300", ["--timeout", "<= 2592000"]),
        ("--lease-seconds", "1e300", ["--lease-seconds", "<= 86400"]),
        ("--lease-seconds", "0", ["--lease-seconds", "> 0"]),
    ],
)
def test_numeric_flags_far_out_of_range_name_their_bound(tmp_path, flag, value, words):
    proc = bench(*BASE, flag, value, "--output", str(tmp_path / "out"))
    refused(proc, *words)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def paths(tmp_path) -> dict[str, str]:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    os.mkfifo(tmp_path / "pipe")
    return {"folder": str(tmp_path / "folder"), "file": str(tmp_path / "file"), "dangling": str(tmp_path / "dangling"),
            "pipe": str(tmp_path / "pipe"), "device": "/dev/zero", "out": str(tmp_path / "out")}  # fmt: skip


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--config", "{folder}", "--output", "{out}"), ["config", "is a folder"]),
        (("--config", "{dangling}", "--output", "{out}"), ["config", "dangling symbolic link"]),
        (("--config", "{pipe}", "--output", "{out}"), ["config", "not a regular file"]),
        (("--config", "{device}", "--output", "{out}"), ["config", "not a regular file"]),
        (("--config", "", "--output", "{out}"), ["--config", "got ''"]),
        (("--output", ""), ["--output", "got ''"]),
        (("--output", "{dangling}"), ["output folder", "dangling symbolic link"]),
        (("--output", "{device}"), ["output folder /dev/zero", "a device, pipe or socket, not a folder"]),
        (("--train-split", "", "--output", "{out}"), ["--train-split", "got ''"]),
        (("--eval-split", " ", "--output", "{out}"), ["--eval-split", "non-empty"]),
        (("--seeds", "", "--output", "{out}"), ["seeds", "no seed given"]),
    ],
    ids=["config-folder", "config-dangling", "config-pipe", "config-device", "config-empty", "output-empty",
         "output-dangling", "output-device", "train-split-empty", "eval-split-blank", "seeds-empty"],
)
def test_paths_and_empty_values_that_are_not_what_they_claim(tmp_path, paths, args, words):
    args = [a.format(**paths) for a in args]
    proc = bench(*BASE, *args, cwd=tmp_path, timeout=60)
    refused(proc, *words)
    only_line(proc)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cells").exists(), "nothing written, not even in ."


def test_worker_output_that_is_a_file_and_export_to_a_file(tmp_path, paths):
    proc = bench("worker", "--storage", f"sqlite:///{tmp_path / 'bench.db'}", "--output", paths["file"])
    refused(proc, f"output folder {paths['file']} is a file")
    results = tmp_path / "res"
    ResultsFolder(results).cells.mkdir(parents=True)
    proc = bench("export", "abc", "--to", paths["file"], "--results", str(results))
    refused(proc, f"--to {paths['file']} is a file")
    proc = bench("export", "abc", "--to", "", "--results", str(results))
    refused(proc, "--to: expected a path, got ''")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--matrix", "nope"), ["--matrix: no matrix with id 'nope'", "queued matrices: none"]),
        (("--lease-seconds", "-5"), ["--lease-seconds", "> 0", "-5"]),
        (("--lease-seconds", "nan"), ["--lease-seconds", "got nan"]),
    ],
)
def test_worker_with_an_unknown_matrix_or_a_bad_lease(tmp_path, args, words):
    out = tmp_path / "w"
    proc = bench("worker", "--storage", f"sqlite:///{out / 'bench.db'}", "--output", str(out), *args)
    refused(proc, *words)
    assert not out.exists()


# ---- a bug: one line, the traceback in a log file -------------------------------------------------------------------
def run_patched(patch: str, argv: list[str], tmp: Path) -> subprocess.CompletedProcess:
    """``bench ARGV`` in a process where ``patch`` (Python) first plants a bug; temp files go to ``tmp``."""
    script = (f"import sys, tempfile, bench.cli.app as cli\ntempfile.tempdir = {str(tmp)!r}\n{patch}\n"
              f"sys.exit(cli.main({argv!r}))")  # fmt: skip
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp)


def internal_error(proc: subprocess.CompletedProcess, *words: str) -> Path:
    """The log file named by the one line of an internal error (exit 1, no traceback on the terminal)."""
    no_traceback(proc)
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("bench: internal error (a bug, not your input): "), line
    for word in words:
        assert word in line
    log = Path(line.split("the full traceback is in ", 1)[1].split(". Please", 1)[0])
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and words[0] in text
    return log


def test_a_bug_is_one_line_naming_a_log_file_in_the_temp_folder(tmp_path):
    proc = run_patched("import bench.cli.run as run; run.cmd_ls = lambda args: 1 / 0", ["ls", "methods"], tmp_path)
    log = internal_error(proc, "ZeroDivisionError", "division by zero")
    assert log.parent == tmp_path and log.name.startswith("bench-error-")
    assert "bench ls methods" in log.read_text()


def test_a_bug_in_a_command_on_a_results_folder_logs_under_its_logs_folder(tmp_path):
    results = tmp_path / "res"
    ResultsFolder(results).cells.mkdir(parents=True)
    patch = (
        "import bench.results.report\ndef boom(output, to=None): raise KeyError('no such column')\n"
        "bench.results.report.build_report = boom"
    )
    proc = run_patched(patch, ["report", str(results)], tmp_path)
    log = internal_error(proc, "KeyError", "no such column")
    assert log.parent == results / "logs"


# ---- hand-edited and foreign records: skipped, named, counted -------------------------------------------------------
GOOD = [("dense", 0.0, 0.9, 1), ("movement", 0.9, 0.8, 2), ("magnitude", 0.9, 0.7, 3)]


def edited(rec: dict, path: str, value) -> dict:
    """``rec`` with the field at dotted ``path`` set to ``value`` (``...`` deletes it)."""
    rec = json.loads(json.dumps(rec))
    *parents, last = path.split(".")
    node = rec
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return rec


BAD = {  # name: (how the record was edited, the field the warning must name)
    "missing-metrics": (lambda r: edited(r, "metrics", ...), "'metrics' is missing"),
    "string-metric": (lambda r: edited(r, "metrics.accuracy", "high"), "'metrics.accuracy' must be a finite number"),
    "nan-metric": (lambda r: edited(r, "metrics.accuracy", float("nan")), "got nan"),
    "mistyped-sparsity": (lambda r: edited(r, "sparsity.encoder_sparsity", [0.9]), "'sparsity.encoder_sparsity'"),
    "string-seed": (lambda r: edited(r, "cell.seed", "0"), "'cell.seed' has the wrong type"),
    "string-step": (lambda r: edited(r, "status", "diverged") | {"diverged_step": "<script>"}, "'diverged_step'"),
    "unknown-status": (lambda r: edited(r, "status", "running"), "field 'status' is 'running'"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Three good cells (with predictions, one with a corrupt mask file), one record per kind of hand edit, one
    that is not JSON and one whose predictions file is corrupt."""
    out = tmp_path_factory.mktemp("edited") / "res"
    for method, sparsity, rate, salt in GOOD:
        values = correct(rate, 0, salt)
        write(out, new_record(method, sparsity, 0, values), values)
    (out / "masks").mkdir()
    (out / "masks" / "movement-sst2-0.9-0.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{]")
    for name, (edit, _) in BAD.items():
        rec = edit(new_record(f"x{name}", 0.9, 0, correct(0.5, 0)))
        rec["id"] = name
        records.write_record(out, rec)
    ResultsFolder(out).cells.joinpath("not-json.json").write_text('{"id": "not-json", "status": ')
    values = correct(0.6, 0, 9)
    write(out, {**new_record("npz", 0.9, 0, values), "id": "bad-npz"}, values)
    ResultsFolder(out).predictions("bad-npz").write_bytes(b"PK\x03\x04 truncated zip")
    return out


def skipped_all(proc: subprocess.CompletedProcess, out: Path) -> None:
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    for name, (_, field) in BAD.items():
        line = next((ln for ln in err.splitlines() if f"skipped record {out / 'cells' / name}.json" in ln), None)
        assert line is not None and field in line, (name, err)
    assert f"skipped record {out / 'cells' / 'not-json.json'}: not valid JSON" in err
    assert f"skipped record {out / 'cells' / 'bad-npz.json'}: its predictions file" in err
    count = len(BAD) + 2
    assert f"bench: warning: {count} records of {out} skipped" in err and "bench forget" in err


@pytest.mark.parametrize("command", [["leaderboard"], ["leaderboard", "--format", "html"], ["report"], ["compare"]])
def test_reading_commands_skip_bad_records_with_a_warning_and_a_count(folder, command):
    args = [*command, str(folder)] + ([str(folder)] if command == ["compare"] else [])
    proc = bench(*args)
    skipped_all(proc, folder)
    assert "magnitude" in proc.stdout or command == ["report"], "the good cells are still shown"
    if command == ["report"]:
        page = (folder / "report.html").read_text()
        assert f"{len(BAD) + 2} record(s) skipped" in page and "<script>" not in page
        assert "heatmap of cell movement-sst" in proc.stderr, "the corrupt mask file is named, not fatal"


def test_plot_skips_bad_records_and_a_corrupt_mask_file(folder):
    proc = bench("plot", str(folder))
    skipped_all(proc, folder)
    assert "pareto-sst2.png" in proc.stdout
    assert f"corrupt mask file {folder / 'masks' / 'movement-sst2-0.9-0.safetensors'}" in proc.stderr
    proc = bench("plot", str(folder), "--cell", "movement")
    refused(proc, "corrupt mask file")


def test_bench_run_refuses_a_hand_edited_record_naming_the_field_and_bench_forget(tmp_path):
    from bench.config.matrix import expand
    from tests.test_bad_input import matrix_for

    matrix = matrix_for(tmp_path, "/no/such/model")
    cell = expand(matrix)[0]
    rec = {**new_record("dense", 0.0, 0, np.full(4, 100.0)), "id": cell.id, "cell": cell.to_dict()}
    records.write_record(matrix.output, edited(rec, "metrics.accuracy", "high"))
    config = tmp_path / "m.yaml"
    config.write_text("methods: [dense, magnitude]\ntasks: [sst2]\nsparsities: [0.5]\nmodel: /no/such/model\n"
                      "budget: {epochs: 1, batch_size: 16}\n"
                      "splits: {'*': {train_split: 'train[:48]', eval_split: 'validation[:24]'}}\n")
    proc = bench("run", "--config", str(config), "--output", str(matrix.output))
    refused(proc, f"corrupt record {ResultsFolder(matrix.output).record(cell.id)}",
            "'metrics.accuracy' must be a finite number", f"bench forget {matrix.output} {cell.id[:12]}")


@needs_glue
def test_a_disk_that_fills_inside_a_cell_stops_the_matrix_without_failing_the_cell(tmp_path, monkeypatch, capsys):
    """A full disk is not the cell's fault: the matrix stops with one line, and the cell is left to run again on
    rerun (not recorded as failed, which would need --retry-failed)."""
    import errno

    from transformers import BertModel

    from bench.cli.app import main
    from bench.run.queue import CellQueue
    from tests.conftest import tiny_config
    from tests.test_bad_input import VOCAB, save_model

    model = save_model(tmp_path / "tiny", BertModel(tiny_config(vocab_size=len(VOCAB))))
    out = tmp_path / "out"

    def full(cell, run):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "models" / "x" / "model.safetensors"))

    monkeypatch.setattr("bench.run.cell_run.train_and_evaluate", full)
    code = main(["run", "--methods", "dense", "--tasks", "sst2", "--sparsities", "0.5", "--model", model,
                 "--train-split", "train[:16]", "--eval-split", "validation[:8]", "--tracking-uri", "none",
                 "--output", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith(f"bench: error: disk full ({out / 'models' / 'x'}"), err
    (row,) = CellQueue(f"sqlite:///{out / 'bench.db'}").cells()
    assert row.state == "pending" and not records.record_files(out), "not failed: the same command reruns it"
