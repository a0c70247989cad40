"""Sparsity measured on a finalized model by counting exact zeros (Sanh et al. 2020 accounting)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from bench.core.prunable import prunable_weights


@dataclass(frozen=True)
class SparsityReport:
    """What a finalized model keeps.

    Attributes:
        encoder_sparsity: exact zeros / size of the prunable set (encoder Q, K, V, O, FFN in, FFN out), in [0, 1].
        prunable_params: size of the prunable set.
        prunable_zeros: exact zeros in the prunable set.
        total_params: every parameter of the model (embeddings, heads, biases, LayerNorm included).
        remaining_params: total_params − prunable_zeros: the parameters a pruned model still carries.
        remaining_fraction: remaining_params / total_params.
    """

    encoder_sparsity: float
    prunable_params: int
    prunable_zeros: int
    total_params: int
    remaining_params: int
    remaining_fraction: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def measure_sparsity(model: nn.Module) -> SparsityReport:
    """Count exact zeros in the prunable set of a finalized (un-parametrized) model.

    Raises:
        BenchError: unsupported architecture.
    """
    weights = [pw.module.weight for pw in prunable_weights(model)]
    prunable = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(p.numel() for p in model.parameters())
    return SparsityReport(
        encoder_sparsity=zeros / prunable,
        prunable_params=prunable,
        prunable_zeros=zeros,
        total_params=total,
        remaining_params=total - zeros,
        remaining_fraction=(total - zeros) / total,
    )
