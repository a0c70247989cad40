"""ResultsFolder: every path of a results folder, spelled once, and the same layout as before (old folders)."""

from __future__ import annotations

import re
from pathlib import Path

from bench.results.folder import ResultsFolder

ID = "ab" * 32


def test_every_path_keeps_the_layout_old_results_folders_have(tmp_path):
    folder = ResultsFolder(tmp_path / "res")
    root = tmp_path / "res"
    assert folder.cells == root / "cells" and folder.record(ID) == root / "cells" / f"{ID}.json"
    assert folder.model(ID) == root / "models" / ID
    assert folder.masks(ID) == root / "masks" / f"{ID}.safetensors"
    assert folder.predictions(ID) == root / "predictions" / f"{ID}.npz"
    assert folder.progress_log == root / "logs" / "progress.log"
    assert folder.leaderboard_md == root / "leaderboard.md" and folder.leaderboard_csv == root / "leaderboard.csv"
    assert folder.plots == root / "plots" and folder.report_html == root / "report.html"


def test_default_stores_are_absolute_sqlite_urls_in_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = ResultsFolder("res")
    assert folder.storage_url == f"sqlite:///{tmp_path / 'res' / 'bench.db'}"
    assert folder.tracking_uri == f"sqlite:///{tmp_path / 'res' / 'mlflow.db'}"


def test_the_matrix_default_storage_is_the_folder_s(tmp_path):
    from bench.config.matrix import Matrix

    matrix = Matrix(methods=["dense"], tasks=["sst2"], sparsities=[0.0], output=tmp_path / "res")
    assert matrix.storage_url == ResultsFolder(tmp_path / "res").storage_url


def test_artifact_ids_finds_models_masks_and_predictions_without_records(tmp_path):
    folder = ResultsFolder(tmp_path)
    folder.model("m" * 64).mkdir(parents=True)
    folder.masks_dir.mkdir()
    folder.masks("k" * 64).write_bytes(b"")
    folder.predictions_dir.mkdir()
    folder.predictions("p" * 64).write_bytes(b"")
    assert folder.artifact_ids() == {"m" * 64, "k" * 64, "p" * 64}


def test_no_other_module_spells_the_folder_layout():
    """The folder's paths are built in bench/results/folder.py only (a second spelling would drift)."""
    names = ("cells", "models", "masks", "predictions", "logs", "plots", "bench.db", "mlflow.db", "report.html",
             "leaderboard.md", "leaderboard.csv", "progress.log")  # fmt: skip
    alternatives = "|".join(map(re.escape, names))
    pattern = re.compile(r"""(/ *|Path\([^)]*, *)["'](""" + alternatives + r""")["']""")
    root = Path(__file__).parent.parent / "bench"
    found = [f"{p.name}: {m.group(0)}" for p in root.rglob("*.py") if p.name != "folder.py"
             for m in pattern.finditer(p.read_text())]  # fmt: skip
    assert not found, found


def test_export_does_not_import_the_runner_or_the_training_run():
    import ast

    source = (Path(__file__).parent.parent / "bench" / "deploy" / "export.py").read_text()
    imported = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"bench.run.runner", "bench.run.execute"}, imported
