"""Sparse weights in safetensors: a file whose size follows the number of non-zero weights.

A pruned weight matrix of shape (rows, cols) with ``nnz`` non-zeros is stored in whichever of two layouts is
smaller (``b`` = bytes per value, 4 for fp32):

* **bitmask**: ``{name}.bitmask`` (uint8, row-major ``weight != 0`` packed 8 per byte) and ``{name}.values``
  (the non-zeros in row-major order): ``rows·cols/8 + nnz·b`` bytes.
* **CSR**: ``{name}.crow_indices`` (int32, rows + 1), ``{name}.col_indices`` (int16 when cols ≤ 32767, else int32)
  and ``{name}.values``: ``4·(rows+1) + nnz·(2 + b)`` bytes. With 16-bit column indices CSR is the smaller one
  below 1/16 density (above ~94% sparsity), the bitmask above it.

Every other tensor (embeddings, biases, LayerNorm, heads, and weights that are not sparse enough to gain) is
stored as it is. The file's metadata ``bench.sparse`` maps each encoded name to ``{"format", "shape"}``. This is
the storage the movement-pruning paper describes (Sanh et al. 2020, section 6: CSR for the encoder), without
its 8-bit quantization, so the values are bit-exact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

FORMAT_KEY = "bench.sparse"
PARTS = ("values", "bitmask", "crow_indices", "col_indices")  # the tensors {name}.{part} an encoded weight is stored as


def encoded_bytes(weight: Tensor) -> dict[str, int]:
    """Bytes each layout would take for ``weight`` (2-D): ``{"dense", "bitmask", "csr"}``."""
    rows, cols = weight.shape
    nnz = int((weight != 0).sum())
    value = weight.element_size()
    col = 2 if cols <= 32767 else 4
    return {
        "dense": rows * cols * value,
        "bitmask": -(-rows * cols // 8) + nnz * value,
        "csr": 4 * (rows + 1) + nnz * (col + value),
    }


def encode(name: str, weight: Tensor) -> tuple[dict[str, Tensor], dict | None]:
    """The tensors that store ``weight`` under ``name`` in its smallest layout, and its metadata entry (None when
    dense storage is smallest)."""
    sizes = encoded_bytes(weight)
    layout = min(sizes, key=sizes.get)
    if layout == "dense":
        return {name: weight.contiguous()}, None
    kept = weight != 0
    values = weight[kept].contiguous()
    meta = {"format": layout, "shape": list(weight.shape)}
    if layout == "bitmask":
        bits = np.packbits(kept.reshape(-1).cpu().numpy())
        return {f"{name}.bitmask": torch.from_numpy(bits), f"{name}.values": values}, meta
    csr = weight.to_sparse_csr()
    col_dtype = torch.int16 if weight.shape[1] <= 32767 else torch.int32
    return {
        f"{name}.crow_indices": csr.crow_indices().to(torch.int32),
        f"{name}.col_indices": csr.col_indices().to(col_dtype),
        f"{name}.values": csr.values().contiguous(),
    }, meta


def decode(name: str, meta: dict, tensors: dict[str, Tensor]) -> Tensor:
    """The dense weight ``name`` rebuilt from its encoded tensors."""
    shape = meta["shape"]
    values = tensors[f"{name}.values"]
    if meta["format"] == "bitmask":
        count = int(np.prod(shape))
        kept = np.unpackbits(tensors[f"{name}.bitmask"].numpy(), count=count).astype(bool)
        weight = torch.zeros(count, dtype=values.dtype)
        weight[torch.from_numpy(kept)] = values
        return weight.view(shape)
    if meta["format"] == "csr":
        crow = tensors[f"{name}.crow_indices"].to(torch.int64)
        col = tensors[f"{name}.col_indices"].to(torch.int64)
        return torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=True).to_dense()
    raise ValueError(f"unknown sparse format {meta['format']!r} for {name}; expected 'bitmask' or 'csr'")


def save_sparse(state: dict[str, Tensor], path: Path, sparse_names: set[str]) -> Path:
    """Write ``state`` to ``path`` (atomically), encoding the tensors named in ``sparse_names`` sparsely.

    Args:
        state: name → tensor, e.g. a model's ``state_dict()``.
        sparse_names: names of 2-D weights to store as bitmask or CSR when that is smaller.
    """
    from safetensors.torch import save_file

    tensors, info = {}, {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        if name in sparse_names:
            encoded, meta = encode(name, tensor)
            tensors.update(encoded)
            if meta is not None:
                info[name] = meta
        else:
            tensors[name] = tensor.contiguous()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    save_file(tensors, str(tmp), metadata={FORMAT_KEY: json.dumps(info)})
    os.replace(tmp, path)
    return path


def load_sparse(path: Path) -> dict[str, Tensor]:
    """The dense state dict stored by :func:`save_sparse`.

    Raises:
        ValueError: the file has no ``bench.sparse`` metadata (not written by :func:`save_sparse`).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if FORMAT_KEY not in metadata:
        raise ValueError(f"{path} is not a prune-bench sparse file (no {FORMAT_KEY!r} metadata)")
    info = json.loads(metadata[FORMAT_KEY])
    tensors = load_file(str(path))
    encoded = {f"{name}.{part}" for name in info for part in PARTS}
    state = {name: tensor for name, tensor in tensors.items() if name not in encoded}
    state.update({name: decode(name, meta, tensors) for name, meta in info.items()})
    return state


def stored_bytes(path: Path, names: set[str]) -> int:
    """Bytes the file at ``path`` (a :func:`save_sparse` or plain safetensors file) spends on the tensors ``names``:
    each one's data as stored, whether dense (``{name}``) or encoded (``{name}.values``, ``.bitmask``,
    ``.crow_indices``, ``.col_indices``), read from the file's header offsets. The header itself is not counted."""
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(length))
    wanted = set(names) | {f"{name}.{part}" for name in names for part in PARTS}
    return sum(end - start for key, entry in header.items() if key in wanted
               for start, end in [entry["data_offsets"]])  # fmt: skip
