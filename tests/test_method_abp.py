"""Adapting by pruning (Gao, Colombo & Wang 2021): two-temperature mask, update rule, stopping rule, final mask."""

from __future__ import annotations

import math

import pytest
import torch
from bench.methods.abp import AdaptingByPruning, LogitMask, TwoTemperatureSigmoid
from transformers import TrainingArguments

from bench.core.prunable import prunable_weights
from bench.core.sparsity import measure_sparsity
from bench.run.training import PruningTrainer, freeze_pretrained

ALPHA, GAMMA = 2e-5, 2e-7


def flat_logits(method):
    return torch.cat([mask.logits.detach().flatten() for mask in method.masks.values()])


def set_flat(method, attribute, values):
    """Write a flat vector over all prunable weights into each mask's ``logits`` or ``grad_sum``."""
    offset = 0
    with torch.no_grad():
        for mask in method.masks.values():
            target = getattr(mask, attribute)
            n = target.numel()
            target.copy_(values[offset : offset + n].view_as(target))
            offset += n


def prepared(model, sparsity, **hparams):
    method = AdaptingByPruning(sparsity, **hparams)
    method.prepare(model)
    return method


# ---- mask function ---------------------------------------------------------------------------------------------
def test_forward_is_the_step_function_and_gradient_uses_the_small_temperature():
    theta = torch.tensor([-0.5, -0.02, -0.011, 0.013, 0.03, 0.7], requires_grad=True)
    upstream = torch.tensor([1.0, -2.0, 3.0, 0.5, -1.5, 2.5])
    for t_small in (1.0, 2.0):
        theta.grad = None
        mask = TwoTemperatureSigmoid.apply(theta, 1e5, t_small)
        assert torch.equal(mask, (theta > 0).float())
        mask.backward(upstream)
        soft = torch.sigmoid(t_small * theta.detach())
        torch.testing.assert_close(theta.grad, upstream * t_small * soft * (1 - soft))


def test_logit_gradient_is_captured_in_grad_sum_not_in_grad():
    torch.manual_seed(0)
    weight = torch.randn(5, 4)
    mask = LogitMask(weight, 0.01, math.sqrt(0.001), 1e5, 1.0)
    with torch.no_grad():
        mask.logits.copy_(torch.linspace(-0.05, 0.05, 20).view(5, 4) + 0.0025)  # no logit near 0
    x = torch.randn(3, 4)
    for _ in range(2):  # two backward passes accumulate (gradient accumulation)
        (x @ mask(weight).T).pow(2).sum().backward()
    assert mask.logits.grad is None
    theta = mask.logits.detach()
    masked = weight * (theta > 0)
    dense_grad = (2 * (x @ masked.T)).T @ x  # ∂L/∂W' for L = Σ (x W'^T)²
    soft = torch.sigmoid(theta)
    torch.testing.assert_close(mask.grad_sum, 2 * dense_grad * weight * soft * (1 - soft))


def test_initialisation_statistics(tiny_bert):
    theta = flat_logits(prepared(tiny_bert, 0.5))
    assert abs(theta.mean().item() - 0.1) < 0.002
    assert abs(theta.var().item() - 0.0009) < 0.0001


def test_initial_mask_keeps_at_least_999_per_mille_of_the_weights(tiny_bert):
    method = prepared(tiny_bert, 0.5)
    method.step(0, 10)
    kept = sum(int(mask.mask.sum()) for mask in method.masks.values())
    total = sum(mask.mask.numel() for mask in method.masks.values())
    assert kept / total >= 0.999
    assert method.pruned_fraction() <= 0.001 and not method.stopped


# ---- update rule -----------------------------------------------------------------------------------------------
def test_update_is_sgd_step_minus_gamma(tiny_bert):
    method = prepared(tiny_bert, 0.99)
    n = flat_logits(method).numel()
    theta = torch.full((n,), 0.5)
    theta[:4] = torch.tensor([0.5, -0.1, -1e-3, 0.01])
    grad = torch.zeros(n)
    grad[:4] = torch.tensor([1000.0, -2000.0, -1000.0, 0.0])
    set_flat(method, "logits", theta)
    method.step(0, 10)
    set_flat(method, "grad_sum", grad)
    method.step(1, 10)
    after = flat_logits(method)
    expected = torch.tensor([0.5 - 0.02 - GAMMA, -0.1 + 0.04 - GAMMA, -1e-3 + 0.02 - GAMMA, 0.01 - GAMMA])
    torch.testing.assert_close(after[:4], expected, rtol=0, atol=6e-8)  # float32 ulp near 0.5 is 3e-8
    torch.testing.assert_close(after[3], torch.tensor(0.01 - GAMMA), rtol=0, atol=1e-9)  # γ well resolved
    torch.testing.assert_close(after[4:], torch.full((n - 4,), 0.5 - GAMMA), rtol=0, atol=6e-8)
    assert after[2] > 0, "a pruned weight comes back when its gradient lifts θ above 0"
    assert all(float(m.grad_sum.abs().sum()) == 0 for m in method.masks.values()), "the gradient is consumed"
    assert not method.stopped


