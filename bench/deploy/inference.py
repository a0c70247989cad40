"""The ``--measure-speed`` report of a cell: CPU inference latency of its finalized model against the dense one.

Four variants of the same architecture are timed in one process, interleaved
(:func:`bench.deploy.speed.measure_latency`: batch 1 and 32, sequence length 128, warm-up then 20 timed runs, median
and IQR):

* ``dense``: the pretrained model with the task head, unpruned (the latency any dense fine-tuned model has);
* ``finalized``: the pruned model as training leaves it: exact zeros in dense tensors;
* ``compacted``: dead heads and FFN units removed (:func:`bench.deploy.compaction.compact`), what ``bench export``
  writes;
* ``sparse_csr``: the compacted model with its prunable Linears of at least :data:`CSR_MIN_SPARSITY` zeros
  multiplied as torch sparse CSR tensors (:func:`bench.deploy.sparse_linear.sparse_csr_copy`), the sparse-kernel
  path standard PyTorch offers on CPU; left out when no matrix is that sparse (it would be the compacted model
  again).

Beside them, additively (records without these keys still read):

* ``onnx``: the dense and the compacted model exported to ONNX and timed in ONNX Runtime, interleaved, by the same
  protocol (:func:`bench.deploy.onnx_runtime.onnx_report`), with the parity of each export; ``{"skipped": reason}``
  without the optional extra (``pip install 'prune-bench[onnx]'``) or when the export fails, never an error.
* ``flops``: FLOPs of one forward pass of the dense and the compacted model, counted from their shapes
  (:func:`bench.deploy.flops.flops_report`), so that what compaction removed (the FLOPs ratio) and what a runtime
  made of it (the speed-ups) can be told apart. The finalized model has the dense FLOPs: its zeros are multiplied.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Matrices at least this sparse are multiplied as CSR in the sparse_csr variant. Measured
# (bench.deploy.sparse_linear.CSRLinear): CSR beats dense from ~90% zeros at 128 rows; 0.85 keeps a 90% cell's
# matrices (a local top-k may leave 89.99%).
CSR_MIN_SPARSITY = 0.85


def speed_report(finalized: nn.Module, dense: nn.Module) -> dict[str, Any]:
    """Latencies (ms) and speed-ups (dense median / variant median; > 1 is faster) of the variants.

    Args:
        finalized: the finalized (un-parametrized) pruned model.
        dense: the same architecture, unpruned.

    Returns:
        ``{"latency_ms": {"batch_1": {variant: {median_ms, iqr_ms, q1_ms, q3_ms, runs}}, "batch_32": ...},
        "speed_up": {"batch_1": {variant: ratio}, ...}, "seq_length", "threads", "onnx": {"latency_ms": {"batch_1":
        {"dense", "compacted"}, ...}, "speed_up": {"batch_1": {"compacted": ratio}, ...}, "parity_max_abs_diff",
        "parity_passed", ...} or {"skipped": reason}, "flops": {"dense", "compacted", "ratio", ...}}``.
    """
    from bench.deploy import speed
    from bench.deploy.compaction import compact
    from bench.deploy.flops import flops_report
    from bench.deploy.sparse_linear import CSRLinear, sparse_csr_copy

    compacted = compact(finalized)[0]
    models = {"dense": dense.eval(), "finalized": finalized.eval(), "compacted": compacted}
    csr = sparse_csr_copy(compacted, min_sparsity=CSR_MIN_SPARSITY)
    if any(isinstance(module, CSRLinear) for module in csr.modules()):
        models["sparse_csr"] = csr
    latency = speed.measure_latency(models, vocab_size=finalized.config.vocab_size)
    return {
        "latency_ms": latency,
        "speed_up": speed.speed_ups(latency, reference="dense"),
        "seq_length": speed.SEQ_LENGTH,
        "threads": torch.get_num_threads(),
        "onnx": onnx_speed(dense, compacted, finalized.config.vocab_size),
        "flops": flops_report(dense, compacted),
    }


def onnx_speed(dense: nn.Module, compacted: nn.Module, vocab_size: int) -> dict[str, Any]:
    """:func:`bench.deploy.onnx_runtime.onnx_report` of the dense and the compacted model; ``{"skipped": reason}``
    when the extra is absent or the export fails (the cell's other results stand; the reason says what failed)."""
    from bench.deploy.onnx_runtime import onnx_report

    try:
        return onnx_report({"dense": dense, "compacted": compacted}, vocab_size=vocab_size)
    except Exception as err:  # noqa: BLE001 - an exporter or runtime failure must not fail a trained cell
        root = err.__cause__ or err  # torch.onnx wraps the torch.export error that says what went wrong
        first = (str(root).strip().splitlines() or [""])[0]
        return {"skipped": f"ONNX export or run failed: {type(root).__name__}: {first[:300]}"}
