"""Structured compaction: physically remove the attention heads and FFN units a finalized model no longer uses.

Unstructured pruning leaves exact zeros that standard dense kernels still multiply, so a masked model is no
faster than the dense one (Sanh, Wolf & Rush 2020, appendix A.3). Where the zeros line up into whole structures,
the structures can be cut out and the model really shrinks:

* **Attention head h** of a layer is removed when its value rows ``W_V[h]`` are all zero or its output columns
  ``W_O[:, h]`` are all zero. With ``W_V[h] = 0`` the head's context is ``softmax(·) (0·x + b_V[h]) = b_V[h]``
  whatever the attention pattern (each row of the softmax sums to 1), so its contribution ``W_O[:, h] b_V[h]`` is
  folded into the output bias ``b_O``; Q and K of that head are then unused. This is a superset of "Q, K and V
  all zero" and exact.
* **FFN unit j** is removed when its FFN-out column ``W_out[:, j]`` is all zero (it contributes nothing), or its
  FFN-in row ``W_in[j]`` is all zero: its activation is then the constant ``act(b_in[j])``, and
  ``W_out[:, j] act(b_in[j])`` is folded into ``b_out``.

Each layer keeps at least one head and one unit (an empty Linear is not loadable); a layer whose every head or unit
is removable keeps one unchanged. Folding changes float rounding only (outputs agree to ~1e-6).

Transformers 5 removed ``prune_heads`` and ``config.pruned_heads``, and a BERT config has one head count and one
FFN width for all layers, so the compacted model records each compacted Linear's shape in ``config.compact_shapes``
and :func:`bench.deploy.export.load_export` builds a subclass of the stock class that resizes those Linears before
loading (in process, from the installed package: exports hold no code). The attention code of BERT, RoBERTa and
DistilBERT reshapes by ``(-1, head_size)``, so fewer heads need no other change; MPNet's relative-position bias
has one row per head, so MPNet keeps its heads (FFN units are still removed).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from bench.core.prunable import architecture_of, prunable_weights


@dataclass(frozen=True)
class CompactionReport:
    """What compaction removed.

    Attributes:
        heads_total, heads_removed: attention heads over all layers, and how many were cut out.
        ffn_units_total, ffn_units_removed: FFN hidden units over all layers, and how many were cut out.
        prunable_params: size of the prunable set before compaction.
        pruned_weights: exact zeros in the prunable set before compaction (what the method pruned).
        structured_weights: of those zeros, how many were physically removed with a head or unit.
        structured_fraction: structured_weights / pruned_weights (0 when nothing was pruned): how much of the
            method's sparsity became structure.
        compacted_params: size of the prunable set after compaction (zeros still inside included).
        compacted_zeros: exact zeros left inside the compacted prunable set (unstructured sparsity).
        shapes: ``{module name: [out_features, in_features]}`` of every prunable Linear after compaction.
    """

    heads_total: int
    heads_removed: int
    ffn_units_total: int
    ffn_units_removed: int
    prunable_params: int
    pruned_weights: int
    structured_weights: int
    structured_fraction: float
    compacted_params: int
    compacted_zeros: int
    shapes: dict[str, list[int]]

    def to_dict(self, shapes: bool = False) -> dict:
        out = asdict(self)
        if not shapes:
            out.pop("shapes")
        return out


def num_heads(config) -> int:
    return getattr(config, "num_attention_heads", None) or config.n_heads


def activation(config):
    from transformers.activations import ACT2FN

    return ACT2FN[getattr(config, "hidden_act", None) or config.activation]


def all_zero(weight: Tensor, dim: int) -> Tensor:
    """Bool per row (``dim=1``) or per column (``dim=0``): every entry is exactly zero."""
    return (weight == 0).all(dim=dim)


@torch.no_grad()
def compact(model: nn.Module) -> tuple[nn.Module, CompactionReport]:
    """A compacted deep copy of a finalized ``model`` (plain weights with exact zeros), and what was removed.

    The copy computes the same function as ``model`` (up to float rounding of the folded biases); ``model`` is
    not changed. See the module docstring for the rules.

    Raises:
        BenchError: unsupported architecture (see :func:`bench.core.prunable.architecture_of`).
    """
    model = copy.deepcopy(model).eval()
    weights = prunable_weights(model)
    before = sum(pw.module.weight.numel() for pw in weights)
    zeros_before = sum(int((pw.module.weight == 0).sum()) for pw in weights)
    by_layer: dict[int, dict[str, object]] = {}
    for pw in weights:
        by_layer.setdefault(pw.layer, {})[pw.role] = pw
    heads = num_heads(model.config)
    removable = architecture_of(model).removable_heads
    counts = {"heads": 0, "units": 0}
    for roles in by_layer.values():
        if removable:
            counts["heads"] += compact_heads(model, roles, heads)
        counts["units"] += compact_ffn(model, roles, activation(model.config))
    after = prunable_weights(model)
    zeros_after = sum(int((pw.module.weight == 0).sum()) for pw in after)
    structured = zeros_before - zeros_after
    return model, CompactionReport(
        heads_total=heads * len(by_layer),
        heads_removed=counts["heads"],
        ffn_units_total=sum(r["ffn_in"].module.out_features for r in by_layer.values()),
        ffn_units_removed=counts["units"],
        prunable_params=before,
        pruned_weights=zeros_before,
        structured_weights=structured,
        structured_fraction=structured / zeros_before if zeros_before else 0.0,
        compacted_params=sum(pw.module.weight.numel() for pw in after),
        compacted_zeros=zeros_after,
        shapes={pw.name: list(pw.module.weight.shape) for pw in after},
    )


def keep_at_least_one(drop: Tensor) -> Tensor:
    """``drop`` (bool per head or unit), with the first one kept when every one would go."""
    if bool(drop.all()):
        drop = drop.clone()
        drop[0] = False
    return drop


def compact_heads(model: nn.Module, roles: dict, heads: int) -> int:
    """Remove the dead heads of one layer (``roles``: role → PrunableWeight). Returns how many were removed."""
    q, k, v, o = (roles[r].module for r in ("q", "k", "v", "o"))
    size = v.out_features // heads
    v_dead = all_zero(v.weight, dim=1).view(heads, size).all(dim=1)
    o_dead = all_zero(o.weight, dim=0).view(heads, size).all(dim=1)
    drop = keep_at_least_one(v_dead | o_dead)
    if not bool(drop.any()):
        return 0
    if v.bias is not None and o.bias is not None:
        fold = (v_dead & ~o_dead & drop).repeat_interleave(size)
        o.bias += o.weight[:, fold] @ v.bias[fold]
    keep = (~drop).repeat_interleave(size).nonzero().squeeze(1)
    for role, module in (("q", q), ("k", k), ("v", v)):
        replace_module(model, roles[role].name, select(module, rows=keep))
    replace_module(model, roles["o"].name, select(o, cols=keep))
    return int(drop.sum())


def compact_ffn(model: nn.Module, roles: dict, act) -> int:
    """Remove the dead FFN units of one layer. Returns how many were removed."""
    ffn_in, ffn_out = roles["ffn_in"].module, roles["ffn_out"].module
    in_dead = all_zero(ffn_in.weight, dim=1)
    out_dead = all_zero(ffn_out.weight, dim=0)
    drop = keep_at_least_one(in_dead | out_dead)
    if not bool(drop.any()):
        return 0
    fold = in_dead & ~out_dead & drop
    if bool(fold.any()) and ffn_out.bias is not None:
        constant = act(ffn_in.bias[fold]) if ffn_in.bias is not None else act(torch.zeros(int(fold.sum())))
        ffn_out.bias += ffn_out.weight[:, fold] @ constant
    keep = (~drop).nonzero().squeeze(1)
    replace_module(model, roles["ffn_in"].name, select(ffn_in, rows=keep))
    replace_module(model, roles["ffn_out"].name, select(ffn_out, cols=keep))
    return int(drop.sum())


def select(linear: nn.Linear, rows: Tensor | None = None, cols: Tensor | None = None) -> nn.Linear:
    """A new Linear with the given output ``rows`` and/or input ``cols`` of ``linear`` (bias follows rows)."""
    weight = linear.weight
    bias = linear.bias
    if rows is not None:
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    if cols is not None:
        weight = weight[:, cols]
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    out.weight.copy_(weight)
    if bias is not None:
        out.bias.copy_(bias)
    return out


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
