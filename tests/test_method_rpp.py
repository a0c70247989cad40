"""Unit tests of ``rpp`` (Reweighted Proximal Pruning): the proximal step against hand-computed numbers, the
reweighting period, the learning rate it uses, the AdamW state left alone, and the final cut at the target."""

from __future__ import annotations

import pytest
import torch
from bench.methods.rpp import RPP, cap_zeros, reweighted_l1_prox, reweighting_factors

from bench.core.errors import BenchError
from bench.core.sparsity import measure_sparsity

# Hand-made example: ε = 0.1, η = 0.1, γ = 0.5 (η·γ = 0.05).
W0 = [[0.9, -0.4], [0.1, -0.15]]  # weights α is computed from: α = 1/(|w0| + 0.1) = [[1, 2], [5, 4]]
Z = [[0.5, -0.3], [0.2, -0.25]]  # weights after the AdamW step
# thresholds η·γ·α = [[0.05, 0.10], [0.25, 0.20]]
EXPECTED = [[0.45, -0.2], [0.0, -0.05]]  # sign(z)·max(|z| − threshold, 0)


def test_prox_matches_hand_computed_example():
    alpha = reweighting_factors(torch.tensor(W0), eps=0.1)
    assert torch.allclose(alpha, torch.tensor([[1.0, 2.0], [5.0, 4.0]]))
    out = reweighted_l1_prox(torch.tensor(Z), alpha, scale=0.1 * 0.5)
    assert torch.allclose(out, torch.tensor(EXPECTED), atol=1e-7)
    assert out[1, 0].item() == 0.0  # exactly zero, not merely small


def _fill(weight: torch.Tensor, corner, rest: float) -> None:
    with torch.no_grad():
        weight.fill_(rest)
        weight[:2, :2] = torch.tensor(corner)


def test_method_step_applies_prox_in_place_on_the_weight(tiny_bert):
    method = RPP(0.5, gamma=0.5, eps=0.1, reweight_every=1000)
    method.prepare(tiny_bert)
    name = next(iter(method.masks))
    weight = method.weight(name)
    _fill(weight, W0, rest=0.9)  # rest: α = 1/(0.9+0.1) = 1
    method.step(0, 10, lr=0.1)  # α from W0; 0.1 is the rate of optimizer step 1
    _fill(weight, Z, rest=0.5)  # "AdamW" moved the weights
    param_before = weight
    method.step(1, 10, lr=0.1)
    assert method.weight(name) is param_before  # in place, same leaf Parameter
    assert torch.allclose(weight[:2, :2], torch.tensor(EXPECTED), atol=1e-7)
    assert torch.allclose(weight[2:, 2:], torch.full_like(weight[2:, 2:], 0.45))  # 0.5 − 0.05·1
    # the forward sees the proximal weights (all-ones mask during training)
    module = method.weights[name].module
    assert torch.equal(module.weight, weight)


def test_prox_uses_the_rate_of_the_step_it_follows(tiny_bert):
    """step(t, T, lr) receives the rate of step t+1; the prox after step t uses the rate received before."""
    method = RPP(0.5, gamma=0.5, eps=0.1, reweight_every=1000)
    method.prepare(tiny_bert)
    name = next(iter(method.masks))
    weight = method.weight(name)
    _fill(weight, W0, rest=0.9)
    method.step(0, 10, lr=0.1)  # the rate optimizer step 1 uses
    _fill(weight, Z, rest=0.5)
    method.step(1, 10, lr=0.0)  # the next rate is 0 (e.g. the end of a linear decay): still shrink with 0.1
    assert torch.allclose(weight[:2, :2], torch.tensor(EXPECTED), atol=1e-7)
    _fill(weight, Z, rest=0.5)
    method.step(2, 10, lr=0.3)  # step 2 ran with rate 0.0: no shrinkage
    assert torch.equal(weight[:2, :2], torch.tensor(Z))


def test_prox_without_any_rate_is_skipped_with_a_warning(tiny_bert):
    method = RPP(0.5, gamma=0.5)
    method.prepare(tiny_bert)
    before = {n: method.weight(n).detach().clone() for n in method.masks}
    method.step(0, 10, lr=None)
    with pytest.warns(UserWarning, match="no learning rate"):
        method.step(1, 10, lr=None)
    assert all(torch.equal(method.weight(n), before[n]) for n in method.masks)


