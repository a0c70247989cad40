"""The hybrid grouping of block movement pruning: square blocks on attention, whole units on the FFN, and the heads
that emerge from the blocks.

Lagunas, Charlaix, Sanh & Rush (2021), "Block Pruning For Faster Transformers" (arXiv 2109.04838), section 3
(block movement pruning, eqs. 1-2) and their "Hybrid" recipe, as nn_pruning codes it (``SparseTrainingArguments.hybrid``
in ``nn_pruning/patch_coordinator.py``): Q, K, V and the attention output O are scored per 32 × 32 block
(``attention_block_rows = attention_block_cols = 32``; ``attention_output_with_dense = False`` gives O the attention's
blocks), the FFN per unit (``dense_pruning_method = "sigmoied_threshold:1d_alt"``): ``ChannelPruningModulePatcher``
gives FFN-in's row scores and FFN-out's column scores the same context key, so one score vector per layer decides
row i of FFN-in and column i of FFN-out together, and a pruned unit compacts away. No score is kept per head: a head
"emerges" when every block of its rows is pruned. nn_pruning's ``compile_model`` then removes each head whose Q, K or
V rows are all zero (``BertHeadsPruner.get_pruned_heads``, at least one head kept per layer); :meth:`HybridGrouping.
final_masks` prunes such a head whole in the masks before they are baked (and a head whose O columns are all
pruned), so that :func:`bench.deploy.compaction.compact` removes it (compaction removes, exactly, the heads whose V
rows or O columns are all zero).

Departures from nn_pruning: blocks are at most one head high and wide (``block_size`` capped at the head size, so a
block never spans two heads; nothing changes for heads of 32 or 64); partial blocks at the edges where a side is not
a multiple of the block size (nn_pruning requires divisibility); the whole-head step re-ranks the other groups so that
the target sparsity still holds, and keeps no head per layer (compaction keeps one all-zero head where all go).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from bench.core.errors import BenchError
from bench.core.granularity import Expansion, Grouping, ScoreSet
from bench.core.masking import StraightThroughMask
from bench.core.prunable import PrunableWeight

ATTENTION = ("q", "k", "v", "o")


class HybridGrouping(Grouping):
    """Groups of the hybrid recipe: one set per attention matrix of square ``block_size`` blocks (partial blocks at
    the edges when the sides are not multiples of it), and one set per layer of FFN units, each unit FFN-in's row i
    and FFN-out's column i (:class:`~bench.core.granularity.Grouping` does the pooling, expansion and ranking).

    Args:
        weights: the model's prunable weights (:func:`bench.core.prunable.prunable_weights`).
        block_size: the side of the attention blocks, at most the head size (:attr:`block_size` is the side used:
            a block never spans two heads; 32 is below BERT-base's 64 and equal to MiniLM's 32).
        heads: attention heads per layer.

    Raises:
        BenchError: a layer lacking one of the six roles, or Q/K/V/O widths that are not a multiple of ``heads``.
    """

    def __init__(self, weights: list[PrunableWeight], block_size: int, heads: int | None):
        super().__init__("hybrid")
        layers: dict[int, dict[str, str]] = {}
        shapes = {pw.name: tuple(pw.module.weight.shape) for pw in weights}
        for pw in weights:
            layers.setdefault(pw.layer, {})[pw.role] = pw.name
        self.layers = dict(sorted(layers.items()))  # {layer: {role: matrix name}}
        self.heads = heads or 1
        for layer, roles in self.layers.items():
            width = shapes[roles["v"]][0] if "v" in roles else 0
            missing = sorted({*ATTENTION, "ffn_in", "ffn_out"} - set(roles))
            if missing or not heads or width % heads:
                raise BenchError(f"block_movement needs Q, K, V, O, FFN-in and FFN-out in every layer with a width "
                                 f"divisible by the {heads} heads; layer {layer} lacks {missing} or has width "
                                 f"{width}")  # fmt: skip
            self.head_size = width // heads
            self.block_size = min(block_size, self.head_size)  # a block never spans two heads
            for role in ATTENTION:
                name = roles[role]
                exp = self.expansions[name] = Expansion("block", self.block_size, shapes[name])
                self.sets.append(ScoreSet(name, name, (name,), exp.sizes()))
            unit_in, unit_out = roles["ffn_in"], roles["ffn_out"]
            self.expansions[unit_in] = Expansion("rows", 1, shapes[unit_in])
            self.expansions[unit_out] = Expansion("cols", 1, shapes[unit_out])
            sizes = self.expansions[unit_in].sizes() + self.expansions[unit_out].sizes()
            self.sets.append(ScoreSet(f"{layer}.units", str(layer), (unit_in, unit_out), sizes))

    def regroup(self, masks: Mapping[str, nn.Module]) -> None:
        """Scores at the groups' shape (:meth:`Grouping.regroup`), then FFN-out's mask takes FFN-in's score
        parameter itself: one vector per layer, whose gradient sums FFN-in's row and FFN-out's column terms."""
        super().regroup(masks)
        for roles in self.layers.values():
            unit_in, unit_out = masks[roles["ffn_in"]], masks[roles["ffn_out"]]
            if isinstance(unit_in, StraightThroughMask) and isinstance(unit_out, StraightThroughMask):
                unit_out.scores = unit_in.scores

    def attention_sets(self) -> list[ScoreSet]:
        return [s for s in self.sets if not s.key.endswith(".units")]

    def unit_sets(self) -> list[ScoreSet]:
        return [s for s in self.sets if s.key.endswith(".units")]

    def dead_heads(self, keep: Mapping[str, Tensor], whole: bool = False) -> Tensor:
        """Bool (layers, heads): the head's rows of Q, K or V, or its columns of O, are all pruned in ``keep``
        (``{matrix name: bool mask of the weight's shape}``); with ``whole``, all four of them are."""
        dead = []
        for roles in self.layers.values():
            rows = [keep[roles[r]].reshape(self.heads, -1).any(1) for r in ("q", "k", "v")]
            cols = keep[roles["o"]].reshape(-1, self.heads, self.head_size).any(2).any(0)
            alive = torch.stack([*rows, cols])
            dead.append(~alive.any(0) if whole else ~alive.all(0))
        return torch.stack(dead).cpu()

    def head_groups(self, dead: Tensor) -> dict[str, Tensor]:
        """``{attention matrix name: bool at its groups' shape}``: the blocks that hold any weight of a ``dead`` head
        (its rows of Q, K and V, its columns of O)."""
        out = {}
        for roles, heads in zip(self.layers.values(), dead, strict=True):
            rows = heads.repeat_interleave(self.head_size)
            for role in ATTENTION:
                name = roles[role]
                shape = self.expansions[name].shape
                touched = rows[:, None].expand(shape) if role != "o" else rows[None, :].expand(shape)
                out[name] = self.expansions[name].sums(touched.float()) > 0
        return out

    def final_masks(self, scores: Mapping[str, Tensor], sparsity: float, floor: float) -> tuple[dict, int]:
        """Masks at ``sparsity`` by a global ranking of all groups by their scores, counting each group's weights
        (:meth:`Grouping.global_masks`, each set first reserving its top ``floor`` fraction), in which every head
        that the ranking leaves with all rows of Q, K or V (or all columns of O) pruned is pruned whole, as
        nn_pruning's compile removes it; the other groups are ranked again so that the target holds. Repeated until
        no further head dies (at most once per head).

        Returns:
            ``({matrix name: bool mask}, heads pruned whole)``: the heads whose rows of Q, K and V and columns of O
            are all pruned (a head whose blocks hold a matrix's reserved floor keeps them).
        """
        scores = {name: s.detach().float() for name, s in scores.items()}
        dead = torch.zeros(len(self.layers), self.heads, dtype=torch.bool)
        for _ in range(dead.numel() + 1):
            forced = self.head_groups(dead)
            ranked = {n: s.masked_fill(forced[n].to(s.device), -math.inf) if n in forced else s
                      for n, s in scores.items()}  # fmt: skip
            keep = self.global_masks(ranked, sparsity, floor)
            now = dead | self.dead_heads(keep)
            if torch.equal(now, dead):
                break
            dead = now
        return keep, int(self.dead_heads(keep, whole=True).sum())
