"""``bench export CELL_ID --to DIR``: the finalized model of a cell as a deployable export, with a parity check.

:func:`export_cell` finds the cell's record and saved model, writes the export folder (compacted model, sparse
weights file, tokenizer; the files and how they load: :mod:`bench.deploy.export_format`) and ``export.json``.
``--to`` must be a new or empty folder outside the results folder (``--overwrite`` replaces an earlier export).
Parity: :func:`export_cell` reloads the sparse file and evaluates it on the cell's eval split; every metric must
match the cell record within :data:`PARITY_TOLERANCE`. Load an export with :func:`load_export`.
With ``--onnx`` (the optional extra ``prune-bench[onnx]``), the export also gets ``model.onnx``, the compacted model
as ONNX (:func:`write_onnx`), whose ONNX Runtime outputs must match the reloaded export's within 1e-4 (always
checked: it takes a few forward passes).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.deploy.compaction import CompactionReport
from bench.deploy.export_format import (
    DENSE_FILE,
    EXPORT_INFO,
    ONNX_FILE,
    SPARSE_FILE,
    dense_bytes,
    is_export,
    load_export,
    size_report,
    write_export,
)
from bench.results.cell_record import CellRecord

PARITY_TOLERANCE = 1e-4  # absolute, in each metric's units (points of % for accuracy): record vs reloaded export


def check_target(to: Path, results: Path, overwrite: bool = False) -> None:
    """``to`` may receive an export: it is outside the results folder (an export into ``RESULTS/models/ID``
    destroys the saved model, one into ``RESULTS/cells`` breaks every reading command), and new, empty, or (with
    ``overwrite``) an earlier export.

    Raises:
        BenchError: naming ``to`` and what to do.
    """
    from bench.core.paths import writable_folder

    to, results = Path(to), Path(results)
    target, home = to.expanduser().resolve(), results.expanduser().resolve()
    if target == home or home in target.parents:
        raise BenchError(f"--to {to} is inside the results folder {results}: an export there overwrites saved "
                         "models or records; choose a folder outside it")  # fmt: skip
    if target in home.parents:
        raise BenchError(f"--to {to} holds the results folder {results}; choose a new folder for the export")
    if to.is_symlink() and not to.exists():
        raise BenchError(f"--to {to} is a dangling symbolic link (to {to.readlink()})")
    if to.exists() and not to.is_dir():
        raise BenchError(f"--to {to} is a file, not a folder; choose a new or empty folder")
    if to.is_dir() and any(to.iterdir()):
        if not overwrite:
            raise BenchError(f"--to {to} is not empty; choose a new or empty folder, or give --overwrite to replace "
                             "an earlier export there")  # fmt: skip
        if not is_export(to):
            raise BenchError(f"--to {to} holds files that are not a bench export (no export.json); --overwrite only "
                             "replaces an earlier export: choose a new or empty folder")  # fmt: skip
    writable_folder(to, "export folder")


def export_cell(results: Path, cell_ref: str, to: Path, check: bool = True, log=print, overwrite: bool = False,
                onnx: bool = False) -> dict[str, Any]:  # fmt: skip
    """Export the finalized model of cell ``cell_ref`` (an id prefix) of ``results`` to ``to``; with ``check``,
    reload the sparse file, evaluate it on the cell's eval split and compare with the record (``parity``). ``to``
    must be new or empty (with ``overwrite``: an earlier export, which is replaced) and outside ``results``.

    Returns:
        What ``export.json`` holds: ``cell``, ``compaction``, ``dense_bytes``, ``compact_bytes``, ``sparse_bytes``,
        ``file_ratio``, ``encoder_bytes``, ``encoder_dense_bytes``, ``encoder_ratio``, ``parity`` (``{"passed",
        "tolerance", "metrics": {name: {record, export, diff}}}``) when checked, and ``onnx`` (:func:`write_onnx`)
        with ``onnx``.

    Raises:
        BenchError: ``onnx`` without the extra installed (before anything is written), no results in ``results``, a
            ``to`` that :func:`check_target` refuses, no unique cell with that id prefix, a cell that did not finish,
            or a cell without a saved model (run with ``--save-models``).
    """
    from bench.config.resolve import load_tokenizer, task_of
    from bench.results import records
    from bench.results.folder import ResultsFolder

    if onnx:
        from bench.deploy.onnx_runtime import missing

        if (reason := missing()) is not None:
            raise BenchError(f"--onnx needs the optional extra: {reason}")
    records.require_results(results)
    check_target(to, results, overwrite)
    record = records.find_cell(records.read_records(results), cell_ref)
    label = f"cell {record.id[:12]} ({record.cell['method']} @ {record.cell['sparsity']})"
    if not record.finished:
        raise BenchError(f"{label} did not finish (status {record.status}): nothing to export")
    source = ResultsFolder(results).model(record.id)
    if not source.is_dir():
        raise BenchError(
            f"{label} has no saved model at {source}: remove the cell with 'bench forget {results} "
            f"{record.id[:12]}' (its record, queue row, study, masks and predictions), then run its matrix again "
            "with --save-models; or run the matrix with --save-models into a new --output"
        )
    from bench.config.cell import Cell

    cell = Cell.from_dict(record.cell)
    task = task_of(cell)
    model = task.build_model(str(source)).eval()
    tokenizer = load_tokenizer(str(source))
    if Path(to).is_dir() and any(Path(to).iterdir()):  # an earlier export (check_target): replace it whole
        shutil.rmtree(to)
    info = {"cell": record.id, "dense_bytes": dense_bytes(model), **write_export(model, to, tokenizer)}
    info["file_ratio"] = info["sparse_bytes"] / info["dense_bytes"]
    if check:
        info["parity"] = parity(record, evaluate_export(to, cell, record, task))
    if onnx:
        info["onnx"] = write_onnx(Path(to))
    write_info(Path(to), info)
    from bench.deploy.model_card import model_card

    (Path(to) / "README.md").write_text(model_card(record, task, info), encoding="utf-8")
    return info


def evaluate_export(folder: Path, cell, record: CellRecord, task) -> dict[str, float]:
    """The task's metrics of the export in ``folder`` (sparse file) on the cell's eval split, evaluated with the
    cell's final featurization and eval batch size."""
    from dataclasses import replace

    from transformers import DataCollatorWithPadding, Trainer

    from bench.config.budget import training_arguments
    from bench.config.resolve import load_tokenizer
    from bench.core.task import Featurization

    budget = replace(cell.budget, **(record.final_budget or {}))
    feats = Featurization(budget.max_length, budget.doc_stride)
    tokenizer = load_tokenizer(str(folder))
    eval_examples = task.eval_examples()
    with tempfile.TemporaryDirectory(prefix="bench-parity-") as workdir:
        trainer = Trainer(
            model=load_export(folder),
            args=training_arguments(budget, Path(workdir), cell.seed),
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        return task.evaluate(trainer, eval_examples, tokenizer, feats)


def write_onnx(folder: Path) -> dict[str, Any]:
    """Write ``model.onnx``, the export in ``folder`` (as :func:`load_export` loads it) as ONNX, and check that
    ONNX Runtime computes what the export computes: on a seeded batch of 2 × 16 tokens with a padded row, and on
    1 × 128 tokens (the axes are dynamic), every output within 1e-4 (absolute).

    Returns:
        ``{"file": "model.onnx", "bytes", "opset", "exporter", "runtime", "parity": {"max_abs_diff", "tolerance",
        "passed"}}``.
    """
    import onnxruntime

    from bench.deploy import onnx_runtime as rt

    model = load_export(folder)
    path = Path(folder) / ONNX_FILE
    written = rt.export_onnx(model, path)
    session = rt.open_session(path)
    diff = max(rt.max_abs_diff(model, session), rt.max_abs_diff(model, session, rt.sample_inputs(model, 1, 128)))
    return {"file": ONNX_FILE, "bytes": written["bytes"], "opset": written["opset"], "exporter": rt.EXPORTER,
            "runtime": f"onnxruntime {onnxruntime.__version__}",
            "parity": {"max_abs_diff": diff, "tolerance": rt.PARITY_TOLERANCE, "passed": diff <= rt.PARITY_TOLERANCE},
            }  # fmt: skip


def parity(record: CellRecord, metrics: dict[str, float]) -> dict[str, Any]:
    """Every numeric metric of ``record`` against the export's ``metrics``: passed when all differ by at most
    :data:`PARITY_TOLERANCE` (absolute, in the metric's units)."""
    rows = {
        name: {"record": value, "export": metrics.get(name), "diff": abs(metrics[name] - value) if name in metrics
               else None}
        for name, value in record.metrics.items()
        if isinstance(value, (int, float))
    }  # fmt: skip
    passed = all(row["diff"] is not None and row["diff"] <= PARITY_TOLERANCE for row in rows.values())
    return {"passed": passed, "tolerance": PARITY_TOLERANCE, "metrics": rows}


def summary_lines(info: dict[str, Any], folder: Path) -> list[str]:
    """What ``bench export`` prints: structure removed, file sizes, parity, how to load."""
    c = info["compaction"]
    mb = lambda n: f"{n / 1e6:.1f} MB"  # noqa: E731
    lines = [
        f"exported cell {info['cell'][:12]} to {folder}",
        f"  structure: {c['heads_removed']}/{c['heads_total']} heads and {c['ffn_units_removed']}/"
        f"{c['ffn_units_total']} FFN units removed; {c['structured_fraction']:.1%} of the pruned weights became "
        "structure",
        f"  files: {DENSE_FILE} {mb(info['compact_bytes'])} (compacted), {SPARSE_FILE} {mb(info['sparse_bytes'])}"
        f" = {info['file_ratio']:.1%} of the dense {mb(info['dense_bytes'])}",
    ]
    if "encoder_bytes" in info:
        lines.append(f"  encoder weights (Q, K, V, attention output, FFN) in {SPARSE_FILE}: "
                     f"{mb(info['encoder_bytes'])} = {info['encoder_ratio']:.1%} of their dense "
                     f"{mb(info['encoder_dense_bytes'])}; the rest of the file (embeddings, biases, LayerNorm, "
                     "head) is stored dense")  # fmt: skip
    if "onnx" in info:
        o, ok = info["onnx"], info["onnx"]["parity"]["passed"]
        lines.append(f"  onnx: {o['file']} {mb(o['bytes'])} (opset {o['opset']}); ONNX Runtime against the export: "
                     f"max |diff| {o['parity']['max_abs_diff']:.2g} (tolerance {o['parity']['tolerance']:g}): "
                     f"{'ok' if ok else 'MISMATCH'}")  # fmt: skip
    for name, row in info.get("parity", {}).get("metrics", {}).items():
        verdict = "ok" if row["diff"] is not None and row["diff"] <= PARITY_TOLERANCE else "MISMATCH"
        lines.append(f"  parity {name}: record {row['record']:.4f}, export {row['export']:.4f} "
                     f"(|diff| {row['diff']:.2g}, tolerance {PARITY_TOLERANCE:g}): {verdict}")  # fmt: skip
    lines.append(f"  load: bench.deploy.export.load_export({str(folder)!r}) (sparse file; sparse=False: "
                 f"{DENSE_FILE}); the "
                 "model class is built from the installed prune-bench, no code is run from the folder")  # fmt: skip
    return lines


def write_info(folder: Path, info: dict[str, Any]) -> None:
    (folder / EXPORT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True))


# load_export, write_export, size_report and is_export live in bench.deploy.export_format; they stay importable from
# here, the module users know (bench.deploy.export.load_export is what bench export prints).
__all__ = ["CompactionReport", "dense_bytes", "export_cell", "is_export", "load_export", "size_report", "summary_lines",
           "write_export"]