def test_alpha_refreshes_only_every_reweight_every_steps(tiny_bert):
    eps = 1e-3
    method = RPP(0.5, gamma=1e-3, eps=eps, reweight_every=3)
    method.prepare(tiny_bert)
    name = next(iter(method.masks))
    weight = method.weight(name)
    method.step(0, 10, lr=1e-3)
    alpha0 = method.alpha[name].clone()
    assert torch.equal(alpha0, 1.0 / (weight.detach().abs() + eps))
    for t in range(1, 7):
        with torch.no_grad():
            weight.mul_(0.5)  # the "optimizer" changes the weights every step
        method.step(t, 10, lr=1e-3)
        expected = 1.0 / (weight.detach().abs() + eps)  # from the weights after the prox of step t
        if t % 3 == 0:
            assert method.alpha_step == t
            assert torch.equal(method.alpha[name], expected)
            alpha0 = method.alpha[name].clone()
        else:
            assert method.alpha_step == 3 * (t // 3)
            assert torch.equal(method.alpha[name], alpha0)
            assert not torch.equal(method.alpha[name], expected)


def test_penalty_stays_out_of_the_loss_and_adamw_state(tiny_bert):
    method = RPP(0.5, gamma=0.5, eps=1e-3)
    method.prepare(tiny_bert)
    assert method.regularization_loss() is None
    optimizer = torch.optim.AdamW(tiny_bert.parameters(), lr=1e-2)
    method.step(0, 4, lr=1e-2)
    tiny_bert.train()
    loss = tiny_bert(input_ids=torch.randint(0, 30522, (2, 8)), labels=torch.tensor([0, 1])).loss
    loss.backward()
    optimizer.step()
    names = list(method.masks)
    state = {n: {k: v.clone() for k, v in optimizer.state[method.weight(n)].items()} for n in names}
    before = {n: method.weight(n).detach().clone() for n in names}
    method.step(1, 4, lr=1e-2)
    for n in names:
        weight = method.weight(n)
        assert not torch.equal(weight, before[n]), "the prox must move the weights"
        assert (weight == 0).any()
        assert optimizer.state[weight].keys() == state[n].keys()
        for key, value in optimizer.state[weight].items():
            assert torch.equal(value, state[n][key]), f"{n}: AdamW {key} changed"


def test_prox_never_leaves_more_zeros_than_the_target():
    z = torch.tensor([[0.5, -0.4, 0.3, 0.2], [0.1, -0.05, 0.02, -0.01]])
    everything_zeroed = reweighted_l1_prox(z, torch.ones_like(z), scale=1.0)
    assert (everything_zeroed == 0).all()
    capped = cap_zeros(everything_zeroed, z, sparsity=0.75)  # at most 6 of 8 zeros: the 2 largest |z| survive
    assert torch.equal(capped, torch.tensor([[0.5, -0.4, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    few = reweighted_l1_prox(z, torch.ones_like(z), scale=0.04)  # 3 zeros ≤ 6: untouched
    assert torch.equal(cap_zeros(few, z, sparsity=0.75), few)


def test_final_cut_meets_target_exactly_and_reports_sparsity_before_projection(tiny_bert):
    target = 0.7
    method = RPP(target, gamma=2.0, eps=1e-3, reweight_every=1)  # strong penalty: the prox zeros a lot
    method.prepare(tiny_bert)
    method.step(0, 3, lr=1e-3)
    for t in range(1, 4):
        method.step(t, 3, lr=1e-3)
    counts = {n: int((method.weight(n) == 0).sum()) for n in method.masks}
    caps = {n: round(target * method.weight(n).numel()) for n in method.masks}
    assert all(counts[n] <= caps[n] for n in counts)  # never more zeros than the cut leaves
    assert any(counts[n] == caps[n] for n in counts)  # the penalty is strong enough to reach the cap
    zeros, total = sum(counts.values()), sum(method.weight(n).numel() for n in method.masks)
    info = method.finalize(tiny_bert)
    assert info == {"sparsity_before_projection": pytest.approx(zeros / total)}
    for pw in method.weights.values():
        weight = pw.module.weight
        assert int((weight == 0).sum()) == round(target * weight.numel()), pw.name
    assert measure_sparsity(tiny_bert).encoder_sparsity == pytest.approx(target, abs=1e-3)


def test_final_cut_with_a_weak_penalty_is_a_magnitude_cut(tiny_bert):
    method = RPP(0.5, gamma=0.0)
    method.prepare(tiny_bert)
    original = {n: method.weight(n).detach().clone() for n in method.masks}
    method.step(0, 2, lr=1e-3)
    method.step(1, 2, lr=1e-3)
    info = method.finalize(tiny_bert)
    assert info["sparsity_before_projection"] == 0.0
    for name, pw in method.weights.items():
        kept = pw.module.weight != 0
        assert int(kept.sum()) == original[name].numel() // 2
        assert original[name].abs()[kept].min() >= original[name].abs()[~kept].max()


@pytest.mark.parametrize("bad", [{"gamma": -1.0}, {"eps": 0.0}, {"reweight_every": 0}, {"reweight_every": 2.5}])
def test_rejects_bad_hyperparameters(bad):
    with pytest.raises(BenchError):
        RPP(0.5, **bad)
