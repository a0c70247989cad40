"""Exports and reports you can open safely (issue 14, section 4).

* :func:`bench.deploy.export.load_export` (:mod:`bench.deploy.export_format`) builds the compacted model class in this
  process and never imports code from the export folder; exports hold no code.
* ``bench export --to`` refuses a folder inside the results folder and a non-empty folder (``--overwrite`` replaces
  an earlier export, nothing else).
* ``report.html`` and ``--format html`` escape every string taken from records; plot file names cannot leave
  ``plots/``.
* Records, masks and predictions get the mode the process umask gives new files.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertForSequenceClassification

from bench.config.matrix import Matrix, expand
from bench.core.errors import BenchError
from bench.core.task import Evaluation
from bench.deploy.export import DENSE_FILE, SPARSE_FILE, load_export, write_export
from bench.results import records
from bench.results.folder import ResultsFolder
from bench.results.predictions import save_predictions
from bench.results.saved_masks import save_masks
from tests.conftest import tiny_config
from tests.test_bad_input import VOCAB, save_model, snapshot
from tests.test_export import inputs, pruned_bert
from tests.test_significance_board import correct, new_record, write


def bench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)  # fmt: skip


def refused(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("bench: error: "), proc.stderr
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"


# ---- load_export runs no code from the folder ------------------------------------------------------------------------
def test_exports_hold_no_code_and_load_in_process(tmp_path):
    model = pruned_bert()
    write_export(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert not list(tmp_path.glob("*.py")) and "auto_map" not in config
    assert config["compact_base"] == "BertForSequenceClassification" and config["compact_shapes"]
    reference = model(**inputs()).logits
    for loaded in (load_export(tmp_path), load_export(tmp_path, sparse=False)):
        assert type(loaded).__name__ == "CompactBertForSequenceClassification"
        assert type(loaded).__module__ == "bench.deploy.export_format", "the class comes from the installed package"
        torch.testing.assert_close(loaded(**inputs()).logits, reference, atol=1e-5, rtol=1e-5)


EVIL = '''
import pathlib
pathlib.Path({marker!r}).write_text("code from the export folder ran")
raise SystemExit("code from the export folder ran")
'''


def test_load_export_never_imports_code_from_the_folder(tmp_path):
    """Someone who can write to an export folder plants code where earlier versions (and
    ``from_pretrained(..., trust_remote_code=True)``) would import it; loading must not run it."""
    folder, marker = tmp_path / "export", tmp_path / "ran.txt"
    write_export(pruned_bert(), folder)
    (folder / "modeling_compact.py").write_text(EVIL.format(marker=str(marker)))
    (folder / "configuration_evil.py").write_text(EVIL.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                          "AutoModelForSequenceClassification": "modeling_compact.CompactBertForSequenceClassification"}
    (folder / "config.json").write_text(json.dumps(config))
    for sparse in (True, False):
        model = load_export(folder, sparse=sparse)
        assert type(model).__module__ == "bench.deploy.export_format"
    assert not marker.exists(), "code from the export folder ran"


def test_an_export_of_an_earlier_version_still_loads_without_its_code(tmp_path):
    """Earlier exports name their class only in ``architectures`` and ``auto_map`` (no ``compact_base``)."""
    write_export(pruned_bert(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["compact_base"]
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_compact.CompactBertForSequenceClassification"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "modeling_compact.py").write_text("raise SystemExit('imported')\n")
    assert type(load_export(tmp_path)).__name__ == "CompactBertForSequenceClassification"


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"compact_base": "GPT2Model"}, "unknown base model class 'GPT2Model'"),
        ({"compact_base": "os.system"}, "unknown base model class 'os.system'"),
        ({"compact_base": "RobertaForSequenceClassification"}, "does not match its base class"),
        ({"compact_shapes": {"bert.pooler": [8, 8]}}, "not a Linear layer"),
        ({"compact_shapes": {"bert.encoder.layer.0.attention.self.query": [10**9, 32]}}, "at most the layer's"),
    ],
)
def test_load_export_refuses_a_config_that_names_another_class_or_impossible_shapes(tmp_path, edit, words):
    write_export(pruned_bert(), tmp_path)
    config = {**json.loads((tmp_path / "config.json").read_text()), **edit}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BenchError, match=words):
        load_export(tmp_path)


# ---- bench export --to --------------------------------------------------------------------------------------------
@pytest.fixture
def results(tmp_path) -> tuple[Path, str]:
    """A results folder with one finished cell and its saved (tiny) model: (folder, cell id)."""
    classifier = lambda: BertForSequenceClassification(tiny_config(vocab_size=len(VOCAB), num_labels=2))  # noqa: E731
    base = save_model(tmp_path / "base", classifier())
    matrix = Matrix(methods=["dense"], tasks=["sst2"], sparsities=[0.5], model=base, output=tmp_path / "res",
                    splits={"*": {"train_split": "train[:16]", "eval_split": "validation[:8]"}})  # fmt: skip
    cell = expand(matrix)[0]
    values = correct(0.8, 0)
    write(matrix.output, {**new_record("dense", 0.0, 0, values), "id": cell.id, "cell": cell.to_dict()}, values)
    torch.manual_seed(0)
    save_model(matrix.output / "models" / cell.id, classifier())
    return matrix.output, cell.id


@pytest.mark.parametrize("where", ["models/{id}", "cells", ".", "models/{id}/export"])
def test_export_into_the_results_folder_is_refused_and_changes_nothing(results, where):
    out, cell_id = results
    before = snapshot(out)
    to = out / where.format(id=cell_id)
    proc = bench("export", str(out), cell_id[:12], "--to", str(to), "--no-check")
    refused(proc, f"--to {to} is inside the results folder {out}", "choose a folder outside it")
    assert snapshot(out) == before, "the saved model and the records are untouched"


def test_export_refuses_a_non_empty_folder_and_overwrite_replaces_only_an_earlier_export(results, tmp_path):
    out, cell_id = results
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        proc = bench("export", str(out), cell_id[:12], "--to", str(notes), "--no-check", *extra)
        refused(proc, f"--to {notes}", "not empty" if not extra else "not a bench export")
    assert [p.name for p in notes.iterdir()] == ["todo.txt"] and (notes / "todo.txt").read_text() == "mine"

    export = tmp_path / "export"
    proc = bench("export", str(out), cell_id[:12], "--to", str(export), "--no-check")
    assert proc.returncode == 0, proc.stderr
    assert "load_export" in proc.stdout and "trust_remote_code" not in proc.stdout
    assert (export / SPARSE_FILE).is_file() and (export / DENSE_FILE).is_file() and not list(export.glob("*.py"))
    proc = bench("export", str(out), cell_id[:12], "--to", str(export), "--no-check")
    refused(proc, "is not empty", "--overwrite")
    (export / "modeling_compact.py").write_text("raise SystemExit('stale')\n")
    proc = bench("export", str(out), cell_id[:12], "--to", str(export), "--no-check", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not (export / "modeling_compact.py").exists(), "an earlier export is replaced whole"
    assert type(load_export(export)).__name__ == "CompactBertForSequenceClassification"


# ---- HTML escapes what records say ---------------------------------------------------------------------------------
PAYLOAD = "<script>alert('x')</script>"
IMG = "<img src=x onerror=alert(1)>"


@pytest.fixture
def marked_up(tmp_path) -> Path:
    """Hand-edited records whose names, metric, baseline description, error and id carry markup."""
    out = tmp_path / "res"
    cells = [("dense", 0.0, 0.9, "sst2"), (PAYLOAD, 0.9, 0.8, "sst2"), ("movement", 0.9, 0.7, "sst2"),
             ("dense", 0.0, 0.9, "mnli"), ("movement", 0.9, 0.6, "mnli")]
    for index, (method, sparsity, rate, task) in enumerate(cells):
        values = correct(rate, 0, index)
        rec = new_record(method, sparsity, 0, values, task=task)
        rec["id"] = f"cell-{index}"
        rec["baseline"] = {**rec["baseline"], "description": PAYLOAD}
        if task == "mnli":  # a metric named with markup
            rec["primary_metric"], rec["metrics"] = PAYLOAD, {PAYLOAD: rec["metrics"]["accuracy"]}
            rec["metric_intervals"] = {PAYLOAD: rec["metric_intervals"]["accuracy"]}
            rec["baseline"] = None
        write(out, rec, values, predictions=task == "sst2")
    failed = {**new_record("magnitude", 0.9, 0, correct(0.5, 0)), "id": IMG + "0" * 20, "status": "failed",
              "error": PAYLOAD, "traceback": PAYLOAD}  # fmt: skip
    records.write_record(out, failed)
    return out


def test_report_and_html_board_escape_every_string_from_records(marked_up):
    proc = bench("report", str(marked_up))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    page = (marked_up / "report.html").read_text()
    assert PAYLOAD not in page and "<img src=x" not in page and "alert('x')</script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page and "&lt;img src=x o" in page
    proc = bench("leaderboard", str(marked_up), "--format", "html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert PAYLOAD not in proc.stdout and "&lt;script&gt;" in proc.stdout


def test_plot_file_names_stay_inside_the_plots_folder(tmp_path):
    """Method and task names from records name the heatmap and Pareto files; a ``/`` or ``..`` in them must not
    write elsewhere (or fail)."""
    out = tmp_path / "deep" / "res"
    values = correct(0.8, 0)
    for method, sparsity, task in (("dense", 0.0, "sst2"), ("../../escaped", 0.9, "sst2"), ("dense", 0.0, PAYLOAD),
                                   ("movement", 0.9, PAYLOAD)):  # fmt: skip
        rec = new_record(method, sparsity, 0, values, task=task)
        rec["id"] = f"cell-{sparsity}-{task == 'sst2'}"
        write(out, rec, values)
    save_masks(pruned_bert(), ResultsFolder(out).masks("cell-0.9-True"))
    before = {p for p in tmp_path.rglob("*")}
    proc = bench("plot", str(out))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    made = {p for p in tmp_path.rglob("*")} - before
    assert made and all(p.parent == out / "plots" or p == out / "plots" for p in made), made
    assert any(p.name.startswith("heatmap-") and "escaped" in p.name for p in made)
    assert any(p.name.startswith("pareto-") and "script" in p.name for p in made)


# ---- the umask ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_records_masks_and_predictions_get_the_umask_mode(tmp_path, umask):
    previous = os.umask(umask)
    try:
        rec = records.write_record(tmp_path, {"id": "a" * 64, "status": "failed", "cell": {}})
        masks = save_masks(pruned_bert(), ResultsFolder(tmp_path).masks("a" * 64))
        evaluation = Evaluation({"accuracy": 50.0}, {"accuracy": np.full(4, 50.0)})
        predictions = save_predictions(ResultsFolder(tmp_path).predictions("a" * 64), evaluation, None)
    finally:
        os.umask(previous)
    for path in (rec, masks, predictions):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, (path, oct(path.stat().st_mode))
