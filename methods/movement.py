"""``movement``: movement pruning (Sanh, Wolf & Rush 2020, "Movement Pruning: Adaptive Sparsity by
Fine-Tuning", NeurIPS, arXiv 2005.07683).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from bench.core.granularity import GranularityHparams
from bench.core.masking import Mask, StraightThroughMask
from bench.core.method import PruningMethod
from bench.core.prunable import PrunableWeight
from bench.core.schedule import CubicScheduleHparams

if TYPE_CHECKING:
    import optuna


class Movement(PruningMethod):
    """Movement pruning with local (per-matrix) top-v on learned scores.

    Paper equations (Sanh et al. 2020, section 4):
      * eq. (2): a = (W ⊙ M) x with M = Top_v(S), S of W's shape (out, in);
      * eq. (3): straight-through gradient ∂L/∂S_ij = (∂L/∂a_i) x_j W_ij, so
        S accumulates −W·∂L/∂W over training (eq. 4, "movement");
      * v follows the cubic schedule of Zhu & Gupta (2017) (sections 4 and 5, "Implementation").

    Defaults are the paper's: scores initialised to a constant 0 ("mask_init constant, mask_scale 0"), score
    learning rate 1e-2, the weights fine-tuned with the task's learning rate.

    Departures: the mask is recomputed once per optimizer step (after the step) instead of in every
    forward pass; warm-up/cool-down (paper: 1× and 2× the lr warm-up steps) are fractions of total steps,
    0.1 and 0.2, which is what the paper's SQuAD run gives (5,400 of ~55,000 steps), or optimizer steps
    (``warmup_steps``/``cooldown_steps``, as the authors' code counts them) where given.

    ``min_ramp_steps`` = 39,000: the pruning ramp of the paper's SQuAD run (10 epochs of 5,540 steps at batch 16 minus
    the 5,400-step warm-up and the 10,800-step cool-down; its MNLI runs ramp longer). Measured here on SST-2 with
    MiniLM (results/readme-budget, results/readme-movement-study): every ramp we could afford (210 to 1,680 steps)
    ends at the majority class, and the model sits at chance for the whole ramp (a 2,520-step ramp ended at 66%
    against magnitude's 80.5%); ramps of 3,360 and 6,720 steps collapse later (at 26% and 30% sparsity) but still
    collapse. The cause is the ramp's pace: the lowest-score weights are a coherent set (all moved toward zero), so
    removing them is a large step along the accumulated update, and a model pruned faster than it recovers falls to
    one class and stays there (a BERT MLM-pretrained here collapses at the same point). No shorter ramp is known to
    give movement's own result.

    ``granularity`` (:mod:`bench.core.granularity`): Lagunas, Charlaix, Sanh & Rush 2021, "Block Pruning For Faster
    Transformers" (arXiv 2109.04838), section 3 and eqs. (1)-(2): with ``block`` the scores live per ``block_size``
    square block (W' = W ⊙ M(S'), each block's mask repeated over the block) and each block score's gradient is the
    straight-through gradient summed over its block; partial edge blocks where the sides are not a multiple of the
    block size (the paper's code requires divisibility). With ``structured`` each head's rows of Q,
    K, V and its columns of O, and each FFN unit's FFN-in row and FFN-out column, share one pruning decision.
    Departures: a structured head or unit keeps one score per matrix it spans (each the summed gradient over its
    part) and ranks by their mean, instead of one shared score (the same path under SGD, not under Adam); v is the
    cubic schedule's top-v on groups (per matrix for blocks; per layer for heads, to the nearest head, with the FFN
    units taking up the rest of the layer's target), not the paper's soft-movement threshold (their hybrid recipe).

    Search space: the pruning warm-up and cool-down fractions, not ``mask_lr``. With constant score initialisation
    and Adam, the scores after any number of steps are ``mask_lr`` times a quantity that does not depend on
    ``mask_lr`` (Adam's update is invariant to the gradient's scale, and the top-k mask ignores the scores' scale),
    so every ``mask_lr`` gives the same masks and the same model (tested); searching it would waste trials.
    """

    name = "movement"
    min_ramp_steps = 39_000
    description = "movement pruning: local top-k of learned scores S, S += -W*dL/dW (Sanh et al. 2020)"

    @dataclass(frozen=True)
    class Hparams(CubicScheduleHparams, GranularityHparams):
        mask_lr: float = 1e-2
        score_init: float = 0.0

    def make_mask(self, weight: PrunableWeight) -> Mask:
        return StraightThroughMask(weight.module.weight, init=self.h.score_init)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.scores().values()), "lr": self.h.mask_lr, "weight_decay": 0.0}]

    def scores(self) -> dict[str, Tensor]:
        return {name: mask.scores for name, mask in self.masks.items()}

    @classmethod
    def search_space(cls, trial: optuna.Trial) -> dict[str, Any]:
        return {"warmup_frac": trial.suggest_float("warmup_frac", 0.0, 0.3),
                "cooldown_frac": trial.suggest_float("cooldown_frac", 0.1, 0.4)}  # fmt: skip
