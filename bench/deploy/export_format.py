"""The files of a deployable export and how they are written and loaded (``bench export``: :mod:`bench.deploy.export`).

An export folder is a transformers model folder:

* ``config.json``, ``model.safetensors``, tokenizer files: the **compacted** model
  (:func:`bench.deploy.compaction.compact`: dead heads and FFN units removed). Its prunable Linears have per-layer
  shapes (``config.compact_shapes``), which no stock transformers class can size (transformers 5 dropped
  ``prune_heads``/``config.pruned_heads`` and a config has one FFN width), so the folder is loaded with
  :func:`load_export`: it builds the model class in this process from the installed package (:func:`compact_class`,
  a subclass of the stock class named in ``config.compact_base`` that resizes those Linears) and **never imports
  code from the folder**. Exports hold no code: an earlier version shipped ``modeling_compact.py`` for
  transformers' remote-code loading, which runs whatever that file holds; :func:`load_export` ignores such a
  file.
* ``model.sparse.safetensors``: the same compacted weights with the remaining unstructured zeros stored as bitmask
  or CSR (:mod:`bench.deploy.sparse_store`), so the file size follows the sparsity. :func:`load_export` rebuilds the
  model from it (or from ``model.safetensors`` with ``sparse=False``).
* ``export.json``: the cell, the compaction report, file sizes (the whole file and the encoder's part), and the
  parity check (:mod:`bench.deploy.export`).
* ``model.onnx`` (``bench export --onnx``): the compacted model as ONNX (:mod:`bench.deploy.onnx_runtime`), with
  its ONNX Runtime parity against the export in ``export.json``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from bench.core.errors import BenchError
from bench.core.prunable import prunable_weights
from bench.deploy.compaction import compact

MODELING_FILE = "modeling_compact.py"  # shipped by earlier versions; never written, imported or executed now
SPARSE_FILE = "model.sparse.safetensors"
DENSE_FILE = "model.safetensors"
EXPORT_INFO = "export.json"
ONNX_FILE = "model.onnx"  # bench export --onnx
PREFIX = "Compact"
_CLASSES: dict[type, type] = {}


def compact_class(base: type) -> type:
    """``Compact<base>``: the stock transformers class ``base`` whose prunable Linears take the shapes in
    ``config.compact_shapes`` (``{module name: [out_features, in_features]}``) before weights load. Built here, from
    the installed package; one class per base."""
    if base not in _CLASSES:

        def __init__(self, config):
            base.__init__(self, config)
            resize_linears(self, getattr(config, "compact_shapes", None) or {})

        _CLASSES[base] = type(f"{PREFIX}{base.__name__}", (base,), {"__init__": __init__, "__module__": __name__})
    return _CLASSES[base]


def resize_linears(model: nn.Module, shapes: dict[str, Any]) -> None:
    """Replace each Linear named in ``shapes`` by an (uninitialized) one of the given ``[out, in]`` shape.

    Raises:
        BenchError: a name that is not a Linear of the model, or a shape that is not two positive integers no larger
            than the stock layer's (compaction only removes).
    """
    for path, shape in shapes.items():
        parent_name, _, child = str(path).rpartition(".")
        try:
            parent = model.get_submodule(parent_name)
            old = getattr(parent, child)
        except AttributeError:
            old = None
        if not isinstance(old, nn.Linear):
            raise BenchError(f"config.compact_shapes names {path!r}, which is not a Linear layer of the model")
        ok = (isinstance(shape, (list, tuple)) and len(shape) == 2
              and all(isinstance(n, int) and not isinstance(n, bool) for n in shape))  # fmt: skip
        if not ok or not (0 < shape[0] <= old.out_features and 0 < shape[1] <= old.in_features):
            raise BenchError(f"config.compact_shapes[{path!r}] = {shape!r}: expected [out, in], positive and at most "
                             f"the layer's [{old.out_features}, {old.in_features}]")  # fmt: skip
        out_features, in_features = shape
        setattr(parent, child, nn.Linear(in_features, out_features, bias=old.bias is not None,
                                         device=old.weight.device, dtype=old.weight.dtype))  # fmt: skip


def export_base(config: dict[str, Any], folder: Path) -> type:
    """The stock transformers class an export's ``config.json`` was compacted from: ``compact_base`` (exports of
    earlier versions: the class their ``auto_map`` names without its ``Compact`` prefix, else ``architectures``),
    accepted only when it is a transformers model class of an architecture in :data:`bench.core.prunable.ARCHITECTURES`
    that matches the config's ``model_type``. Names are looked up in ``transformers``, never imported.

    Raises:
        BenchError: anything else; nothing is imported from the folder.
    """
    import transformers
    from transformers import PreTrainedModel

    from bench.core.prunable import ARCHITECTURES

    name = config.get("compact_base")
    if name is None:
        mapped = list((config.get("auto_map") or {}).values()) if isinstance(config.get("auto_map"), dict) else []
        first = ([str(m).rpartition(".")[2] for m in mapped] + list(config.get("architectures") or []) + [None])[0]
        name = first[len(PREFIX):] if isinstance(first, str) and first.startswith(PREFIX) else first
    base = getattr(transformers, name, None) if isinstance(name, str) and name.isidentifier() else None
    model_type = getattr(getattr(base, "config_class", None), "model_type", None)
    if not (isinstance(base, type) and issubclass(base, PreTrainedModel)) or model_type not in ARCHITECTURES:
        raise BenchError(f"{folder}/config.json: unknown base model class {name!r}; a bench export is compacted from "
                         f"a transformers class of {', '.join(sorted(ARCHITECTURES))}")  # fmt: skip
    if config.get("model_type") != model_type:
        raise BenchError(f"{folder}/config.json: model_type {config.get('model_type')!r} does not match its base class "
                         f"{name} ({model_type!r})")  # fmt: skip
    return base


def write_export(model: nn.Module, to: Path, tokenizer=None) -> dict[str, Any]:
    """Compact a finalized ``model`` and write the export folder ``to`` (see the module docstring).

    Returns:
        ``{"compaction": CompactionReport fields, "compact_bytes": size of model.safetensors,
        "sparse_bytes": size of model.sparse.safetensors, "encoder_bytes", "encoder_dense_bytes", "encoder_ratio"}``
        (bytes): the encoder's part, see :func:`encoder_sizes`.
    """
    encoder_dense = sum(pw.module.weight.numel() * 4 for pw in prunable_weights(model))
    compacted, report = compact(model)
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    base = type(model).__name__
    config = compacted.config
    config.compact_shapes = report.shapes
    config.compact_base = base  # load_export builds the class from this name; no code goes into the folder
    if hasattr(config, "auto_map"):
        del config.auto_map
    compacted.save_pretrained(to)
    if tokenizer is not None:
        tokenizer.save_pretrained(to)
    from bench.deploy.sparse_store import save_sparse

    sparse = {f"{pw.name}.weight" for pw in prunable_weights(compacted)}
    save_sparse(compacted.state_dict(), to / SPARSE_FILE, sparse)
    return {
        "compaction": report.to_dict(),
        "compact_bytes": (to / DENSE_FILE).stat().st_size,
        "sparse_bytes": (to / SPARSE_FILE).stat().st_size,
        **encoder_sizes(to / SPARSE_FILE, sparse, encoder_dense),
    }


def encoder_sizes(path: Path, names: set[str], dense: int) -> dict[str, Any]:
    """The encoder's share of the sparse file: ``encoder_bytes``, what ``path`` stores for the prunable weights
    ``names`` (Q, K, V, attention output, FFN in and out of every layer, :mod:`bench.core.prunable`; biases,
    LayerNorm, embeddings and heads are not in it), read from the file (:func:`bench.deploy.sparse_store.stored_bytes`:
    values and bitmask or CSR indices, or the dense tensor); ``encoder_dense_bytes`` = ``dense``, the same weights
    unpruned and uncompacted in fp32; ``encoder_ratio`` = encoder_bytes / encoder_dense_bytes. The whole file's
    ratio (``file_ratio``) is diluted by the embeddings, which stay dense; this one answers what pruning the encoder
    saved."""
    from bench.deploy.sparse_store import stored_bytes

    stored = stored_bytes(path, names)
    return {"encoder_bytes": stored, "encoder_dense_bytes": dense, "encoder_ratio": stored / dense if dense else None}


def load_export(folder: Path, sparse: bool = True) -> nn.Module:
    """The model in an export ``folder``, in eval mode: from ``model.sparse.safetensors`` (default) or, with
    ``sparse=False``, from ``model.safetensors``. The model class is built here (:func:`compact_class` of the stock
    class :func:`export_base` names); no code is imported from the folder, whatever it holds.

    Raises:
        BenchError: ``folder`` is not an export (no readable config.json with ``compact_shapes``), or names a base
            class or shapes that do not fit a prunable transformers model.
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    try:
        data = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BenchError(f"{folder} is not a bench export: expected a readable config.json with compact_shapes "
                         f"(bench export): {err}") from err  # fmt: skip
    if not isinstance(data, dict) or "compact_shapes" not in data:
        raise BenchError(f"{folder} is not a bench export: expected config.json with compact_shapes (bench export)")
    base = export_base(data, folder)
    cls = compact_class(base)
    if not sparse:
        return cls.from_pretrained(folder).eval()
    from bench.deploy.sparse_store import load_sparse

    model = cls(base.config_class.from_pretrained(folder))
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
        ``{"dense_bytes", "compact_bytes", "sparse_bytes", "file_ratio" (sparse / dense), "encoder_bytes",
        "encoder_dense_bytes", "encoder_ratio" (:func:`encoder_sizes`), "compaction": {...}}``; sizes in bytes.
        ``dense_bytes`` is the uncompacted model as ``save_pretrained`` writes it.
    """
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        info = write_export(model, Path(tmp))
    dense = dense_bytes(model)
    return {"dense_bytes": dense, **info, "file_ratio": info["sparse_bytes"] / dense}


def is_export(folder: Path) -> bool:
    """True for a folder written by :func:`write_export` (it has ``export.json``, or a config with
    ``compact_shapes``)."""
    folder = Path(folder)
    if (folder / EXPORT_INFO).is_file():
        return True
    try:
        return "compact_shapes" in json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError):
        return False
