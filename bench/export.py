"""Deployable exports of finalized models: compacted structure plus sparse storage.

``bench export CELL_ID --to DIR`` (and :func:`write_export`) writes a transformers model folder:

* ``config.json``, ``modeling_compact.py``, ``model.safetensors``, tokenizer files: the **compacted** model
  (:func:`bench.compaction.compact`: dead heads and FFN units removed), loadable with stock transformers:
  ``AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)``. The remote code is a
  model class that resizes the compacted Linears (``config.compact_shapes``) before the weights load; it is
  needed because transformers 5 dropped ``prune_heads``/``config.pruned_heads`` and a config has one FFN width.
* ``model.sparse.safetensors``: the same compacted weights with the remaining unstructured zeros stored as bitmask
  or CSR (:mod:`bench.sparse_store`), so the file size follows the sparsity. :func:`load_export` rebuilds the
  model from it (or from ``model.safetensors`` with ``sparse=False``).
* ``export.json``: the cell, the compaction report, file sizes, and the parity check.

Parity: :func:`export_cell` reloads the sparse file and evaluates it on the cell's eval split; every metric must
match the cell record within :data:`PARITY_TOLERANCE`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from bench.compaction import CompactionReport, compact
from bench.errors import BenchError
from bench.prunable import prunable_weights

MODELING_FILE = "modeling_compact.py"
SPARSE_FILE = "model.sparse.safetensors"
DENSE_FILE = "model.safetensors"
EXPORT_INFO = "export.json"
PARITY_TOLERANCE = 1e-4

MODELING_TEMPLATE = '''"""{name}: {base} whose prunable Linears have the shapes in config.compact_shapes.

