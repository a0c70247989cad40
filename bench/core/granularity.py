"""Granularity of score-based pruning: scores per weight, per square block, or per attention head and FFN unit.

Lagunas, Charlaix, Sanh & Rush (2021), "Block Pruning For Faster Transformers" (arXiv 2109.04838), section 3 and
eqs. (1)-(2): movement pruning's masked weight ``W' = W ⊙ M(S)`` (Sanh et al. 2020) with the weight W (out, in) split
into blocks of shape (M, N) and one score per block, the block mask repeated over its block; the block score's
straight-through gradient is the sum over the block of the per-weight ones,
``∂L/∂S'_{k,l} = Σ_{(i,j) in block (k,l)} (∂L/∂W'_ij) W_ij``. Their nn_pruning code keeps the block scores as a
``(out / M, in / N)`` parameter and expands it with ``repeat_interleave`` on both axes
(``nn_pruning.modules.masked_nn.MaskModule.expand_mask``); rows / columns ("1d" scores) prune whole FFN units, and
heads emerge from blocks. Here the three granularities are:

* ``unstructured``: one score per weight (Sanh et al. 2020), the default.
* ``block``: square ``block_size`` × ``block_size`` blocks, one score each, ranked per matrix. A matrix whose sides
  are not multiples of the block size gets partial blocks at its bottom and right edges (nn_pruning requires
  divisibility); every block is ranked by its score and counted by its real number of weights.
* ``structured``: one score per attention head and layer, shared by the head's rows of Q, K and V and its columns
  of the attention output O, and one score per FFN unit and layer, shared by row i of FFN-in and column i of
  FFN-out. A pruned head or unit is therefore all zero in every matrix it touches, so
  :func:`bench.deploy.compaction.compact` removes it.

Scores that a method computes per weight (magnitude's |W|) are reduced to their group by the **mean** over the
group. Learned scores (a :class:`~bench.core.masking.StraightThroughMask`) are made to live at the group's shape by
:meth:`Grouping.regroup` (initialised to the mean of their per-weight initial values); their forward expands them,
so autograd sums the straight-through gradient over the group (eq. 2). A structured head or unit that spans several
matrices pools its members' group scores by their mean.

Departures from the paper (in the methods' docstrings too):

* Structured learned scores are kept per matrix (a head has a score in each of Q, K, V and O; a unit one in FFN-in
  and one in FFN-out) and pooled by their mean when ranking, not one shared parameter: one parameter registered in
  four masks would appear four times in the optimizer. With SGD the pooled score follows exactly the shared score's
  path (up to the factor 1/4 or 1/2); with Adam each part is normalised on its own.
* The kept count follows the cubic schedule of the method (top-v on groups, as Sanh et al.'s eq. 2 on weights)
  rather than the paper's soft-movement threshold. Per matrix (``block``) and per layer (``structured``) the
  groups with the lowest scores are pruned, each one that brings the pruned weights closer to the target
  (:func:`prune_to`). In ``structured`` the layer's heads are pruned first at the target fraction of its attention
  weights (to the nearest head) and its FFN units take up the difference to the layer's target, so every layer
  is within half an FFN unit of the target sparsity.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bench.core.errors import BenchError
from bench.core.masking import StraightThroughMask, WarmKthValue, global_topk_masks, keep_top, min_kept, topk_masks
from bench.core.prunable import PrunableWeight

GRANULARITIES = ("unstructured", "block", "structured")


def check_granularity(hparams: Mapping[str, Any], method: str | None = None) -> None:
    """Raise a one-line BenchError, naming the setting, the ``method`` when given and the valid values, for an unknown
    ``granularity`` or a ``block_size`` that is not an integer >= 1 (absent keys are not checked)."""
    of = f" of method {method!r}" if method else ""
    if "granularity" in hparams and hparams["granularity"] not in GRANULARITIES:
        raise BenchError(f"hyperparameter 'granularity'{of} must be one of {', '.join(GRANULARITIES)}, "
                         f"got {hparams['granularity']!r}")  # fmt: skip
    size = hparams.get("block_size", 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise BenchError(f"hyperparameter 'block_size'{of} must be an integer >= 1, got {size!r}")


@dataclasses.dataclass(frozen=True)
class GranularityHparams:
    """Where a score-based method's scores live (module docstring): ``granularity`` is ``unstructured`` (one score
    per weight, the default), ``block`` (``block_size`` × ``block_size`` blocks) or ``structured`` (attention heads
    and FFN units). A method's ``Hparams`` inherits it beside
    :class:`~bench.core.schedule.CubicScheduleHparams`; the base class does the rest."""

    granularity: str = "unstructured"
    block_size: int = 32

    def __post_init__(self) -> None:
        check_granularity(dataclasses.asdict(self))


def recorded_hparams(hparams: Any) -> dict[str, Any]:
    """``asdict(hparams)`` as cell ids and records hold it: ``granularity`` only when it is not ``unstructured`` and
    ``block_size`` only with ``block`` granularity (where they change nothing they stay out, so the cells of every
    matrix from before the setting keep their ids)."""
    out = dataclasses.asdict(hparams)
    if isinstance(hparams, GranularityHparams):
        if hparams.granularity == "unstructured":
            del out["granularity"]
        if hparams.granularity != "block":
            del out["block_size"]
    return out


@dataclasses.dataclass(frozen=True)
class Expansion:
    """How one matrix of ``shape`` (out, in) maps onto its groups: ``block`` (square blocks of side ``size``),
    ``rows`` (``size`` consecutive rows per group) or ``cols`` (``size`` consecutive columns per group)."""

    kind: str
    size: int
    shape: tuple[int, int]

    @property
    def groups(self) -> tuple[int, ...]:
        out, inp = self.shape
        if self.kind == "block":
            return (math.ceil(out / self.size), math.ceil(inp / self.size))
        return ((out if self.kind == "rows" else inp) // self.size,)

    def __call__(self, groups: Tensor) -> Tensor:
        """``groups`` (of :attr:`groups`' shape) repeated over each group: a tensor of :attr:`shape`; differentiable,
        so the gradient of a group is the sum over its weights (Lagunas et al. eq. 2)."""
        out, inp = self.shape
        if self.kind == "block":
            return groups.repeat_interleave(self.size, 0).repeat_interleave(self.size, 1)[:out, :inp]
        full = groups.repeat_interleave(self.size)
        return full[:, None].expand(out, inp) if self.kind == "rows" else full[None, :].expand(out, inp)

    def reduce(self, values: Tensor) -> Tensor:
        """The mean of ``values`` (of :attr:`shape`) over each group; ``values`` already of the groups' shape pass."""
        if tuple(values.shape) == self.groups:
            return values
        if tuple(values.shape) != self.shape:
            raise BenchError(f"scores of shape {tuple(values.shape)} fit neither the weight {self.shape} nor its "
                             f"groups {self.groups}")  # fmt: skip
        return self.sums(values.float()) / self.sizes().to(values.device)

    def sums(self, values: Tensor) -> Tensor:
        out, inp = self.shape
        n = self.groups
        if self.kind == "block":
            padded = nn.functional.pad(values, (0, n[1] * self.size - inp, 0, n[0] * self.size - out))
            return padded.view(n[0], self.size, n[1], self.size).sum(dim=(1, 3))
        if self.kind == "rows":
            return values.reshape(n[0], self.size * inp).sum(1)
        return values.reshape(out, n[0], self.size).sum(dim=(0, 2))

    def sizes(self) -> Tensor:
        """Weights in each group (partial edge blocks have fewer)."""
        return self.sums(torch.ones(self.shape))


@dataclasses.dataclass(frozen=True)
class ScoreSet:
    """Groups ranked together: ``members`` are the matrices they span (each with its :class:`Expansion`), ``sizes``
    the weights per group over all members, ``layer`` the key within which a shortfall carries over."""

    key: str
    layer: str
    members: tuple[str, ...]
    sizes: Tensor

    @property
    def numel(self) -> int:  # weights in the set
        return int(self.sizes.sum())


def prune_to(scores: Tensor, sizes: Tensor, target: float) -> Tensor:
    """Keep-mask over groups: in ascending order of ``scores`` (ties: the later group first, as
    :func:`~bench.core.masking.topk_mask` keeps the first), prune every group whose ``sizes`` brings the pruned
    weights closer to ``target``. With equal sizes these are the ``round(target / size)`` lowest (halves down)."""
    shape, device = scores.shape, scores.device  # ranked on the CPU (a few thousand groups), returned on the device
    scores, sizes = scores.detach().float().flatten().cpu(), sizes.flatten().cpu()
    order = torch.argsort(-scores, stable=True).flip(0)
    ordered = sizes[order].double()
    csum = ordered.cumsum(0)
    fits = (csum - ordered / 2) < target
    first = int((~fits).nonzero()[0]) if not bool(fits.all()) else len(order)
    keep = torch.ones(len(order), dtype=torch.bool)
    keep[order[:first]] = False
    pruned = float(csum[first - 1]) if first else 0.0
    smallest = float(ordered[first:].min()) if first < len(order) else 0.0
    for i in order[first:].tolist():  # a mix of sizes: smaller groups after a big one may still fit
        if target - pruned <= smallest / 2:
            break
        if pruned + float(sizes[i]) / 2 < target:
            keep[i] = False
            pruned += float(sizes[i])
    return keep.view(shape).to(device)


class Grouping:
    """The groups of one model's prunable weights at one granularity, and the masks their scores give.

    Args:
        granularity, block_size: as :class:`GranularityHparams`.
        weights: the model's prunable weights (:func:`bench.core.prunable.prunable_weights`).
        heads: attention heads per layer (``structured`` only).

    Raises:
        BenchError: ``structured`` on a model whose layers lack one of the six roles or whose Q/K/V/O widths are not
            a multiple of ``heads``.
    """

    def __init__(self, granularity: str = "unstructured", block_size: int = 32,
                 weights: list[PrunableWeight] | tuple = (), heads: int | None = None):  # fmt: skip
        self.granularity = granularity
        self.unstructured, self.warm = granularity == "unstructured", WarmKthValue()  # warm: last top-k thresholds
        self.expansions: dict[str, Expansion] = {}
        self.sets: list[ScoreSet] = []
        if granularity == "block":
            for pw in weights:
                exp = self.expansions[pw.name] = Expansion("block", block_size, tuple(pw.module.weight.shape))
                self.sets.append(ScoreSet(pw.name, pw.name, (pw.name,), exp.sizes()))
        elif granularity == "structured":
            self._structured(weights, heads)

    def _structured(self, weights: list[PrunableWeight], heads: int | None) -> None:
        by_layer: dict[int, dict[str, PrunableWeight]] = {}
        for pw in weights:
            by_layer.setdefault(pw.layer, {})[pw.role] = pw
        for layer, roles in sorted(by_layer.items()):
            missing = {"q", "k", "v", "o", "ffn_in", "ffn_out"} - set(roles)
            width = roles["v"].module.out_features if "v" in roles else 0
            if missing or not heads or width % heads:
                raise BenchError(f"granularity 'structured' needs Q, K, V, O, FFN-in and FFN-out in every layer with "
                                 f"a width divisible by the {heads} heads; layer {layer} lacks {sorted(missing)} or "
                                 f"has width {width}")  # fmt: skip
            for key, members in (("heads", {"q": "rows", "k": "rows", "v": "rows", "o": "cols"}),
                                 ("units", {"ffn_in": "rows", "ffn_out": "cols"})):  # fmt: skip
                size = width // heads if key == "heads" else 1
                for role, kind in members.items():
                    pw = roles[role]
                    self.expansions[pw.name] = Expansion(kind, size, tuple(pw.module.weight.shape))
                names = tuple(roles[role].name for role in members)
                sizes = sum(self.expansions[n].sizes() for n in names)
                self.sets.append(ScoreSet(f"{layer}.{key}", str(layer), names, sizes))

    def pooled(self, scores: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """One score per group of every set: the mean over the set's members of their group scores (a member's
        per-weight scores first reduced by the mean over each group)."""
        out = {}
        for s in self.sets:
            parts = [self.expansions[n].reduce(scores[n].detach()).float() for n in s.members]
            out[s.key] = parts[0] if len(parts) == 1 else torch.stack(parts).mean(0)
        return out

    def expand(self, keep: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{matrix name: bool mask of the weight's shape}`` from ``{set key: bool keep over its groups}``."""
        out = {}
        for s in self.sets:
            for name in s.members:
                out[name] = self.expansions[name](keep[s.key]).contiguous()
        return out

    def local_masks(self, scores: Mapping[str, Tensor], sparsity: float) -> dict[str, Tensor]:
        """Masks at ``sparsity`` per matrix (``block``) or per layer (``structured``, heads first, FFN units taking
        up the difference); per-weight local top-k (:func:`~bench.core.masking.topk_masks`) when unstructured."""
        if self.unstructured:
            return topk_masks(scores, sparsity, self.warm)
        pooled, keep, carry = self.pooled(scores), {}, {}
        for s in self.sets:
            target = sparsity * s.numel + carry.get(s.layer, 0.0)
            keep[s.key] = prune_to(pooled[s.key], s.sizes, target)
            carry[s.layer] = target - float(s.sizes[~keep[s.key].cpu()].sum())
        return self.expand(keep)

    def global_masks(self, scores: Mapping[str, Tensor], sparsity: float, floor: float | None = None) -> dict:
        """Masks at ``sparsity`` over all groups together, each set first reserving its top ``min_kept(groups,
        floor)`` groups when ``floor`` is given (:func:`~bench.core.masking.global_topk_masks` when unstructured)."""
        if self.unstructured:
            return global_topk_masks(scores, sparsity, floor)
        pooled = self.pooled(scores)
        flat = []
        for s in self.sets:
            p = pooled[s.key]
            p = p.masked_fill(keep_top(p, min_kept(p.numel(), floor)), math.inf) if floor is not None else p
            flat.append(p.flatten())
        total = sum(s.numel for s in self.sets)
        keep = prune_to(torch.cat(flat), torch.cat([s.sizes.flatten() for s in self.sets]), sparsity * total)
        parts = keep.split([s.sizes.numel() for s in self.sets])
        return self.expand({s.key: part.view_as(s.sizes) for s, part in zip(self.sets, parts, strict=True)})

    def rule_masks(self, scores: Mapping[str, Tensor], rule: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
        """Masks from ``rule`` (scores → bool keep of the same shape) applied to each matrix's scores, or to each
        set's pooled group scores and expanded."""
        if self.unstructured:
            return {name: rule(s) for name, s in scores.items()}
        return self.expand({key: rule(p) for key, p in self.pooled(scores).items()})

    def regroup(self, masks: Mapping[str, nn.Module]) -> None:
        """Give every :class:`~bench.core.masking.StraightThroughMask` scores of its groups' shape (the mean of its
        initial per-weight scores over each group), expanded in its forward (nothing when unstructured)."""
        for name, mask in masks.items():
            if not self.unstructured and isinstance(mask, StraightThroughMask):
                exp = self.expansions[name]
                mask.regroup(exp.reduce(mask.scores.detach()).to(mask.scores.dtype), exp)


def grouping_for(hparams: Any, weights: list[PrunableWeight], model: nn.Module) -> Grouping:
    """The :class:`Grouping` of a method's ``hparams`` on ``model`` (unstructured unless they inherit
    :class:`GranularityHparams`)."""
    if not isinstance(hparams, GranularityHparams) or hparams.granularity == "unstructured":
        return Grouping()
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", None)
    return Grouping(hparams.granularity, hparams.block_size, weights, heads)
