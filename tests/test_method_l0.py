"""The math of ``l0``: hard-concrete gates (Louizos et al. 2018 eq. 10-13), the L0 penalty, the final projection."""

from __future__ import annotations

import math

import pytest
import torch
from bench.methods.l0 import BETA, L0, LEFT, RIGHT, eval_gate, sample_gate

from bench.core.errors import BenchError
from bench.core.prunable import prunable_weights
from bench.core.sparsity import measure_sparsity


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def closed_form_ends(score: float, beta: float = 2 / 3, left: float = -0.1, right: float = 1.1) -> tuple[float, float]:
    """P(z = 0) and P(z = 1) of the stretched, clamped binary concrete, from its CDF.

    The binary concrete s has CDF Q(s) = σ(β·logit(s) − log α); s̄ = s(ζ − γ) + γ is ≤ 0 when s ≤ −γ/(ζ − γ) and
    ≥ 1 when s ≥ (1 − γ)/(ζ − γ), whose logits are log(−γ/ζ) and log((1 − γ)/(ζ − 1)).
    """
    p_zero = _sigmoid(beta * math.log(-left / right) - score)
    p_one = 1.0 - _sigmoid(beta * math.log((1 - left) / (right - 1)) - score)
    return p_zero, p_one


@pytest.mark.parametrize("score", [-1.5, 0.0, 2.197])
def test_sampled_gates_follow_the_hard_concrete_distribution(score):
    torch.manual_seed(0)
    n = 200_000
    z = sample_gate(torch.full((n,), score))
    assert float(z.min()) >= 0.0 and float(z.max()) <= 1.0
    p_zero, p_one = closed_form_ends(score)
    assert float((z == 0).float().mean()) == pytest.approx(p_zero, abs=0.006)
    assert float((z == 1).float().mean()) == pytest.approx(p_one, abs=0.006)
    # 0 < z < 1 happens too: the gate is not a plain Bernoulli.
    assert 0.05 < float(((z > 0) & (z < 1)).float().mean()) < 0.95


def composed_gate(scores, beta=BETA, left=LEFT, right=RIGHT):
    """Louizos et al. eq. (10)-(11) as plain autograd ops: what sample_gate must equal bit for bit."""
    u = torch.rand_like(scores).clamp_(1e-6, 1.0 - 1e-6)
    s = torch.sigmoid((u.log() - (-u).log1p() + scores) / beta)
    return (s * (right - left) + left).clamp(0.0, 1.0)


@pytest.mark.parametrize("beta", [BETA, 0.5])
def test_the_in_place_gate_equals_the_composed_ops_bit_for_bit(beta):
    """Same random draws, same gates, same gradients (with gates at 0, at 1 and in between, and -0.0 grads)."""
    start = torch.linspace(-6.0, 6.0, 300_000).view(600, 500)
    upstream = torch.randn(600, 500)
    upstream[0, :10] = -0.0
    gates, grads = [], []
    for gate in (sample_gate, composed_gate):
        scores = start.clone().requires_grad_()
        torch.manual_seed(3)
        z = gate(scores, beta)
        (z * upstream).sum().backward()
        gates.append(z.detach())
        grads.append(scores.grad)
    assert torch.equal(gates[0], gates[1]) and torch.equal(grads[0], grads[1])
    assert bool((gates[0] == 0).any()) and bool((gates[0] == 1).any()) and bool(((gates[0] > 0) & (gates[0] < 1)).any())
    assert torch.equal(torch.signbit(grads[0]), torch.signbit(grads[1]))


def test_eval_gate_at_init_is_098_and_deterministic(tiny_bert):
    method = L0(0.7)
    method.prepare(tiny_bert)
    mask = next(iter(method.masks.values()))
    assert float(torch.sigmoid(mask.scores.detach()).mean()) == pytest.approx(0.9, abs=1e-4)
    tiny_bert.eval()
    pw = prunable_weights(tiny_bert)[0]
    w = method.weight(pw.name)
    assert torch.allclose(pw.module.weight, w * 0.98, atol=1e-5)
    assert torch.equal(pw.module.weight, pw.module.weight)  # no noise in eval mode
    assert torch.equal(eval_gate(torch.tensor([-10.0, 10.0])), torch.tensor([0.0, 1.0]))


