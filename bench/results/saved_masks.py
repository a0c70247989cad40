"""Saved masks of finalized models: one bit per prunable weight, in safetensors, and their per-layer sparsity.

Every finished cell keeps ``OUTPUT/masks/<cell id>.safetensors`` (about 1/32 of the fp32 prunable set: 2.6 MB for
MiniLM-L6, 10 MB for BERT-base), so the topology of a pruned model (which layers and which matrix types lose
weights) can be compared across methods without saving the models (Gao, Colombo & Wang 2021, section 5). The file
gets the mode the process umask gives any new file, as records do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from bench.core.errors import BenchError
from bench.core.hub import first_line
from bench.core.prunable import ROLES, prunable_weights
from bench.results.records import file_mode


@torch.no_grad()
def save_masks(model: nn.Module, path: Path) -> Path:
    """Write the non-zero pattern of every prunable weight of a finalized ``model`` to ``path``, atomically.

    Each tensor is the row-major ``weight != 0`` packed 8 per byte (``numpy.packbits``); the metadata holds, per
    weight name, its shape, layer and role (Q/K/V/O/FFN in/FFN out as in :data:`bench.core.prunable.ROLES`).
    """
    from safetensors.numpy import save_file

    tensors, info = {}, {}
    for pw in prunable_weights(model):
        kept = (pw.module.weight != 0).cpu().numpy()
        tensors[pw.name] = np.packbits(kept.reshape(-1))
        info[pw.name] = {"shape": list(kept.shape), "layer": pw.layer, "role": pw.role}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    save_file(tensors, str(tmp), metadata={"bench.masks": json.dumps(info)})
    os.chmod(tmp, file_mode())  # safetensors writes 0600; a shared results folder needs the umask's mode
    os.replace(tmp, path)
    return path


def load_masks(path: Path) -> dict[str, tuple[np.ndarray, int, str]]:
    """``{weight name: (bool mask of the weight's shape, layer, role)}`` from :func:`save_masks`'s file.

    Raises:
        BenchError: the file cannot be read or is not a mask file of :func:`save_masks` (truncated, overwritten,
            its metadata edited); the message names it.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            info = json.loads((handle.metadata() or {})["bench.masks"])
            out = {}
            for name, meta in info.items():
                shape = [int(n) for n in meta["shape"]]
                bits = np.unpackbits(handle.get_tensor(name), count=int(np.prod(shape))).astype(bool)
                out[name] = (bits.reshape(shape), int(meta["layer"]), str(meta["role"]))
    except Exception as err:  # noqa: BLE001 - safetensors, JSON, numpy and key errors all mean "corrupt file"
        raise BenchError(f"corrupt mask file {path}: {type(err).__name__}: {first_line(err)}") from err
    if not out:
        raise BenchError(f"corrupt mask file {path}: it holds no masks")
    return out


def layer_sparsity(masks: dict[str, tuple[np.ndarray, int, str]]) -> pd.DataFrame:
    """Fraction of pruned (zero) weights per layer (rows, 0-based) × role (columns, in :data:`ROLES` order)."""
    rows = [{"layer": layer, "role": role, "sparsity": 1.0 - mask.mean()} for mask, layer, role in masks.values()]
    frame = pd.DataFrame(rows).pivot_table(index="layer", columns="role", values="sparsity")
    return frame.reindex(columns=[r for r in ROLES if r in frame.columns])
