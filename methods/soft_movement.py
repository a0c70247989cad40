"""``soft_movement``: soft movement pruning (Sanh, Wolf & Rush 2020, "Movement Pruning: Adaptive Sparsity by
Fine-Tuning", NeurIPS, arXiv 2005.07683), section 4 ("soft movement pruning") and Table 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from bench.core.granularity import GranularityHparams
from bench.core.masking import StraightThroughMask, keep_top, min_kept
from bench.core.method import PruningMethod
from bench.core.prunable import PrunableWeight
from bench.core.schedule import CubicScheduleHparams

if TYPE_CHECKING:
    import optuna

MIN_KEEP = 0.005  # every matrix keeps at least 0.5% of its weights (the authors' ThresholdBinarizer)


def threshold_mask(scores: Tensor, threshold: float, floor: float = MIN_KEEP) -> Tensor:
    """σ(S) > τ, or the top ``min_kept(numel, floor)`` scores when that keeps fewer (the 0.5% floor)."""
    keep = torch.sigmoid(scores.detach()) > threshold
    k_min = min_kept(scores.numel(), floor)
    if int(keep.sum()) < k_min:
        return keep_top(scores, k_min)
    return keep


class SoftThresholdMask(StraightThroughMask):
    """``W ↦ W ⊙ M`` with M = 1[σ(S) > τ] (at least 0.5% kept), straight-through to S.

    ``threshold`` (τ_t) is state that :meth:`SoftMovement.step` moves along the schedule, recomputing the ``mask``
    buffer from the current scores (of the weights, or pooled over blocks, heads or units) and τ_t.
    """

    def __init__(self, weight: Tensor, init: float = 0.0):
        super().__init__(weight, init=init)
        self.threshold = 0.0


class SoftMovement(PruningMethod):
    """Soft movement pruning: a global threshold on σ(S) plus an L1 penalty on σ(S), S learned by movement.

    Paper (Sanh et al. 2020, section 4 and Table 1):
      * mask M = 1[σ(S) > τ] on W ⊙ M, with the straight-through gradient ∂L/∂S_ij = (∂L/∂a_i) x_j W_ij of
        eq. (3) (S accumulates −W·∂L/∂W, "movement");
      * objective L_task + λ_mvp·R(S) with R(S) = Σ σ(S), which the authors' code (``regularization`` in
        ``masked_run_glue.py``) normalises per matrix: R = mean over matrices of Σ σ(S)/numel;
      * τ goes from 0 to τ_f = 0.1 on the cubic schedule of Zhu & Gupta (2017) eq. (1), and λ ramps with it,
        λ_t = λ_f·τ_t/τ_f, λ_f = 400 (the authors' soft-movement command: ``--final_lambda 400``);
      * every matrix keeps at least 0.5% of its weights (the authors' ``ThresholdBinarizer``).

    Defaults are the authors' soft-movement run: scores initialised to the constant 0 (``--mask_init constant
    --mask_scale 0.``, so σ(S) = 0.5 at the start), score lr 1e-2, τ_f = 0.1, λ_f = 400, warm-up/cool-down of
    1× and 2× the lr warm-up (here 0.1 and 0.2 of the run). The weights are fine-tuned with the task's lr.

    ``min_ramp_steps`` = 39,000: the threshold ramp of the authors' SQuAD run (the same schedule as movement's, see
    :class:`bench.methods.movement.Movement`). Measured here (results/readme-budget): at ramps of 210 to 1,680 steps the
    penalty prunes well under the target on its own and the final projection does most of the pruning.

    Departures:
      * The sparsity soft movement reaches is set by λ, not by the target. :meth:`set_final_masks` therefore
        projects onto the target with a global top-k on S over all matrices (the same ranking as the global
        threshold, each matrix keeping its 0.5% floor), and reports ``sparsity_before_projection``: the fraction
        pruned by σ(S) ≤ τ_f (with the floor) just before the projection.
      * The mask is recomputed once per optimizer step (after it) instead of in every forward pass; since S and
        τ_t do not change between steps, the forward passes see the same mask as the authors' code.
      * Warm-up/cool-down are fractions of total steps, not multiples of the lr warm-up.

    ``granularity`` (:mod:`bench.core.granularity`; Lagunas, Charlaix, Sanh & Rush 2021, "Block Pruning For Faster
    Transformers", arXiv 2109.04838, section 3, eq. 1-2): ``block`` scores live per square block, ``structured``
    per attention head (Q/K/V rows, O columns) and FFN unit (FFN-in row, FFN-out column); the threshold
    1[σ(S) > τ] applies to each group's score (for a head or unit, the mean of its per-matrix scores) and the 0.5%
    floor keeps at least that fraction of each matrix's blocks (of each layer's heads and units). The penalty is
    the mean of σ over each matrix's group scores (partial edge blocks weigh as much as full ones), and the final
    projection is a global top-k on groups that counts each group's weights (bench.core.granularity.prune_to).
    """

    name = "soft_movement"
    min_ramp_steps = 39_000
    description = "soft movement pruning: sigma(S) > tau with an L1 penalty on sigma(S), tau cubic 0 -> 0.1 (Sanh 2020)"

    @dataclass(frozen=True)
    class Hparams(CubicScheduleHparams, GranularityHparams):
        mask_lr: float = 1e-2
        score_init: float = 0.0
        final_threshold: float = 0.1
        final_lambda: float = 400.0

    def __init__(self, sparsity: float, **hparams: Any):
        super().__init__(sparsity, **hparams)
        self.threshold = 0.0
        self.reg_lambda = 0.0

    def make_mask(self, weight: PrunableWeight) -> SoftThresholdMask:
        return SoftThresholdMask(weight.module.weight, init=self.h.score_init)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.scores().values()), "lr": self.h.mask_lr, "weight_decay": 0.0}]

    def scores(self) -> dict[str, Tensor]:
        return {name: mask.scores for name, mask in self.masks.items()}

    def schedule(self, step: int, total_steps: int) -> tuple[float, float]:
        """(τ_t, λ_t) after ``step`` of ``total_steps`` optimizer steps (τ on :meth:`pruning_schedule`)."""
        final = self.h.final_threshold
        threshold = self.pruning_schedule(total_steps).value(step, final=final)
        return threshold, self.h.final_lambda * threshold / final

    def step(self, step: int, total_steps: int, lr: float | None = None) -> None:
        self.threshold, self.reg_lambda = self.schedule(step, total_steps)
        rule = partial(threshold_mask, threshold=self.threshold)
        for name, keep in self.grouping.rule_masks(self.scores(), rule).items():
            self.masks[name].threshold = self.threshold
            self.masks[name].mask.copy_(keep)

    def regularization_loss(self) -> Tensor | None:
        """λ_t · mean over matrices of Σσ(S)/numel."""
        if not self.masks:
            return None
        terms = [torch.sigmoid(mask.scores).mean() for mask in self.masks.values()]
        return self.reg_lambda * torch.stack(terms).mean()

    def set_final_masks(self) -> dict[str, float]:
        scores = self.scores()
        final = self.h.final_threshold
        kept = self.grouping.rule_masks(scores, partial(threshold_mask, threshold=final)).values()
        pruned = sum(int((~keep).sum()) for keep in kept)
        total = sum(mask.mask.numel() for mask in self.masks.values())
        self.project_globally(scores, floor=MIN_KEEP)
        return {"sparsity_before_projection": pruned / total}

    @classmethod
    def search_space(cls, trial: optuna.Trial) -> dict[str, Any]:
        return {
            "final_lambda": trial.suggest_float("final_lambda", 100.0, 1600.0, log=True),
            "mask_lr": trial.suggest_float("mask_lr", 3e-3, 3e-2, log=True),
        }