def test_training_mode_samples_fresh_gates_with_gradient_to_scores(tiny_bert):
    method = L0(0.7)
    method.prepare(tiny_bert)
    tiny_bert.train()
    pw = prunable_weights(tiny_bert)[0]
    torch.manual_seed(1)
    first, second = pw.module.weight, pw.module.weight
    assert not torch.equal(first, second)
    ids = torch.randint(0, 30522, (2, 8))
    tiny_bert(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    scores = method.masks[pw.name].scores
    assert scores.grad is not None and float(scores.grad.abs().sum()) > 0


def test_penalty_equals_the_hand_formula(tiny_bert):
    method = L0(0.7, reg_lambda=3.0)
    method.prepare(tiny_bert)
    torch.manual_seed(2)
    with torch.no_grad():
        for mask in method.masks.values():
            mask.scores.normal_(0.0, 2.0)
    shift = (2 / 3) * math.log(0.1 / 1.1)  # β·log(−l/r)
    per_matrix = []
    for mask in method.masks.values():
        values = [_sigmoid(s - shift) for s in mask.scores.detach().flatten().tolist()]
        per_matrix.append(sum(values) / len(values))
    expected = 3.0 * sum(per_matrix) / len(per_matrix)
    assert float(method.regularization_loss().detach()) == pytest.approx(expected, rel=1e-5)


def test_penalty_at_init_is_lambda_times_open_probability(tiny_bert):
    method = L0(0.7)
    method.prepare(tiny_bert)
    # σ(2.197 + (2/3)·ln 11): the probability that a gate initialised at σ(S) = 0.9 is non-zero.
    expected = 125.0 * _sigmoid(2.197 + (2 / 3) * math.log(11))
    assert float(method.regularization_loss().detach()) == pytest.approx(expected, rel=1e-5)


def test_finalize_projects_globally_and_reports_closed_gates(tiny_bert):
    method = L0(0.7)
    method.prepare(tiny_bert)
    torch.manual_seed(3)
    with torch.no_grad():
        for mask in method.masks.values():
            mask.scores.normal_(-1.0, 2.0)
    scores = {name: mask.scores.detach().clone() for name, mask in method.masks.items()}
    weights = {name: method.weight(name).detach().clone() for name in method.masks}
    everything = torch.cat([s.flatten() for s in scores.values()])
    closed = float((torch.sigmoid(everything) * 1.2 - 0.1 <= 0).float().mean())  # σ(S) ≤ 1/12
    assert 0.2 < closed < 0.9

    info = method.finalize(tiny_bert)

    assert info["sparsity_before_projection"] == pytest.approx(closed, abs=1e-9)
    assert abs(measure_sparsity(tiny_bert).encoder_sparsity - 0.7) <= 0.005
    kept_scores, pruned_scores = [], []
    for pw in prunable_weights(tiny_bert):
        kept = pw.module.weight != 0
        # Binary mask: kept weights keep their exact values, no continuous gate folded in.
        assert torch.equal(pw.module.weight[kept], weights[pw.name][kept])
        kept_scores.append(scores[pw.name][kept])
        pruned_scores.append(scores[pw.name][~kept])
    assert float(torch.cat(kept_scores).min()) >= float(torch.cat(pruned_scores).max())


def test_search_space_and_defaults():
    assert L0.defaults["mask_init"] == pytest.approx(math.log(0.9 / 0.1), abs=1e-3)
    assert L0.defaults["mask_lr"] == 0.1
    with pytest.raises(BenchError, match="unknown hyperparameter"):
        L0(0.5, lambda_=1.0)
