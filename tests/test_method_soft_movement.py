"""The math of ``soft_movement``: straight-through gradient, threshold schedule, λ ramp, 0.5% floor, projection."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from bench.methods.soft_movement import SoftMovement

from bench.core.masking import global_topk_masks
from bench.core.prunable import prunable_weights
from bench.core.sparsity import measure_sparsity

T = 100


def _loss(model):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 30522, (2, 8), generator=generator)
    return model(input_ids=ids, labels=torch.tensor([0, 2])).loss


def _randomize_scores(method, mean: float, std: float, seed: int = 0) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for mask in method.masks.values():
            mask.scores.normal_(mean, std)


@pytest.mark.parametrize("partial", [False, True])
def test_straight_through_gradient_is_weight_times_dense_gradient(tiny_bert, partial):
    dense = copy.deepcopy(tiny_bert)
    method = SoftMovement(0.7)
    method.prepare(tiny_bert)
    if partial:  # σ(S) around τ_f: a real mask, about half the weights pruned
        _randomize_scores(method, mean=math.log(0.1 / 0.9), std=1.0)
    method.step(T if partial else 0, T)
    masks = {name: mask.mask.clone() for name, mask in method.masks.items()}
    assert all(bool(m.all()) != partial for m in masks.values())
    dense_layers = {pw.name: pw.module for pw in prunable_weights(dense)}
    with torch.no_grad():  # the dense model sees the same effective weights W ⊙ M
        for name, mask in masks.items():
            dense_layers[name].weight.mul_(mask)

    _loss(tiny_bert).backward()
    _loss(dense).backward()

    for name, mask in method.masks.items():
        dense_grad = dense_layers[name].weight.grad  # ∂L/∂(W ⊙ M)
        w = method.weight(name)
        assert torch.allclose(mask.scores.grad, w.detach() * dense_grad, atol=1e-7, rtol=1e-5)
        assert torch.allclose(w.grad, dense_grad * masks[name], atol=1e-7, rtol=1e-5)
        assert float(mask.scores.grad.abs().sum()) > 0


def test_threshold_follows_the_cubic_schedule_and_lambda_ramps_with_it(tiny_bert):
    method = SoftMovement(0.7)
    method.prepare(tiny_bert)
    _randomize_scores(method, mean=math.log(0.08 / 0.92), std=0.5)
    # warm-up to step 10, ramp to step 80, then hold: τ_t = 0.1·(1 − (1 − (t − 10)/70)^3)
    expected = {0: 0.0, 10: 0.0, 45: 0.1 * (1 - 0.5**3), 80: 0.1, 100: 0.1}
    previous_kept = None
    for step, tau in expected.items():
        method.step(step, T)
        assert method.threshold == pytest.approx(tau, abs=1e-12)
        assert method.reg_lambda == pytest.approx(400.0 * tau / 0.1, abs=1e-9)
        kept = 0
        for mask in method.masks.values():
            assert mask.threshold == method.threshold
            assert torch.equal(mask.mask, torch.sigmoid(mask.scores.detach()) > tau)
            kept += int(mask.mask.sum())
        assert previous_kept is None or kept <= previous_kept
        previous_kept = kept
    assert previous_kept < sum(m.mask.numel() for m in method.masks.values())


def test_penalty_is_lambda_t_times_mean_of_normalized_sigmoid_sums(tiny_bert):
    method = SoftMovement(0.7)
    method.prepare(tiny_bert)
    _randomize_scores(method, mean=0.0, std=2.0)
    per_matrix = []
    for mask in method.masks.values():
        values = [1.0 / (1.0 + math.exp(-s)) for s in mask.scores.detach().flatten().tolist()]
        per_matrix.append(sum(values) / len(values))
    r = sum(per_matrix) / len(per_matrix)
    method.step(0, T)
    assert float(method.regularization_loss().detach()) == 0.0
    method.step(45, T)
    assert float(method.regularization_loss().detach()) == pytest.approx(400.0 * (1 - 0.5**3) * r, rel=1e-5)
    method.step(T, T)
    assert float(method.regularization_loss().detach()) == pytest.approx(400.0 * r, rel=1e-5)


def test_floor_keeps_half_a_percent_when_every_score_is_below_threshold(tiny_bert):
    method = SoftMovement(0.7)
    method.prepare(tiny_bert)
    _randomize_scores(method, mean=-6.0, std=0.5)  # σ(S) ≈ 0.0025 < τ_f everywhere
    method.step(T, T)
    for mask in method.masks.values():
        n = mask.mask.numel()
        k = int(mask.mask.sum())
        assert k == math.ceil(0.005 * n)  # 1024 → 6, 2048 → 11
        assert k >= 0.005 * n
        kept, dropped = mask.scores.detach()[mask.mask], mask.scores.detach()[~mask.mask]
        assert float(kept.min()) >= float(dropped.max())


def test_finalize_projects_to_target_with_floor_and_reports_threshold_sparsity(tiny_bert):
    method = SoftMovement(0.7)
    method.prepare(tiny_bert)
    _randomize_scores(method, mean=math.log(0.1 / 0.9), std=1.0)
    starved = next(iter(method.masks))
    with torch.no_grad():
        method.masks[starved].scores.sub_(20.0)  # this matrix alone would be pruned entirely
    scores = {name: mask.scores.detach().clone() for name, mask in method.masks.items()}
    below = sum(int((torch.sigmoid(s) <= 0.1).sum()) for s in scores.values())
    floor = math.ceil(0.005 * scores[starved].numel())
    total = sum(s.numel() for s in scores.values())
    expected_before = (below - floor) / total  # the starved matrix keeps its 0.5%

    info = method.finalize(tiny_bert)

    assert info["sparsity_before_projection"] == pytest.approx(expected_before, abs=1e-12)
    assert abs(measure_sparsity(tiny_bert).encoder_sparsity - 0.7) <= 0.005
    layers = {pw.name: pw.module for pw in prunable_weights(tiny_bert)}
    assert int((layers[starved].weight != 0).sum()) == floor
    others = [name for name in scores if name != starved]
    kept = torch.cat([scores[n][layers[n].weight != 0] for n in others])
    pruned = torch.cat([scores[n][layers[n].weight == 0] for n in others])
    assert float(kept.min()) >= float(pruned.max())  # one global ranking across matrices


def test_global_topk_is_exact_and_ranks_across_matrices():
    scores = {"a": torch.tensor([[0.0, 5.0], [1.0, 2.0]]), "b": torch.tensor([[3.0, -1.0, 4.0]])}
    masks = global_topk_masks(scores, 3 / 7)
    assert masks["a"].tolist() == [[False, True], [False, True]]
    assert masks["b"].tolist() == [[True, False, True]]
    floored = global_topk_masks(scores, 5 / 7, floor=0.005)  # keeps 2: the top of each matrix
    assert floored["a"].tolist() == [[False, True], [False, False]]
    assert floored["b"].tolist() == [[False, False, True]]
