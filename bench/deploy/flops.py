"""FLOPs of one forward pass, counted from the shapes the model really has.

Latency mixes two effects: the model (how much arithmetic compaction removed) and the runtime (how well a kernel
does that arithmetic). Counting the FLOPs of the dense and the compacted model on the timing input separates them:
``flops.ratio`` is what compaction removed, the speed-up is what the runtime turned it into.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass (batch 1, 128 tokens, the
:func:`bench.deploy.speed.draw_inputs` input): PyTorch's own formulas for every matrix multiply it dispatches
(``addmm``/``mm``/``bmm``, attention), a maintained library rather than a formula of ours that would have to follow
every architecture. It counts a multiply-add as 2 FLOPs and counts matrix products only (softmax, GELU, LayerNorm,
embedding look-ups are not counted). One gap is filled here: the fused CPU attention kernel
(``aten._scaled_dot_product_flash_attention_for_cpu``, what ``sdpa`` attention runs on CPU) has no registered
formula, so it is counted with the library's own ``sdpa_flop_count`` (QKᵀ and AV), as the GPU kernels are.

A masked (finalized) model has the dense FLOPs: its zeros are still multiplied. Only the compacted model (fewer
heads, narrower FFN) does less arithmetic; unstructured zeros left inside it are counted as work too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.deploy import speed

BATCH = 1


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(model: nn.Module, batch: int = BATCH, seq_length: int = speed.SEQ_LENGTH) -> int:
    """FLOPs of one forward pass of ``model`` (eval mode, CPU) on a (batch, seq_length) input (module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    vocab = min(int(getattr(model.config, "vocab_size", 1000)), 1000)
    inputs = speed.draw_inputs(vocab, batch, seq_length)
    if not speed.takes_token_type_ids(model):
        inputs.pop("token_type_ids")
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    extra = {cpu_sdpa: _cpu_sdpa_flop} if cpu_sdpa is not None else {}
    training = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        with FlopCounterMode(display=False, custom_mapping=extra) as counter, torch.inference_mode():
            model(**inputs)
    finally:
        for module, flag in training:
            module.training = flag
    return int(counter.get_total_flops())


def flops_report(dense: nn.Module, compacted: nn.Module) -> dict[str, Any]:
    """``{"dense": int, "compacted": int, "ratio": compacted / dense, "batch": 1, "seq_length": 128,
    "counter": "torch.utils.flop_counter.FlopCounterMode"}``: FLOPs of one forward pass of each."""
    counts = {"dense": count_flops(dense), "compacted": count_flops(compacted)}
    return {**counts, "ratio": counts["compacted"] / counts["dense"] if counts["dense"] else None, "batch": BATCH,
            "seq_length": speed.SEQ_LENGTH, "counter": "torch.utils.flop_counter.FlopCounterMode"}  # fmt: skip
