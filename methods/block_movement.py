"""``block_movement``: the hybrid block movement pruning of Lagunas, Charlaix, Sanh & Rush (2021), "Block Pruning For
Faster Transformers" (EMNLP, arXiv 2109.04838), as their nn_pruning code runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from bench.methods.soft_movement import MIN_KEEP, SoftMovement, threshold_mask
from torch import Tensor, nn

from bench.core.errors import BenchError
from bench.core.hybrid_grouping import HybridGrouping
from bench.core.masking import attach
from bench.core.prunable import prunable_weights
from bench.core.schedule import CubicScheduleHparams

if TYPE_CHECKING:
    import optuna

    from bench.core.task import Task


class BlockMovement(SoftMovement):
    """Hybrid block movement pruning: 32 × 32 blocks on attention, whole units on the FFN, soft-movement thresholds.

    Paper (Lagunas et al. 2021, section 3, eqs. 1-2, as :mod:`bench.core.granularity` cites it) and the hybrid recipe
    of their code (nn_pruning, ``SparseTrainingArguments.hybrid`` in ``nn_pruning/patch_coordinator.py``; the grouping
    is :mod:`bench.core.hybrid_grouping`). The recipe's details and defaults below are read from that code and from
    the runs it released, not checked against the paper's text:
      * W' = W ⊙ M(S') with one score per group, the group's mask repeated over it (eq. 1); the straight-through
        gradient of a group's score is the sum over its weights of ∂L/∂W'_ij · W_ij (eq. 2);
      * Q, K, V and the attention output O: one score per ``block_size`` × ``block_size`` block (32, the hybrid's
        ``attention_block_rows/cols``; ``attention_output_with_dense = False`` gives O blocks too); no score per
        head: heads emerge where all blocks of a head's rows are pruned;
      * FFN: one score per unit, a single parameter shared by FFN-in's row i and FFN-out's column i (the "1d_alt"
        row and column scores of ``ChannelPruningModulePatcher`` share one context key), so its gradient is the sum
        of both terms and a pruned unit is removed whole by compaction;
      * mask 1[σ(S) > τ] per group ("sigmoied_threshold", ``ThresholdBinarizer`` in ``nn_pruning/modules/
        binarizer.py``), every matrix keeping at least 0.5% of its blocks and every layer 0.5% of its units
        (``linear_min_parameters`` = 0.005);
      * τ from 0 to τ_f = 0.1 on the cubic schedule (``schedule_threshold``), λ_t = λ_f·τ_t/τ_f; objective
        L_task + λ_t·R, R = (A + F)/2 (``regularization_loss``: one term per kind, attention and dense, each
        weighted 1/2), A the mean over the attention matrices of mean σ(S) over their blocks, F the mean over the
        layers of mean σ(S) over their units ("l1", ``GenericLinearPruningContextModule.regularization`` in
        ``nn_pruning/modules/masked_nn.py``).

    Defaults, from nn_pruning: ``block_size`` 32, τ_f = 0.1 (``hybrid``); scores initialised to the constant 0
    (``mask_init`` "constant", ``mask_scale`` 0) with lr 1e-2 and no weight decay (``mask_scores_learning_rate``,
    ``create_optimizer_groups``); λ_f = 10, the middle of the authors' SQuAD hybrid sweep λ ∈ {2.5, 5, 10, 20, 30}
    (the BERT-base runs in their ``analysis/checkpoints/checkpoints.jsonl`` leave 39% to 13% of the linear weights;
    λ = 10 leaves 22%) and the default of their ``examples/command_line.py``; warm-up and cool-down 0.05 and 0.49
    of the run: those SQuAD runs hold τ for ``initial_warmup`` = 1 and ``final_warmup`` = 10 lr warm-ups of 5,400
    steps in 20 epochs of about 5,540 steps at batch 16 (110,800 steps; 0.049 and 0.487).

    ``min_ramp_steps`` = 51,400: the threshold ramp of that run (110,800 − 5,400 − 54,000 steps).

    On MiniLM (hidden 384, 12 heads of 32) a 32-row block of Q, K or V lies inside one head: the head's rows of V are
    zero when its 12 blocks of V are all pruned, and :func:`bench.deploy.compaction.compact` removes a head whose V
    rows or O columns are all zero. As nn_pruning's ``compile_model`` (``BertHeadsPruner``) removes every head whose
    Q, K or V rows are all zero, :meth:`set_final_masks` prunes such a head whole (its rows of Q, K, V and columns of
    O), so that compaction removes it (:meth:`bench.core.hybrid_grouping.HybridGrouping.final_masks`).

    Departures:
      * The sparsity the threshold reaches is set by λ, not by the target. :meth:`set_final_masks` therefore
        projects onto the target with a global ranking of all groups by their scores that counts each group's
        weights (each matrix first reserving 0.5% of its blocks, each layer 0.5% of its units), and records
        ``sparsity_before_projection`` (the fraction pruned by σ(S) ≤ τ_f with the floors, just before it), as
        ``soft_movement`` does.
      * The final step prunes whole every head with all rows of Q, K or V, or all columns of O, pruned, and ranks the
        other groups again so that the target still holds (the heads pruned whole are recorded as ``heads_pruned``);
        nn_pruning removes the heads with all rows of Q, K or V zero at compile time, without ranking again, and
        keeps one head per layer (compaction here keeps one all-zero head instead).
      * No "filled" phase (the empty blocks of the surviving heads refilled and fine-tuned again, the paper's
        "Hybrid Filled") and no rewind to a guide model (``rewind_model_name_or_path``): one pruning run.
      * Biases stay dense (nn_pruning's ``bias_mask`` zeroes the bias of every row whose mask is all zero);
        compaction folds the biases of removed V rows and FFN units into the next layer's bias.
      * The mask is recomputed once per optimizer step, after it, not in every forward pass (the same masks, since
        S and τ_t do not change between steps); warm-up and cool-down are fractions of the run (or optimizer steps),
        not multiples of the lr warm-up; edge blocks are partial where a side is not a multiple of ``block_size``
        (nn_pruning requires divisibility); the floors count groups (ceil(0.5%) of them), not weights.
      * A block is at most one head high and wide: ``block_size`` is capped at the head size (the side used is
        ``grouping.block_size``), so that a block never spans two heads. It changes nothing on BERT-base (heads of
        64) or MiniLM (32); on smaller heads (the conformance suite's tiny BERT: 16) the blocks shrink to a head.
      * Distillation (the paper's teacher, α_distil 0.9, α_ce 0.1, T = 2) is the cell's ``--distill`` setting, with
        the dense fine-tuned model as the teacher, not part of the method.
    """

    name = "block_movement"
    min_ramp_steps = 51_400
    description = "hybrid block movement: 32x32 attention blocks, FFN units, sigma(S) > tau (Lagunas et al. 2021)"

    @dataclass(frozen=True)
    class Hparams(CubicScheduleHparams):
        warmup_frac: float = 0.05
        cooldown_frac: float = 0.49
        block_size: int = 32
        mask_lr: float = 1e-2
        score_init: float = 0.0
        final_threshold: float = 0.1
        final_lambda: float = 10.0

        def __post_init__(self) -> None:
            of = "of method 'block_movement' must be"
            if not 0.0 < self.final_threshold < 1.0:
                raise BenchError(f"hyperparameter 'final_threshold' {of} in (0, 1), got {self.final_threshold!r}")
            if self.final_lambda < 0:
                raise BenchError(f"hyperparameter 'final_lambda' {of} >= 0, got {self.final_lambda!r}")

    def prepare(self, model: nn.Module, task: Task | None = None, tokenizer: Any = None) -> None:
        """Attach the threshold masks with their scores at the hybrid groups' shape."""
        found = prunable_weights(model)
        self.weights = {pw.name: pw for pw in found}
        config = getattr(model, "config", None)
        heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", None)
        self.grouping = HybridGrouping(found, self.h.block_size, heads)
        self.masks = attach(found, self.make_mask)
        self.grouping.regroup(self.masks)

    def param_groups(self) -> list[dict[str, Any]]:
        shared = list({id(s): s for s in self.scores().values()}.values())  # FFN-in and FFN-out share one
        return [{"params": shared, "lr": self.h.mask_lr, "weight_decay": 0.0}]

    def regularization_loss(self) -> Tensor | None:
        """λ_t · (mean over attention matrices of mean σ(S) + mean over layers of mean σ(S) of the units) / 2."""
        if not self.masks:
            return None
        attention = [torch.sigmoid(self.masks[s.key].scores).mean() for s in self.grouping.attention_sets()]
        units = [torch.sigmoid(self.masks[s.members[0]].scores).mean() for s in self.grouping.unit_sets()]
        return self.reg_lambda * (torch.stack(attention).mean() + torch.stack(units).mean()) / 2

    def set_final_masks(self) -> dict[str, float]:
        scores = self.scores()
        rule = partial(threshold_mask, threshold=self.h.final_threshold)
        pruned = sum(int((~keep).sum()) for keep in self.grouping.rule_masks(scores, rule).values())
        total = sum(mask.mask.numel() for mask in self.masks.values())
        keep, heads = self.grouping.final_masks(scores, self.sparsity, MIN_KEEP)
        for name, mask in keep.items():
            self.masks[name].mask.copy_(mask)
        return {"sparsity_before_projection": pruned / total, "heads_pruned": float(heads)}

    @classmethod
    def search_space(cls, trial: optuna.Trial) -> dict[str, Any]:
        return {
            "final_lambda": trial.suggest_float("final_lambda", 2.5, 30.0, log=True),
            "mask_lr": trial.suggest_float("mask_lr", 3e-3, 3e-2, log=True),
        }
