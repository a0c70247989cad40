"""Masks as ``torch.nn.utils.parametrize`` parametrizations, and the top-k rule they share.

The lifecycle mirrors torch.ao.pruning's ``BaseSparsifier`` (prepare → step → squash_mask): a method attaches a
:class:`Mask` to every prunable weight, updates the mask's state between optimizer steps, and finally bakes the
hard mask into the weight and removes the parametrization. The model's ``forward`` signature never changes and
receives no schedule value: whatever a schedule decides lives in the mask's buffers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from bench.core.prunable import PrunableWeight
from bench.core.selection import WarmKthValue, kth_value


class Mask(nn.Module):
    """Parametrization ``W ↦ W ⊙ M`` with a hard 0/1 ``mask`` buffer of W's shape (out, in).

    Subclasses may add learnable ``scores`` (registered as parameters of this module, so that they follow the
    model across devices and into ``state_dict``) and override :meth:`forward` for a soft or straight-through
    mask during training. :func:`bake` always uses the hard ``mask`` buffer.
    """

    def __init__(self, weight: Tensor):
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight, dtype=torch.bool), persistent=True)
        self._dense_mask: Tensor | None = None
        self._dense_version = -1

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.dense_mask(weight.dtype)

    def dense_mask(self, dtype: torch.dtype) -> Tensor:
        """``mask`` as 0/1 of ``dtype``, cached until ``mask`` is written again (its version counter changes).

        Multiplying by a float mask is about 3× faster on CPU than by a bool one, forward and backward. Under
        ``torch.compile`` the cache is bypassed: dynamo would check the version once, when tracing, and the compiled
        forward would keep the first mask (measured: benchmarks/compile_step.py); the graph converts it itself.
        """
        if torch.compiler.is_compiling():
            return self.mask.to(dtype)
        cached = self._dense_mask
        stale = cached is None or cached.dtype != dtype or cached.device != self.mask.device
        if stale or self._dense_version != self.mask._version:
            self._dense_mask = self.mask.to(dtype)
            self._dense_version = self.mask._version
        return self._dense_mask


class StraightThroughMask(Mask):
    """``W ↦ W ⊙ M`` whose backward sends ∂L/∂M = W ⊙ ∂L/∂(W⊙M) to ``scores`` unchanged (straight-through).

    The forward value is exactly ``W ⊙ mask``; the gradient of ``scores`` is what Sanh et al. (2020) eq. (3)
    use: ∂L/∂S_ij = ∂L/∂W'_ij · W_ij.
    """

    def __init__(self, weight: Tensor, init: float = 0.0):
        super().__init__(weight)
        self.scores = nn.Parameter(torch.full_like(weight, init, dtype=torch.float32))
        self.expansion: Callable[[Tensor], Tensor] | None = None

    def forward(self, weight: Tensor) -> Tensor:
        scores = self.scores if self.expansion is None else self.expansion(self.scores)
        return weight * _straight_through(scores, self.dense_mask(weight.dtype))

    def regroup(self, scores: Tensor, expansion: Callable[[Tensor], Tensor]) -> None:
        """Let the scores live at a coarser granularity (:mod:`bench.core.granularity`): ``scores`` of the groups'
        shape, which ``expansion`` repeats to W's shape in the forward, so that each group's gradient is the sum of
        its weights' straight-through gradients (Lagunas et al. 2021, eq. 2)."""
        self.scores = nn.Parameter(scores.detach().clone())
        self.expansion = expansion


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: Tensor, mask: Tensor) -> Tensor:
        return mask.to(scores.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def _straight_through(scores: Tensor, mask: Tensor) -> Tensor:
    return _StraightThrough.apply(scores, mask)


def topk_mask(scores: Tensor, sparsity: float, warm: tuple[WarmKthValue, Hashable] | None = None) -> Tensor:
    """Boolean mask keeping the ``numel - round(sparsity * numel)`` largest entries of ``scores``.

    Exactly that many entries are kept; ties at the threshold are broken by position (first kept).
    Cost: one ``kthvalue`` (O(n)), several times cheaper than a full sort on CPU; with ``warm``, a selection
    warm-started from the last threshold of the same key (:class:`~bench.core.selection.WarmKthValue`, same mask).

    Args:
        scores: any shape; compared as a flat vector.
        sparsity: fraction to remove, in [0, 1].
        warm: ``(selector, key)`` for a matrix whose mask is re-selected every step, or None.
    """
    n = scores.numel()
    n_pruned = min(n, max(0, round(sparsity * n)))
    if n_pruned == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    if n_pruned == n:
        return torch.zeros_like(scores, dtype=torch.bool)
    flat = scores.detach().flatten()
    threshold = kth_value(flat, n_pruned) if warm is None else warm[0](warm[1], flat.unsqueeze(0), n_pruned)[0, 0]
    return keep_above(flat, threshold, n - n_pruned).view_as(scores)


def keep_above(flat: Tensor, threshold: Tensor, n_keep: int, keep: Tensor | None = None) -> Tensor:
    """The ``n_keep`` entries of the 1-D ``flat`` kept by a top-k whose k-th smallest pruned value is
    ``threshold``: every entry above it, then the first tied ones (by position) up to ``n_keep``.
    ``keep`` is ``flat > threshold`` when already computed."""
    keep = flat > threshold if keep is None else keep
    deficit = n_keep - int(torch.count_nonzero(keep))  # count_nonzero: a bool .sum() is ~20x slower on CPU
    if deficit > 0:  # ties at the threshold: keep the first `deficit` of them
        tied = (flat == threshold).nonzero().flatten()[:deficit]
        keep[tied] = True
    return keep


def topk_masks(scores: Mapping[str, Tensor], sparsity: float, warm: WarmKthValue | None = None) -> dict[str, Tensor]:
    """:func:`topk_mask` of every matrix at once (local, per-matrix top-k), batched by shape.

    Matrices of one shape are stacked and share one ``kthvalue`` call along the rows, which runs the rows in
    parallel; rows with ties at their threshold keep the first tied entries (:func:`keep_above`). Same result as
    the per-matrix loop, several times faster on CPU for a BERT encoder. With ``warm``, each stack's thresholds are
    warm-started from its previous call (:class:`~bench.core.selection.WarmKthValue`; the same masks, less time).
    """
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for name, s in scores.items():
        by_shape.setdefault(tuple(s.shape), []).append(name)
    out: dict[str, Tensor] = {}
    for names in by_shape.values():
        flat = torch.stack([scores[n].detach().flatten() for n in names])
        n = flat.shape[1]
        n_pruned = min(n, max(0, round(sparsity * n)))
        if n_pruned in (0, n):
            keep = torch.full_like(flat, n_pruned == 0, dtype=torch.bool)
            out.update((name, keep[row].view_as(scores[name])) for row, name in enumerate(names))
            continue
        threshold = kth_value(flat, n_pruned, dim=1) if warm is None else warm(tuple(names), flat, n_pruned)
        keep = flat > threshold
        for row, name in enumerate(names):
            out[name] = keep_above(flat[row], threshold[row], n - n_pruned, keep[row]).view_as(scores[name])
    return out


def min_kept(numel: int, fraction: float) -> int:
    """Weights a matrix of ``numel`` entries keeps at least: ceil(fraction · numel), and never fewer than 1."""
    return max(1, math.ceil(round(fraction * numel, 9)))


def keep_top(scores: Tensor, k: int) -> Tensor:
    """Boolean mask keeping exactly the ``k`` largest entries of ``scores`` (ties broken by position)."""
    n = scores.numel()
    return topk_mask(scores, (n - min(k, n)) / n)


def global_topk_masks(scores: Mapping[str, Tensor], sparsity: float, floor: float | None = None) -> dict[str, Tensor]:
    """Masks that prune the ``round(sparsity · N)`` lowest scores over all matrices together (N = total numel).

    Args:
        scores: ``{name: scores}`` of each matrix, on one device.
        sparsity: overall fraction to remove, in [0, 1].
        floor: when given, each matrix first reserves its top ``min_kept(numel, floor)`` entries, which the
            ranking cannot prune unless the target itself leaves fewer weights than all reserves together.

    Returns:
        ``{name: bool mask}`` with exactly ``N - round(sparsity · N)`` True entries in all.
    """
    names = list(scores)
    flat = []
    for name in names:
        s = scores[name].detach().flatten().float()
        if floor is not None:
            reserved = keep_top(s, min_kept(s.numel(), floor))
            s = s.masked_fill(reserved, math.inf)
        flat.append(s)
    keep = topk_mask(torch.cat(flat), sparsity)
    parts = keep.split([s.numel() for s in flat])
    return {name: part.view_as(scores[name]) for name, part in zip(names, parts, strict=True)}


def attach(weights: list[PrunableWeight], make_mask: Callable[[PrunableWeight], Mask]) -> dict[str, Mask]:
    """Register ``make_mask(pw)`` as the parametrization of each ``pw.module.weight``.

    Returns:
        ``{module name: mask module}`` in the order of ``weights``.
    """
    masks = {}
    for pw in weights:
        mask = make_mask(pw)
        parametrize.register_parametrization(pw.module, "weight", mask)
        masks[pw.name] = mask
    return masks


def bake(model: nn.Module) -> None:
    """Multiply every masked weight by its hard ``mask`` and remove the parametrizations.

    Afterwards the model has its original parameter names and exact zeros where the masks were 0, so it
    saves and loads with stock transformers. Unmasked entries keep their bits (they are multiplied by 1).
    """
    for module in model.modules():
        if not parametrize.is_parametrized(module, "weight"):
            continue
        param_list = module.parametrizations["weight"]
        with torch.no_grad():
            for mask in param_list:
                if isinstance(mask, Mask):
                    param_list.original.mul_(mask.mask)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)


def original_weight(module: nn.Module) -> Tensor:
    """The unmasked weight of a (possibly parametrized) linear layer."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations["weight"].original
    return module.weight
