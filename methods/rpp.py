"""``rpp``: Reweighted Proximal Pruning (Guo, Liu, Mungall, Lin & Wang 2019, "Reweighted Proximal Pruning for
Large-Scale Language Representation", arXiv 1909.12486).

RPP minimises the task loss plus a reweighted ℓ1 penalty, min_w f(w) + γ Σ_i α_i |w_i|, with the factors
α_i = 1 / (|w_i| + ε) recomputed from the current weights at the start of every reweighting period (the
iteratively reweighted ℓ1 of Candès, Wakin & Boyd 2008, which penalises small weights more than large ones).
The penalty never enters the gradient: each optimizer step is an AdamW step on f alone, z = AdamW(w, ∇f(w)),
followed by the proximal operator of the penalty (Parikh & Boyd 2014, section 6.5.2, a weighted soft
threshold)::

    prox(z) = argmin_w ½‖w − z‖² + η·γ·Σ α_i |w_i|   →   w_i = sign(z_i) · max(|z_i| − η·γ·α_i, 0)

with η the learning rate of that AdamW step. Outer loop: refresh α; inner loop: AdamW step + proximal step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from bench.core.errors import BenchError
from bench.core.masking import topk_mask
from bench.core.method import PruningMethod

if TYPE_CHECKING:
    import optuna


def reweighting_factors(weight: Tensor, eps: float) -> Tensor:
    """α = 1 / (|w| + ε), elementwise, in float32 (the reweighted-ℓ1 factors)."""
    return 1.0 / (weight.detach().abs().float() + eps)


def reweighted_l1_prox(z: Tensor, alpha: Tensor, scale: float) -> Tensor:
    """Proximal operator of ``scale · Σ α_i |w_i|`` at ``z``: sign(z) · max(|z| − scale·α, 0) (a new tensor).

    Args:
        z: the point (the weight after the AdamW step).
        alpha: non-negative per-entry factors, z's shape.
        scale: η·γ, the step size times the penalty weight, ≥ 0.
    """
    shrunk = (z.float().abs() - scale * alpha).clamp_min_(0.0)
    return (torch.sign(z.float()) * shrunk).to(z.dtype)


def cap_zeros(new: Tensor, z: Tensor, sparsity: float) -> Tensor:
    """Undo the proximal zeroing of the largest-|z| entries when more than round(sparsity·numel) entries are 0.

    Entries among the ``numel − round(sparsity·numel)`` largest |z| that the proximal step set to 0 get their
    AdamW value z back, so that no matrix ever holds more zeros than the final top-k cut leaves.
    """
    n_zeros = int((new == 0).sum())
    if n_zeros <= round(sparsity * new.numel()):
        return new
    keep = topk_mask(z.abs(), sparsity)
    return torch.where(keep & (new == 0), z, new)


class RPP(PruningMethod):
    """Reweighted Proximal Pruning at fine-tuning time, with a final local magnitude cut at the target.

    Paper: Fu-Ming Guo, Sijia Liu, Finlay S. Mungall, Xue Lin & Yanzhi Wang (2019), arXiv 1909.12486, section 3
    and Algorithm 1. Only the abstract and secondary descriptions (Sanh et al. 2020, section 5: "re-weighted L1
    minimization and Proximal Projection"; surveys: the proximal operator decouples the sparsity search from the
    back-propagated update) could be read when this was written; the update below is the standard reweighted-ℓ1
    proximal step those describe:
      * reweighted ℓ1 problem min_w f(w) + γ Σ α_i |w_i| with α_i = 1 / (|w_i| + ε), α refreshed from the current
        weights once per outer iteration (here: every ``reweight_every`` optimizer steps);
      * proximal step after every AdamW step on the task loss alone (Algorithm 1):
        w ← sign(z) · max(|z| − η·γ·α, 0), z the weights after AdamW, η the learning rate of that step.

    What ``step(t, T, lr)`` does: at t = 0 it computes α from the (pretrained) weights. After optimizer step t ≥ 1
    it applies the proximal operator in place to every prunable weight (the leaf Parameter the optimizer
    updates, under ``torch.no_grad``; the AdamW moments are never touched), then refreshes α when
    t % ``reweight_every`` == 0, so steps kS+1 … (k+1)S use α computed from the weights after step kS.
    :meth:`regularization_loss` is None: the penalty is not in the loss, its gradient, or the Adam moments.

    η: the hook receives the learning rate after the scheduler's update, i.e. the rate of the *next* step. The
    proximal step after step t uses instead the rate the previous call received, which is the rate AdamW used
    for step t (the paper's η), so the prox matches the step it follows (this matters in warm-up and at the
    last step, whose next rate is 0). When no previous rate is known it uses the rate passed in; when neither
    is known (``lr=None``) it skips the proximal step and warns once.

    Masks are plain :class:`~bench.core.masking.Mask` parametrizations, all ones during training, so the forward is
    that of the weights themselves, with the exact zeros the proximal steps produce. :meth:`set_final_masks`
    keeps the ``1 − sparsity`` largest |w| of every matrix (local, as the magnitude baseline) and reports the
    fraction of exact zeros the proximal steps had produced in the prunable set, ``sparsity_before_projection``.

    Defaults: γ = 1e-3, ε = 1e-3, ``reweight_every`` = 100 steps. The values of γ, ε and of the reweighting
    period are not taken from the paper: its full text could not be consulted when this was written (verify
    them against its experimental section), and the paper's values were in any case set for pre-training, with
    its own learning rate and step count. They are chosen for fine-tuning. With α refreshed often, |w|² shrinks
    by about 2·γ·η per step, so over a run whose learning rates sum to Σ η the proximal steps alone zero a weight
    when |w|² < 2·γ·Σ η. For MNLI at the paper preset (6 epochs, lr 3e-5, Σ η ≈ 1.1) that is |w| < 0.05, about
    60% of the encoder weights of a pretrained MiniLM-L6 (|w| median 0.035, 70th percentile 0.057), before the
    task gradient pushes back; in short runs (small Σ η) they zero little and the final cut does most of the
    work. ε = 1e-3 is small against those magnitudes, as Candès et al. advise, and gives a zeroed weight the
    threshold η·γ/ε = η, about the size of one Adam step, so a weight the task needs can grow back.

    Departures from the paper:
      * The paper prunes BERT during pre-training (masked LM + next-sentence prediction) and then fine-tunes
        with the sparsity pattern fixed. Here RPP runs during fine-tuning on the task loss, from the
        pretrained weights.
      * The paper reaches whatever sparsity γ gives; here a final per-matrix magnitude cut meets the target
        exactly. So that the cut never has to keep a zero, a proximal step never leaves more than
        round(sparsity·numel) zeros in a matrix: when it would, the entries among the largest |z| that it zeroed
        keep their AdamW value z for that step (:func:`cap_zeros`).
      * The reweighting period is a number of optimizer steps (the paper's outer iterations).

    ``min_ramp_steps`` = 0 (none declared): the paper prunes during pre-training and gives no fine-tuning schedule to
    ground a minimum on.
    """

    name = "rpp"
    description = "reweighted proximal pruning: AdamW on the task loss + reweighted-l1 prox step (Guo et al. 2019)"

    @dataclass(frozen=True)
    class Hparams:
        gamma: float = 1e-3
        eps: float = 1e-3
        reweight_every: int = 100

    def __init__(self, sparsity: float, **hparams: Any):
        super().__init__(sparsity, **hparams)
        gamma, eps, every = self.h.gamma, self.h.eps, self.h.reweight_every
        if not (isinstance(gamma, (int, float)) and gamma >= 0):
            raise BenchError(f"rpp: gamma must be a number >= 0, got {gamma!r}")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise BenchError(f"rpp: eps must be a number > 0, got {eps!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise BenchError(f"rpp: reweight_every must be an integer >= 1, got {every!r}")
        self.alpha: dict[str, Tensor] = {}
        self.alpha_step: int | None = None  # optimizer step whose weights α was computed from
        self._step_lr: float | None = None  # learning rate of the coming optimizer step
        self._warned = False

    def scores(self) -> dict[str, Tensor]:
        """|w|: the final cut keeps the largest weights of every matrix (local, as the magnitude baseline)."""
        return {name: self.weight(name).detach().abs() for name in self.masks}

    def step(self, step: int, total_steps: int, lr: float | None = None) -> None:
        if step == 0 or not self.alpha:
            self._reweight(step)
            self._step_lr = lr
            if step == 0:
                return
        eta = self._step_lr if self._step_lr is not None else lr
        self._step_lr = lr
        self._proximal_step(eta)
        if step % self.h.reweight_every == 0:
            self._reweight(step)

    def set_final_masks(self) -> dict[str, float]:
        weights = [self.weight(name) for name in self.masks]
        zeros = sum(int((w == 0).sum()) for w in weights)
        self.project_scores(self.sparsity)
        return {"sparsity_before_projection": zeros / sum(w.numel() for w in weights)}

    def _reweight(self, step: int) -> None:
        eps = self.h.eps
        self.alpha = {name: reweighting_factors(self.weight(name), eps) for name in self.masks}
        self.alpha_step = step

    def _proximal_step(self, eta: float | None) -> None:
        if eta is None:
            if not self._warned:
                warnings.warn("rpp: no learning rate passed to step(); proximal steps are skipped", stacklevel=3)
                self._warned = True
            return
        scale = eta * self.h.gamma
        if scale <= 0:
            return
        with torch.no_grad():
            for name in self.masks:
                weight = self.weight(name)
                alpha = self.alpha[name] = self.alpha[name].to(weight.device)
                new = reweighted_l1_prox(weight, alpha, scale)
                weight.copy_(cap_zeros(new, weight, self.sparsity))

    @classmethod
    def search_space(cls, trial: optuna.Trial) -> dict[str, Any]:
        return {
            "gamma": trial.suggest_float("gamma", 1e-4, 1e-2, log=True),
            "reweight_every": trial.suggest_categorical("reweight_every", [10, 100, 1000]),
        }
