"""``bench forget``: the one way to make a finished or failed cell run again (issue 14, section 3).

Deleting a record file is not enough (the queue in ``bench.db`` writes it back and the cell is skipped), which is
what the messages of corrupt records and ``bench export`` used to advise; ``bench forget`` removes the record, the
queue row, the Optuna study and the saved model, masks and predictions.
"""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
import pytest

from bench.results import records
from bench.results.folder import ResultsFolder
from bench.run.forget import forget
from bench.run.queue import CellQueue
from tests.test_bad_input import needs_glue

A, B = "ab" + "0" * 62, "ab" + "1" * 62


def cell(method: str) -> dict:
    return {"model": "m", "method": method, "task": {"name": "sst2"}, "budget": {}, "sparsity": 0.5, "seed": 0}


@pytest.fixture
def folder(tmp_path):
    """Two finished cells, each with a record, a queue row, a study, a saved model, masks and predictions."""
    out = tmp_path / "res"
    url = f"sqlite:///{out / 'bench.db'}"
    ResultsFolder(out).cells.mkdir(parents=True)
    queue = CellQueue(url)
    queue.add_matrix("m" * 64, [{"id": i, "cell": cell(m)} for i, m in ((A, "magnitude"), (B, "movement"))])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for cell_id, method in ((A, "magnitude"), (B, "movement")):
        rec = {"id": cell_id, "status": "failed", "cell": cell(method), "error": "boom"}
        records.write_record(out, rec)
        queue.adopt(cell_id, rec)
        optuna.create_study(study_name=cell_id, storage=url)
        (out / "models" / cell_id).mkdir(parents=True)
        (out / "models" / cell_id / "model.safetensors").write_bytes(b"weights")
        for sub, suffix in (("masks", ".safetensors"), ("predictions", ".npz")):
            (out / sub).mkdir(exist_ok=True)
            (out / sub / f"{cell_id}{suffix}").write_bytes(b"x")
    return out, url


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=120)


def left(out, url, cell_id) -> set[str]:
    found = {what for what, path in (("record", out / "cells" / f"{cell_id}.json"), ("model", out / "models" / cell_id),
                                     ("masks", out / "masks" / f"{cell_id}.safetensors"),
                                     ("predictions", out / "predictions" / f"{cell_id}.npz")) if path.exists()}
    if CellQueue(url).row(cell_id) is not None:
        found.add("queue row")
    if cell_id in optuna.get_all_study_names(url):
        found.add("study")
    return found  # fmt: skip


EVERYTHING = {"record", "model", "masks", "predictions", "queue row", "study"}


def test_forget_removes_record_queue_row_study_model_masks_and_predictions(folder):
    out, url = folder
    proc = bench("forget", A[:12], "--results", str(out))  # the deprecated spelling still works, and says so
    assert proc.returncode == 0, proc.stderr
    assert "--results is deprecated; write the folder first: bench forget RESULTS CELL" in proc.stderr
    assert f"forgot cell {A[:12]} (magnitude/sst2 @ 0.5 seed 0): removed queue row, study, record, model, masks, " \
           "predictions" in proc.stdout  # fmt: skip
    assert left(out, url, A) == set()
    assert left(out, url, B) == EVERYTHING, "the other cell is untouched"


@pytest.mark.parametrize(("ref", "words"), [("zz", "no cell with id starting 'zz'"),
                                           ("ab", "2 cells with id starting")])  # fmt: skip
def test_forget_refuses_an_unknown_or_ambiguous_id_and_removes_nothing(folder, ref, words):
    out, url = folder
    proc = bench("forget", str(out), ref)
    assert proc.returncode == 2 and proc.stderr.startswith("bench: error: ") and words in proc.stderr, proc.stderr
    assert left(out, url, A) == left(out, url, B) == EVERYTHING


def test_forget_refuses_a_cell_a_live_worker_holds(folder):
    out, url = folder
    from bench.run.queue import CELLS, CLAIMED

    queue = CellQueue(url, lease_seconds=600)
    with queue.engine.begin() as conn:  # another host's worker holds A (a rerun of it), its lease live
        conn.execute(CELLS.update().where(CELLS.c.cell_id == A).values(state=CLAIMED, worker="elsewhere:1:abc",
                                                                        lease_until=time.time() + 600))  # fmt: skip
    with pytest.raises(Exception, match="being run by a live worker"):
        forget(out, [A, B], log=lambda line: None)
    assert left(out, url, A) == left(out, url, B) == EVERYTHING, "nothing removed"


def test_forget_takes_a_corrupt_record_and_a_comma_list(folder):
    out, url = folder
    ResultsFolder(out).record(A).write_text("{not json")
    proc = bench("forget", str(out), f"{A[:10]},{B[:10]}")
    assert proc.returncode == 0, proc.stderr
    assert left(out, url, A) == left(out, url, B) == set()


@needs_glue
def test_a_forgotten_cell_runs_again_and_a_deleted_record_alone_does_not(tmp_path, monkeypatch):
    from transformers import BertModel

    from bench.config.matrix import Matrix
    from bench.run.runner import run_matrix
    from tests.conftest import tiny_config
    from tests.test_bad_input import VOCAB, save_model

    model = save_model(tmp_path / "tiny", BertModel(tiny_config(vocab_size=len(VOCAB))))
    matrix = Matrix(methods=["dense"], tasks=["sst2"], sparsities=[0.5], model=model, output=tmp_path / "out",
                    tracking_uri="none", splits={"*": {"train_split": "train[:16]", "eval_split": "validation[:8]"}},
                    budget={"epochs": 1, "batch_size": 8})  # fmt: skip
    runs = []

    def fake_training(cell, run):
        runs.append(time.time())
        return {"metrics": {"accuracy": 80.0}, "primary_metric": "accuracy", "greater_is_better": True,
                "sparsity": {"encoder_sparsity": 0.0, "remaining_params": 10, "total_params": 10}, "method_info": {}}

    monkeypatch.setattr("bench.run.cell_run.train_and_evaluate", fake_training)
    (rec,) = run_matrix(matrix, log=lambda line: None)
    run_matrix(matrix, log=lambda line: None)
    assert len(runs) == 1, "a finished cell is skipped"
    ResultsFolder(matrix.output).record(rec["id"]).unlink()
    run_matrix(matrix, log=lambda line: None)
    assert len(runs) == 1 and ResultsFolder(matrix.output).record(rec["id"]).exists(), \
        "deleting the record alone does not rerun the cell: the queue writes it back"  # fmt: skip
    forget(matrix.output, [rec["id"][:12]], log=lambda line: None)
    run_matrix(matrix, log=lambda line: None)
    assert len(runs) == 2 and ResultsFolder(matrix.output).record(rec["id"]).exists(), "forgotten: it ran again"
