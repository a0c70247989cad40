"""``l0``: L0 regularization with hard-concrete gates (Louizos, Welling & Kingma 2018, "Learning Sparse Neural
Networks through L0 Regularization", ICLR, arXiv 1712.01312), as the movement-pruning paper uses it as a baseline
(Sanh, Wolf & Rush 2020, arXiv 2005.07683, section 4 and Table 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from bench.core.masking import Mask
from bench.core.method import PruningMethod
from bench.core.prunable import PrunableWeight

if TYPE_CHECKING:
    import optuna

LEFT, RIGHT = -0.1, 1.1  # stretch interval (γ, ζ) of the hard concrete
BETA = 2.0 / 3.0  # temperature of the concrete
_EPS = 1e-6  # keeps u away from 0 and 1 so that log u and log(1 - u) stay finite


def sample_gate(scores: Tensor, beta: float = BETA, left: float = LEFT, right: float = RIGHT) -> Tensor:
    """Hard-concrete gates z (shape of ``scores``), differentiable in ``scores`` (log α); Louizos et al. eq. (10)-(11).

    u ~ U(0, 1), s = σ((log u − log(1 − u) + log α)/β), s̄ = s(ζ − γ) + γ, z = min(1, max(0, s̄)).
    """
    return _HardConcrete.apply(scores, beta, left, right)


class _HardConcrete(torch.autograd.Function):
    """:func:`sample_gate` computed in place: the same gates and the same gradient, bit for bit, as the composed
    expression ``clamp(σ((log u − log1p(−u) + S)/β)·(ζ − γ) + γ, 0, 1)`` under autograd (its backward applies
    autograd's own formulas in autograd's order: clamp's, the scalar product's, ``sigmoid_backward``, the scalar
    division's), with two temporaries of the weight's size instead of about ten. Written here because the gate runs
    on every prunable weight in every forward: the composed ops cost about 2.5% of a MiniLM training step more
    (two A/B runs of 10 MNLI steps, ratio to dense 1.08-1.09x against 1.05-1.07x); tests/test_method_l0.py checks
    the equality."""

    @staticmethod
    def forward(ctx, scores: Tensor, beta: float, left: float, right: float) -> Tensor:
        u = torch.rand_like(scores).clamp_(_EPS, 1.0 - _EPS)
        s = u.log()
        s.sub_(u.neg_().log1p_()).add_(scores).div_(beta).sigmoid_()
        ctx.save_for_backward(s)
        ctx.beta, ctx.left, ctx.right = beta, left, right
        return s.mul(right - left).add_(left).clamp_(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (s,) = ctx.saved_tensors
        stretched = s.mul(ctx.right - ctx.left).add_(ctx.left)  # the clamp's input, recomputed bit for bit
        inside = (stretched >= 0.0).logical_and_(stretched <= 1.0)
        g = grad.masked_fill(inside.logical_not_(), 0.0).mul_(ctx.right - ctx.left)
        return torch.ops.aten.sigmoid_backward(g, s).div_(ctx.beta), None, None, None


def eval_gate(scores: Tensor, left: float = LEFT, right: float = RIGHT) -> Tensor:
    """Deterministic test-time gate ẑ = min(1, max(0, σ(log α)(ζ − γ) + γ)); Louizos et al. eq. (13).

    With γ = −0.1, ζ = 1.1 this is clamp(1.2·σ(S) − 0.1, 0, 1).
    """
    return (torch.sigmoid(scores) * (right - left) + left).clamp(0.0, 1.0)


def open_probability(scores: Tensor, beta: float = BETA, left: float = LEFT, right: float = RIGHT) -> Tensor:
    """P(z ≠ 0) = σ(log α − β·log(−γ/ζ)), the expected L0 norm per gate; Louizos et al. eq. (12)."""
    return torch.sigmoid(scores - beta * math.log(-left / right))


class HardConcreteMask(Mask):
    """``W ↦ W ⊙ z``: a sampled hard-concrete gate in training mode, the deterministic gate in eval mode.

    ``scores`` holds log α per weight. The ``mask`` buffer (hard 0/1) is only written by the final projection;
    :func:`bench.core.masking.bake` uses it.
    """

    def __init__(self, weight: Tensor, init: float, beta: float = BETA):
        super().__init__(weight)
        self.beta = beta
        self.scores = torch.nn.Parameter(torch.full_like(weight, init, dtype=torch.float32))

    def gate(self) -> Tensor:
        return sample_gate(self.scores, self.beta) if self.training else eval_gate(self.scores)

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.gate().to(weight.dtype)


class L0(PruningMethod):
    """L0 regularization: weights gated by hard-concrete gates whose log α are learned with an L0 penalty.

    Paper (Louizos et al. 2018, section 3 "Hard concrete distribution"):
      * eq. (10)-(11): training gates z = min(1, max(0, s̄)), s̄ = σ((log u − log(1 − u) + log α)/β)(ζ − γ) + γ,
        u ~ U(0, 1), resampled at every forward pass, with γ = −0.1, ζ = 1.1, β = 2/3;
      * eq. (12): penalty λ·Σ σ(log α − β·log(−γ/ζ)), which the movement-pruning code (``regularization``,
        mode ``l0``, in ``masked_run_glue.py``) normalises per matrix: λ · mean over matrices of Σ(...)/numel;
      * eq. (13): test-time gate ẑ = min(1, max(0, σ(log α)(ζ − γ) + γ)) = clamp(1.2·σ(S) − 0.1, 0, 1), used
        whenever the model is in eval mode.

    Defaults follow the movement-pruning authors' L0 command (transformers examples/research_projects/
    movement-pruning/README.md): scores log α initialised to 2.197 (σ(S) = 0.9, ``--mask_scale 2.197``), score
    lr 1e-1, λ = 125 (``--final_lambda 125``, their SQuAD value; with ``--initial_threshold 1 --final_threshold
    1`` λ stays constant from the first step). The paper sweeps λ per sparsity level; the weights are fine-tuned
    with the task's lr.

    ``min_ramp_steps`` = 55,000: L0 gates and penalises from the first step to the last (its ramp is the whole run),
    and Sanh et al. (2020) trained it for the movement-pruning SQuAD budget, 10 epochs of 5,540 steps.

    Departures:
      * L0 reaches a sparsity set by λ, not the target. :meth:`set_final_masks` projects onto the target with a
        global top-k on S over all matrices (the deterministic gate is monotone in S, the same for every matrix,
        so this is the ranking L0 itself prunes by) and reports ``sparsity_before_projection``: the fraction of
        deterministic gates ẑ that are exactly 0.
      * The finalized model uses that binary mask, W ⊙ 1[kept], not the continuous gate values ẑ ∈ (0, 1) of
        eq. (13) (the authors' ``bertarize.py`` folds ẑ into W); kept weights keep their trained values.
    """

    name = "l0"
    min_ramp_steps = 55_000
    description = "L0 regularization with hard-concrete gates (Louizos et al. 2018), global top-k projection at the end"

    @dataclass(frozen=True)
    class Hparams:
        mask_lr: float = 1e-1
        mask_init: float = 2.197
        reg_lambda: float = 125.0
        beta: float = BETA

    def make_mask(self, weight: PrunableWeight) -> HardConcreteMask:
        return HardConcreteMask(weight.module.weight, init=self.h.mask_init, beta=self.h.beta)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.scores().values()), "lr": self.h.mask_lr, "weight_decay": 0.0}]

    def scores(self) -> dict[str, Tensor]:
        """log α of every gate (its location; higher: more often open)."""
        return {name: mask.scores for name, mask in self.masks.items()}

    def regularization_loss(self) -> Tensor | None:
        """λ · mean over matrices of Σ σ(S − β·log(−γ/ζ))/numel."""
        if not self.masks:
            return None
        beta = self.h.beta
        terms = [open_probability(mask.scores, beta).mean() for mask in self.masks.values()]
        return self.h.reg_lambda * torch.stack(terms).mean()

    def set_final_masks(self) -> dict[str, float]:
        scores = self.scores()
        with torch.no_grad():
            closed = sum(int((eval_gate(s) == 0).sum()) for s in scores.values())
        total = sum(s.numel() for s in scores.values())
        self.project_globally(scores)
        return {"sparsity_before_projection": closed / total}

    @classmethod
    def search_space(cls, trial: optuna.Trial) -> dict[str, Any]:
        return {
            "reg_lambda": trial.suggest_float("reg_lambda", 25.0, 625.0, log=True),
            "mask_lr": trial.suggest_float("mask_lr", 3e-2, 3e-1, log=True),
            "beta": trial.suggest_float("beta", 0.5, 0.9),
        }
