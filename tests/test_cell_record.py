"""CellRecord: the record's fields declared once, strict writing, tolerant reading, old records still load, and
one status vocabulary shared with the queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.results import records
from bench.results.cell_record import FIELDS, FINISHED, STATUSES, CellRecord
from bench.results.folder import ResultsFolder
from bench.run.queue import TERMINAL, CellQueue

RESULTS = Path(__file__).parent.parent / "results"
COMMITTED = sorted(p for p in RESULTS.rglob("*.json") if p.parent.name == "cells")
CELL = {"model": "m", "method": "magnitude", "task": {"name": "sst2"}, "budget": {}, "sparsity": 0.5, "seed": 0}


def finished(cell_id: str = "a" * 64, **extra) -> CellRecord:
    sparsity = {"encoder_sparsity": 0.5, "remaining_params": 1.0, "total_params": 2.0}
    return CellRecord(id=cell_id, status=FINISHED, cell=CELL, primary_metric="accuracy", metrics={"accuracy": 80.0},
                      sparsity=sparsity, **extra)  # fmt: skip


def test_every_committed_record_loads_as_a_cell_record_and_writes_back_the_same_bytes(tmp_path):
    assert len(COMMITTED) > 100, "the committed results folders hold records"
    for path in COMMITTED:
        record = records.load_record_file(path)
        assert isinstance(record, CellRecord) and record.status in STATUSES
        assert not record.extra, f"{path} has keys CellRecord does not declare: {sorted(record.extra)}"
        written = records.write_record(tmp_path, record)
        assert written.read_bytes().rstrip(b"\n") == path.read_bytes().rstrip(b"\n"), f"{path} changed on rewrite"


def test_every_committed_results_folder_reads_without_a_skipped_record(capsys):
    for folder in sorted({p.parent.parent for p in COMMITTED}):
        skipped: list = []
        found = records.read_records(folder, skipped=skipped)
        assert not skipped and len(found) == len(list(ResultsFolder(folder).cells.glob("*.json")))
    assert "skipped" not in capsys.readouterr().err


def test_writing_refuses_a_field_that_is_not_declared():
    with pytest.raises(TypeError, match="accurcy"):
        CellRecord(id="x", status=FINISHED, cell=CELL, accurcy=1.0)


def test_unset_fields_are_left_out_of_the_json_and_none_is_kept():
    record = CellRecord(id="x", status="failed", cell=CELL, error="boom", git_commit=None)
    assert record.to_dict() == {"id": "x", "status": "failed", "cell": CELL, "error": "boom", "git_commit": None}


def test_a_foreign_key_is_kept_on_reading_and_writing(tmp_path):
    record = finished(extra={"written_by": "a newer version"})
    path = records.write_record(tmp_path, record)
    again = records.load_record_file(path)
    assert again.extra == {"written_by": "a newer version"} and again == record
    assert again["written_by"] == "a newer version" and again.metrics == {"accuracy": 80.0}


def test_the_record_reads_as_a_mapping_of_its_json_keys():
    record = finished()
    assert record["metrics"]["accuracy"] == 80.0 and record.get("search") is None and "search" not in record
    assert dict(record) == record.to_dict() and record == record.to_dict()
    with pytest.raises(KeyError):
        record["no_such_field"]


def test_a_mistyped_field_is_skipped_with_a_warning_naming_file_and_field(tmp_path, capsys):
    records.write_record(tmp_path, finished("a" * 64))
    bad = finished("b" * 64).to_dict()
    bad["sparsity"]["encoder_sparsity"] = "half"
    path = records.write_record(tmp_path, bad)
    found = records.read_records(tmp_path)
    assert [r.id for r in found] == ["a" * 64]
    err = capsys.readouterr().err
    assert f"skipped record {path}: field 'sparsity.encoder_sparsity' must be a finite number" in err
    assert f"1 record of {tmp_path} skipped" in err


def test_the_schema_is_built_from_the_declared_fields():
    kinds = {name: f.metadata["kind"] for name, f in FIELDS.items()}
    assert {"id", "status", "cell", "metrics", "sparsity", "verdicts", "history"} <= set(kinds)
    assert records.REQUIRED_KEYS == ("id", "status", "cell")


def test_the_queue_s_done_states_are_the_record_statuses_and_old_queues_are_renamed(tmp_path):
    assert TERMINAL == STATUSES
    url = f"sqlite:///{tmp_path / 'q.db'}"
    queue = CellQueue(url)
    queue.add_matrix("m", [{"id": "c", "cell": {}, "options": {}}])
    assert queue.claim("c", "w") and queue.finish("c", "w", finished("c"))
    assert queue.row("c").state == FINISHED and isinstance(queue.records()[0], CellRecord)
    with queue.engine.begin() as conn:  # a queue written before the shared vocabulary
        conn.exec_driver_sql("UPDATE bench_cells SET state = 'finalized'")
    assert CellQueue(url).row("c").state == FINISHED


def test_the_committed_regression_baseline_and_paper_references_still_load():
    from bench.results import reference, regress_baseline

    baseline = regress_baseline.load_baseline(RESULTS / "baselines" / "regression.json")
    assert baseline is not None and baseline["cells"] and baseline["tolerances"]
    assert len(reference.load(RESULTS / "reference")) > 0