# ---- stopping rule ---------------------------------------------------------------------------------------------
def test_updates_stop_exactly_when_the_pruned_fraction_reaches_the_target(tiny_bert):
    target = 0.6
    method = prepared(tiny_bert, target)
    n = flat_logits(method).numel()
    needed = math.ceil(target * n)
    theta = torch.ones(n)
    theta[: needed - 1] = -1.0  # one weight short of the target
    theta[needed - 1] = 0.5 * GAMMA  # the γ decrement of the first update takes it to θ ≤ 0
    theta[needed] = 1.5 * GAMMA  # would follow one update later, were updates to go on
    set_flat(method, "logits", theta)

    method.step(0, 10)
    assert not method.stopped and method.pruned_fraction() < target
    method.step(1, 10)
    assert method.stopped and method.stop_step == 1
    assert method.pruned_fraction() == needed / n >= target
    frozen = flat_logits(method).clone()
    torch.testing.assert_close(frozen[needed - 1 : needed + 1], torch.tensor([-0.5 * GAMMA, 0.5 * GAMMA]))

    set_flat(method, "grad_sum", torch.full((n,), 1000.0))
    for step in (2, 3):
        method.step(step, 10)
    assert torch.equal(flat_logits(method), frozen), "θ is frozen after the stop"
    info = method.set_final_masks()
    assert info == {"sparsity_before_projection": needed / n, "projected": 0.0, "stop_step": 1.0}


def test_stops_at_step_zero_when_the_initial_logits_already_prune_enough(tiny_bert):
    method = prepared(tiny_bert, 0.2, init_mean=0.01, init_var=0.001)  # the paper's text: ~38% of θ0 negative
    before = flat_logits(method).clone()
    method.step(0, 10)
    set_flat(method, "grad_sum", torch.ones(before.numel()))
    method.step(1, 10)
    assert method.stopped and method.stop_step == 0
    assert torch.equal(flat_logits(method), before)


# ---- final mask ------------------------------------------------------------------------------------------------
def test_final_mask_is_the_indicator_of_positive_logits(tiny_bert):
    original = {pw.name: pw.module.weight.detach().clone() for pw in prunable_weights(tiny_bert)}
    method = prepared(tiny_bert, 0.5)
    n = flat_logits(method).numel()
    theta = torch.linspace(-1, 1, n)[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
    theta[theta == 0] = 0.1
    set_flat(method, "logits", theta)
    method.step(0, 10)
    assert method.stopped
    positive = {name: (mask.logits > 0).clone() for name, mask in method.masks.items()}
    info = method.finalize(tiny_bert)
    assert info["projected"] == 0.0
    assert abs(info["sparsity_before_projection"] - 0.5) <= 0.005
    for pw in prunable_weights(tiny_bert):
        keep = positive[pw.name]
        assert torch.equal(pw.module.weight[keep], original[pw.name][keep])
        assert torch.equal(pw.module.weight[~keep], torch.zeros_like(pw.module.weight[~keep]))


def test_overshoot_beyond_tolerance_is_projected(tiny_bert):
    method = prepared(tiny_bert, 0.5)
    n = flat_logits(method).numel()
    theta = torch.linspace(-1, 1, n) - 0.2  # 60% non-positive
    set_flat(method, "logits", theta)
    method.step(0, 10)
    assert method.stopped
    info = method.finalize(tiny_bert)
    assert info["projected"] == 1.0 and info["sparsity_before_projection"] > 0.55
    assert abs(measure_sparsity(tiny_bert).encoder_sparsity - 0.5) <= 0.005


def test_short_run_is_projected_onto_the_largest_logits(tiny_bert):
    method = prepared(tiny_bert, 0.7)
    for step in range(4):
        method.step(step, 4)
    assert not method.stopped
    theta = flat_logits(method)
    threshold = theta.kthvalue(round(0.7 * theta.numel())).values
    info = method.set_final_masks()
    assert info["projected"] == 1.0 and info["stop_step"] == -1.0
    assert info["sparsity_before_projection"] == pytest.approx(float((theta <= 0).float().mean()))
    kept = torch.cat([mask.mask.flatten() for mask in method.masks.values()])
    assert int((~kept).sum()) == round(0.7 * theta.numel())
    assert bool((theta[kept] >= threshold).all())


# ---- through the Trainer ---------------------------------------------------------------------------------------
def test_gradient_reaches_the_logits_through_the_trainer(tiny_bert, tmp_path):
    """The Trainer calls model.zero_grad() before the step-end hook: the update must not read θ.grad."""
    steps, alpha = 3, 1.0
    base_before = {n: p.detach().clone() for n, p in tiny_bert.base_model.named_parameters()}
    method = prepared(tiny_bert, 0.99, alpha=alpha)
    theta_before = flat_logits(method).clone()
    freeze_pretrained(tiny_bert)
    generator = torch.Generator().manual_seed(0)
    data = [
        {"input_ids": torch.randint(0, 30522, (16,), generator=generator), "labels": i % 3} for i in range(4 * steps)
    ]
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4, learning_rate=1e-3,
        report_to="none", use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    PruningTrainer(model=tiny_bert, args=args, train_dataset=data, method=method).train()

    drift_only = theta_before - steps * GAMMA
    assert (flat_logits(method) - drift_only).abs().max() > 1e-6, "the gradient step was lost"
    assert all(mask.logits.grad is None for mask in method.masks.values())
    method.finalize(tiny_bert)
    for name, param in tiny_bert.base_model.named_parameters():
        kept = param != 0
        assert torch.equal(param[kept], base_before[name][kept]), name
