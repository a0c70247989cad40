"""``abp``: adapting by pruning (Gao, Colombo & Wang 2021, "Adapting by Pruning: A Case Study on BERT",
arXiv 2105.03343).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from bench.core.masking import Mask
from bench.core.method import PruningMethod
from bench.core.prunable import PrunableWeight

if TYPE_CHECKING:
    import optuna

if TYPE_CHECKING:
    from bench.core.task import Task

TOLERANCE = 0.005  # the benchmark's sparsity tolerance (0.5 pp); a larger overshoot is projected


class TwoTemperatureSigmoid(torch.autograd.Function):
    """m = σ(t_l·θ) in the forward pass; ∂m/∂θ = t_s·σ(t_s·θ)·(1 − σ(t_s·θ)) in the backward pass."""

    @staticmethod
    def forward(ctx, logits: Tensor, t_large: float, t_small: float) -> Tensor:
        ctx.save_for_backward(logits)
        ctx.t_small = t_small
        return torch.sigmoid(t_large * logits)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (logits,) = ctx.saved_tensors
        soft = torch.sigmoid(ctx.t_small * logits)
        return grad * ctx.t_small * soft * (1.0 - soft), None, None


class LogitMask(Mask):
    """``W ↦ W ⊙ σ(t_l·θ)`` with mask logits θ of W's shape, θ0 ~ N(mean, std²).

    The gradient of θ never stays in ``θ.grad``: a post-accumulate hook adds it to the ``grad_sum`` buffer and
    clears ``θ.grad``, so the optimizer, gradient clipping and ``model.zero_grad()`` (which the Trainer calls
    *before* the step-end callback) never touch it; :meth:`AdaptingByPruning.step` consumes ``grad_sum``.
    The bool ``mask`` buffer holds 1[θ > 0] (what :func:`bench.core.masking.bake` applies).
    """

    def __init__(
        self,
        weight: Tensor,
        mean: float,
        std: float,
        t_large: float,
        t_small: float,
        generator: torch.Generator | None = None,
    ):
        super().__init__(weight)
        logits = torch.empty(weight.shape, dtype=torch.float32).normal_(mean, std, generator=generator)
        self.logits = nn.Parameter(logits.to(weight.device))
        self.register_buffer("grad_sum", torch.zeros_like(self.logits), persistent=False)
        self.t_large = t_large
        self.t_small = t_small
        self.logits.register_post_accumulate_grad_hook(self._collect)
        self.refresh()

    def _collect(self, param: Tensor) -> None:
        self.grad_sum.add_(param.grad)
        param.grad = None

    def forward(self, weight: Tensor) -> Tensor:
        soft = TwoTemperatureSigmoid.apply(self.logits, self.t_large, self.t_small)
        return weight * soft.to(weight.dtype)

    @torch.no_grad()
    def refresh(self) -> None:
        self.mask.copy_(self.logits > 0)


class AdaptingByPruning(PruningMethod):
    """Adapting by pruning: frozen pretrained weights, mask logits θ learned by a decaying gradient step.

    Paper (Gao, Colombo & Wang 2021), as the benchmark issue states it:
      * mask m = σ(t·θ), with t = t_l = 1e5 in the forward pass (in effect the step function 1[θ > 0]) and
        t = t_s = 1 in the gradient: ∇̃θ = W ⊙ ∂L/∂(W⊙m) · t_s·σ(t_s θ)(1 − σ(t_s θ))
        (:class:`TwoTemperatureSigmoid`);
      * update θ ← θ − α·∇̃θ − γ with α = 2e-5, γ = 2e-7: plain SGD on θ plus a constant decrement that pushes
        every logit towards pruning; a pruned weight comes back when its gradient lifts θ above 0 again;
      * initialisation θ0 ~ N(0.1, 0.03²), as the authors' released code draws it (``mask_model.py`` of the
        ``cifar10`` branch of github.com/yg211/bert_nli: ``torch.randn(shape) * 0.03 + 0.1``). The paper's text says
        mean 0.01 and variance 0.001 (std 0.032), which makes Φ(−0.01/0.032) ≈ 38% of θ0 negative, i.e. a random
        38% pruning before training starts, while the same paragraph says that negative initial values "harm the
        performance of the final supermask" and that any all-positive initialisation performs alike. With the
        code's values 0.04% of θ0 are negative (≥ 99.9% of the weights kept at the start, tested);
      * stop: once the fraction of pruned weights (θ ≤ 0) reaches the target, θ is frozen; the final mask is
        1[θ > 0]. The task head is trained by the runner's AdamW as usual.

    ``min_ramp_steps`` = 25,000: abp prunes from the first step until its stop rule (its ramp is the whole run); the
    paper's SST-2 run is 3 epochs at batch 8, 25,256 steps (appendix Table 1).

    Implementation: θ is a parameter of each mask module, handed to the optimizer in a group with lr 0 only so
    that the runner treats it as the method's own trainable parameter; its gradient is captured by a hook
    (:class:`LogitMask`) and the update is applied by hand in :meth:`step`, after every optimizer step.

    Departures and choices:
      * the stop rule is global: the pruned fraction is counted over all prunable weights at once, checked
        after every update (and at step 0, before any update);
      * γ is a constant per-optimizer-step decrement, and α a constant step size: neither follows the
        Trainer's learning-rate schedule;
      * θ's gradient is neither clipped nor part of the global gradient norm (the Trainer clips the head only);
        under fp16 loss scaling the captured gradient would be scaled, so run abp in fp32 or bf16;
      * where the stop was never reached (a short run) or the run overshot the target by more than 0.5 pp,
        the final mask is a global top-k projection of θ onto the target; the cell records
        ``sparsity_before_projection`` = the fraction θ ≤ 0 before it.
    """

    name = "abp"
    min_ramp_steps = 25_000
    description = "adapting by pruning: frozen weights, mask logits theta -= alpha*grad + gamma (Gao et al. 2021)"

    @dataclass(frozen=True)
    class Hparams:
        alpha: float = 2e-5
        gamma: float = 2e-7
        t_large: float = 1e5
        t_small: float = 1.0
        init_mean: float = 0.1
        init_var: float = 0.0009

    trains_weights = False

    def __init__(self, sparsity: float, **hparams: Any):
        super().__init__(sparsity, **hparams)
        self.stopped = False
        self.stop_step: int | None = None

    def prepare(self, model: nn.Module, task: Task | None = None, tokenizer: Any = None) -> None:
        self.stopped, self.stop_step = False, None
        self._generator = torch.Generator().manual_seed(self.seed)  # θ₀ ~ N(mean, var) from the cell's seed
        super().prepare(model, task, tokenizer)

    def make_mask(self, weight: PrunableWeight) -> Mask:
        h = self.h
        return LogitMask(
            weight.module.weight, h.init_mean, math.sqrt(h.init_var), h.t_large, h.t_small, self._generator
        )

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.scores().values()), "lr": 0.0, "weight_decay": 0.0}]

    def scores(self) -> dict[str, Tensor]:
        """The logits θ (θ ≤ 0: pruned)."""
        return {name: mask.logits for name, mask in self.masks.items()}

    def step(self, step: int, total_steps: int, lr: float | None = None) -> None:
        if step > 0 and not self.stopped:
            self._update_logits()
        for mask in self.masks.values():
            mask.grad_sum.zero_()
            mask.refresh()
        if not self.stopped and self.pruned_fraction() >= self.sparsity:
            self._stop(step)

    def pruned_fraction(self) -> float:
        """Fraction of θ ≤ 0 over all prunable weights."""
        pruned = sum(int((mask.logits <= 0).sum()) for mask in self.masks.values())
        total = sum(mask.logits.numel() for mask in self.masks.values())
        return pruned / total

    def set_final_masks(self) -> dict[str, float]:
        before = self.pruned_fraction()
        projected = not (self.stopped and before - self.sparsity <= TOLERANCE)
        if projected:
            self._project()
        else:
            for mask in self.masks.values():
                mask.refresh()
        stop = -1.0 if self.stop_step is None else float(self.stop_step)
        return {"sparsity_before_projection": before, "projected": float(projected), "stop_step": stop}

    @torch.no_grad()
    def _update_logits(self) -> None:
        alpha, gamma = self.h.alpha, self.h.gamma
        for mask in self.masks.values():
            mask.logits.add_(mask.grad_sum, alpha=-alpha).sub_(gamma)

    def _stop(self, step: int) -> None:
        self.stopped, self.stop_step = True, step
        for mask in self.masks.values():  # no more gradients needed: skip the backward through the masks
            mask.logits.requires_grad_(False)

    @torch.no_grad()
    def _project(self) -> None:
        self.project_globally(self.scores())

    @classmethod
    def search_space(cls, trial: optuna.Trial) -> dict[str, Any]:
        return {
            "alpha": trial.suggest_float("alpha", 5e-6, 1e-4, log=True),
            "gamma": trial.suggest_float("gamma", 5e-8, 1e-6, log=True),
        }
