"""A torch sparse-CSR inference path: :class:`CSRLinear` and :func:`sparse_csr_copy`.

A masked (finalized) model keeps dense weight matrices that merely hold zeros; :func:`sparse_csr_copy` gives the same
model with its sparse prunable matrices stored as torch sparse CSR tensors, so that what a sparse kernel buys on this
machine can be measured (:func:`bench.deploy.speed.measure_latency`, :mod:`bench.deploy.inference`). Written here
because standard PyTorch has no ``nn.Linear`` over a sparse weight that runs under ``torch.inference_mode()`` (see
:class:`CSRLinear` for the formulations measured).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from bench.core.prunable import prunable_weights


class CSRLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` a ``torch.sparse_csr`` tensor of shape (out_features, in_features).

    Input (..., in_features) -> output (..., out_features), the same function as the ``nn.Linear`` it was made
    from. Inference only: ``weight`` and ``bias`` are buffers, not parameters.

    Formulation: ``torch.addmm(bias[:, None], W, x2d.T).T`` (sparse CSR times dense, bias fused), with ``x2d`` the
    input flattened to (rows, in_features). Of the formulations measured (2-core CPU, torch 2.13 with MKL; weights
    384x1536, 1536x384 and 384x384 at 90/97/99 % zeros; 128 and 4096 rows; per layer and in a whole 6-layer BERT) it
    was the fastest in nearly every case. Slower: ``torch.sparse.mm(W, x2d.T).T + b`` and ``(W @ x2d.T).T + b``
    (3-80 %); making the result contiguous (up to 3.5x at 4096 rows); ``torch.addmm(b, x2d, W_T)`` with ``W_T`` the
    CSR transpose (6-11x at 128 rows; it won only for a 1536-wide row-major input of 4096 rows at >= 97 %
    zeros). ``F.linear(x, W, b)`` and ``torch.addmm(b, x2d, W.t())`` fail under ``torch.inference_mode()`` unless
    ``W`` is itself an inference tensor ("Cannot set version_counter for inference tensor"), and were 2-4x slower
    where they ran.

    Layout: the output is a transposed (column-major) view of the (out_features, rows) product: equal values, other
    strides; ``reshape``/``view`` as BERT's layers use them work on it, ``.contiguous()`` gives a row-major copy. A
    row-major input is copied to (in_features, rows) first, and on the machine above that transposing copy was
    most of the cost at 4096 rows; a column-major input (the output of another CSRLinear, also after an
    elementwise op such as GELU) needs no copy.

    Whether this beats the dense ``nn.Linear`` depends on sparsity, rows and input layout. Measured on the machine
    above (median speed-up over ``nn.Linear``): 384->1536 with row-major input, 128 rows: 1.3x / 2.2x / 2.3x at
    90 / 97 / 99 % zeros; 4096 rows: 0.96x / 2.2x / 2.6x. 1536->384, 4096 rows: 0.4x / 0.7x / 0.9x with row-major
    input, 0.6x / 3.8x / 7x with column-major input. A whole 6-layer BERT (hidden 384, FFN 1536, sequence 128),
    all prunable layers CSR: batch 1: 1.1x / 1.4x / 1.6x; batch 32: 0.6x / 0.95x / 0.99x.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        """
        Args:
            weight: (out_features, in_features), dense or sparse CSR; stored as a sparse CSR copy.
            bias: (out_features,) or None.

        Raises:
            ValueError: ``weight`` is not 2-D, or ``bias`` is not of shape (out_features,).
        """
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
        out_features, in_features = weight.shape
        if bias is not None and tuple(bias.shape) != (out_features,):
            raise ValueError(f"bias must have shape ({out_features},), got {tuple(bias.shape)}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        weight = weight.detach()
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state", once per process
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
            csr = weight.clone() if weight.layout == torch.sparse_csr else weight.to_sparse_csr()
        self.register_buffer("weight", csr)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> CSRLinear:
        """A CSRLinear computing ``linear``'s function; ``linear`` is not changed and shares no memory with it.

        A parametrized ``linear`` (e.g. a mask from ``bench.core.masking``) contributes its effective (masked) weight.

        Raises:
            ValueError: ``linear`` is not an ``nn.Linear``.
        """
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_features) -> (..., out_features).

        Raises:
            ValueError: the last dimension of ``x`` is not ``in_features``.
        """
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"CSRLinear expects input (..., {self.in_features}), got shape {tuple(x.shape)}")
        x2d = x.reshape(-1, self.in_features)
        if self.bias is None:
            y = torch.sparse.mm(self.weight, x2d.t()).t()
        else:
            y = torch.addmm(self.bias.unsqueeze(1), self.weight, x2d.t()).t()
        return y.reshape(*x.shape[:-1], self.out_features)

    def __deepcopy__(self, memo: dict) -> CSRLinear:
        """An independent copy (``copy.deepcopy`` of a sparse CSR tensor is not supported by torch); hooks are not
        copied."""
        clone = type(self)(self.weight, self.bias)
        clone.train(self.training)
        memo[id(self)] = clone
        return clone

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        density = nnz / max(self.in_features * self.out_features, 1)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"density={density:.4f}"
        )


def sparse_csr_copy(model: nn.Module, min_sparsity: float = 0.0) -> nn.Module:
    """A deep copy of ``model``, in eval mode, with its sparse prunable linear layers stored as CSR.

    Every prunable ``nn.Linear`` (``bench.core.prunable.prunable_weights``) whose weight has a fraction of exact zeros
    >= ``min_sparsity`` is replaced by a :class:`CSRLinear` computing the same function; the others stay
    ``nn.Linear``. ``model`` itself is not changed (its training flag included).

    Raises:
        ValueError: ``min_sparsity`` is not a number in [0, 1].
        bench.core.errors.BenchError: unknown architecture, or no prunable nn.Linear found (e.g. all are CSR already).
    """
    if isinstance(min_sparsity, bool) or not isinstance(min_sparsity, (int, float)) or not 0 <= min_sparsity <= 1:
        raise ValueError(f"min_sparsity must be a number in [0, 1], got {min_sparsity!r}")
    clone = copy.deepcopy(model).eval()
    for pw in prunable_weights(clone):
        with torch.no_grad():
            weight = pw.module.weight
            sparsity = (weight == 0).sum().item() / max(weight.numel(), 1)
        if sparsity < min_sparsity:
            continue
        parent_name, _, attr = pw.name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, attr, CSRLinear.from_linear(pw.module))
    return clone