Written by prune-bench's `bench export` (structured compaction: dead attention heads and FFN units removed).
Load with AutoModel....from_pretrained(folder, trust_remote_code=True).
"""

from torch import nn
from transformers import {base}


class {name}({base}):
    def __init__(self, config):
        super().__init__(config)
        for path, (out_features, in_features) in config.compact_shapes.items():
            parent_name, _, child = path.rpartition(".")
            parent = self.get_submodule(parent_name)
            old = getattr(parent, child)
            new = nn.Linear(in_features, out_features, bias=old.bias is not None, device=old.weight.device,
                            dtype=old.weight.dtype)
            setattr(parent, child, new)
'''


def auto_class_name(model: nn.Module) -> str:
    """``AutoModelForSequenceClassification`` for a ``BertForSequenceClassification``, ``AutoModel`` for a bare
    encoder."""
    name = type(model).__name__
    return "AutoModelFor" + name.split("For", 1)[1] if "For" in name else "AutoModel"


def write_export(model: nn.Module, to: Path, tokenizer=None) -> dict[str, Any]:
    """Compact a finalized ``model`` and write the export folder ``to`` (see the module docstring).

    Returns:
        ``{"compaction": CompactionReport fields, "compact_bytes": size of model.safetensors,
        "sparse_bytes": size of model.sparse.safetensors}`` (bytes).
    """
    compacted, report = compact(model)
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    base = type(model).__name__
    name = f"Compact{base}"
    config = compacted.config
    config.compact_shapes = report.shapes
    config.auto_map = {auto_class_name(model): f"{Path(MODELING_FILE).stem}.{name}"}
    config.architectures = [name]
    (to / MODELING_FILE).write_text(MODELING_TEMPLATE.format(name=name, base=base))
    compacted.save_pretrained(to)
    if tokenizer is not None:
        tokenizer.save_pretrained(to)
    from bench.sparse_store import save_sparse

    sparse = {f"{pw.name}.weight" for pw in prunable_weights(compacted)}
    save_sparse(compacted.state_dict(), to / SPARSE_FILE, sparse)
    return {
        "compaction": report.to_dict(),
        "compact_bytes": (to / DENSE_FILE).stat().st_size,
        "sparse_bytes": (to / SPARSE_FILE).stat().st_size,
    }


def load_export(folder: Path, sparse: bool = True) -> nn.Module:
    """The model in an export ``folder``, in eval mode: from ``model.sparse.safetensors`` (default) or, with
    ``sparse=False``, from ``model.safetensors`` through stock ``from_pretrained(..., trust_remote_code=True)``.

    Raises:
        BenchError: ``folder`` is not an export (no config with ``compact_shapes`` and ``auto_map``).
    """
    import transformers
    from transformers import AutoConfig

    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file() or "compact_shapes" not in json.loads(config_file.read_text()):
        raise BenchError(f"{folder} is not a bench export: expected config.json with compact_shapes (bench export)")
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    auto = getattr(transformers, next(iter(config.auto_map)))
    if not sparse:
        return auto.from_pretrained(folder, trust_remote_code=True).eval()
    from bench.sparse_store import load_sparse

    model = auto.from_config(config, trust_remote_code=True)
    model.load_state_dict(load_sparse(folder / SPARSE_FILE), strict=True)
    return model.eval()


def dense_bytes(model: nn.Module) -> int:
    """Size in bytes of ``model.safetensors`` as ``save_pretrained`` writes the (uncompacted) ``model``."""
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp:
        model.save_pretrained(tmp)
        return (Path(tmp) / DENSE_FILE).stat().st_size


def size_report(model: nn.Module) -> dict[str, Any]:
    """What exporting a finalized ``model`` would give, measured by writing it to a temporary folder.

    Returns:
        ``{"dense_bytes", "compact_bytes", "sparse_bytes", "file_ratio" (sparse / dense), "compaction": {...}}``;
        sizes in bytes. ``dense_bytes`` is the uncompacted model as ``save_pretrained`` writes it.
    """
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        info = write_export(model, Path(tmp))
    dense = dense_bytes(model)
    return {"dense_bytes": dense, **info, "file_ratio": info["sparse_bytes"] / dense}


def export_cell(results: Path, cell_ref: str, to: Path, check: bool = True, log=print) -> dict[str, Any]:
    """Export the finalized model of cell ``cell_ref`` (an id prefix) of ``results`` to ``to``; with ``check``,
    reload the sparse file, evaluate it on the cell's eval split and compare with the record (``parity``).

    Returns:
        What ``export.json`` holds: ``cell``, ``compaction``, ``dense_bytes``, ``compact_bytes``, ``sparse_bytes``,
        ``file_ratio``, and ``parity`` (``{"passed", "tolerance", "metrics": {name: {record, export, diff}}}``)
        when checked.

    Raises:
        BenchError: no results in ``results``, no unique cell with that id prefix, a cell that did not finish,
            or a cell without a saved model (run with ``--save-models``).
    """
    from bench import records
    from bench.execute import load_tokenizer, task_of
    from bench.runner import model_dir

    records.require_results(results)
    record = records.find_cell(records.read_records(results), cell_ref)
    label = f"cell {record['id'][:12]} ({record['cell']['method']} @ {record['cell']['sparsity']})"
    if record["status"] != records.FINISHED:
        raise BenchError(f"{label} did not finish (status {record['status']}): nothing to export")
    source = model_dir(results, record["id"])
    if not source.is_dir():
        raise BenchError(
            f"{label} has no saved model at {source}: run the matrix with --save-models (into a new --output, or "
            "delete this cell's record so it runs again)"
        )
    from bench.cell import Cell

    cell = Cell.from_dict(record["cell"])
    task = task_of(cell)
    model = task.build_model(str(source)).eval()
    tokenizer = load_tokenizer(str(source))
    info = {"cell": record["id"], "dense_bytes": dense_bytes(model), **write_export(model, to, tokenizer)}
    info["file_ratio"] = info["sparse_bytes"] / info["dense_bytes"]
    if check:
        info["parity"] = parity(record, evaluate_export(to, cell, record, task))
    write_info(Path(to), info)
    return info


def evaluate_export(folder: Path, cell, record: dict[str, Any], task) -> dict[str, float]:
    """The task's metrics of the export in ``folder`` (sparse file) on the cell's eval split, evaluated with the
    cell's final featurization and eval batch size."""
    from dataclasses import replace

    from transformers import DataCollatorWithPadding, Trainer

    from bench.execute import load_tokenizer
    from bench.task import Featurization
    from bench.training import training_arguments

    budget = replace(cell.budget, **record.get("final_budget", {}))
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


def parity(record: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    """Every numeric metric of ``record`` against the export's ``metrics``: passed when all differ by at most
    :data:`PARITY_TOLERANCE` (absolute, in the metric's units)."""
    rows = {
        name: {"record": value, "export": metrics.get(name), "diff": abs(metrics[name] - value) if name in metrics
               else None}
        for name, value in record["metrics"].items()
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
    for name, row in info.get("parity", {}).get("metrics", {}).items():
        verdict = "ok" if row["diff"] is not None and row["diff"] <= PARITY_TOLERANCE else "MISMATCH"
        lines.append(f"  parity {name}: record {row['record']:.4f}, export {row['export']:.4f} "
                     f"(|diff| {row['diff']:.2g}, tolerance {PARITY_TOLERANCE:g}): {verdict}")  # fmt: skip
    lines.append(f"  load: {next(iter(json.loads((Path(folder) / 'config.json').read_text())['auto_map']))}"
                 f".from_pretrained({str(folder)!r}, trust_remote_code=True), or "
                 f"bench.export.load_export({str(folder)!r}) for the sparse file")  # fmt: skip
    return lines


def write_info(folder: Path, info: dict[str, Any]) -> None:
    (folder / EXPORT_INFO).write_text(json.dumps(info, indent=2, sort_keys=True))


__all__ = ["CompactionReport", "export_cell", "load_export", "size_report", "write_export"]
