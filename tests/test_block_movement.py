"""Issue 17 item 2: ``block_movement``, the hybrid recipe of Lagunas et al. (2021) as one method.

Attention scores live per block and FFN scores per unit (one parameter for FFN-in's row and FFN-out's column); the
straight-through gradient is summed over each group; the threshold and the penalty follow nn_pruning; the final masks
hit the target and prune whole every head nn_pruning's compile would remove, so compaction removes exactly the pruned
heads and units; exports keep parity; bad values are one-line BenchErrors.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from bench.methods.block_movement import BlockMovement
from transformers import BertForSequenceClassification

from bench.core import registry
from bench.core.errors import BenchError
from bench.core.granularity import Expansion
from bench.core.prunable import prunable_weights
from bench.core.sparsity import measure_sparsity
from bench.deploy.compaction import compact
from bench.deploy.export_format import load_export, write_export
from bench.testing import _train, check_method
from tests.conftest import tiny_config
from tests.test_granularity import inputs, roles

HEADS, HEAD, HIDDEN, FFN = 4, 16, 64, 128  # the tiny model below
TOTAL = 2 * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)  # prunable weights of its two layers
UNIT = 2 * HIDDEN  # weights of one FFN unit (its FFN-in row and FFN-out column)


def model_4_heads(seed: int = 0) -> BertForSequenceClassification:
    """A tiny BERT, hidden 64 with 4 heads of 16 and FFN 128, with random biases (for compaction to fold)."""
    torch.manual_seed(seed)
    config = tiny_config(hidden_size=HIDDEN, num_attention_heads=HEADS, intermediate_size=FFN)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for pw in prunable_weights(model):
            pw.module.bias.normal_()
    return model


def prepared(sparsity: float = 0.5, **hparams):
    model = model_4_heads()
    method = BlockMovement(sparsity, **hparams)
    method.prepare(model)
    return model, method


def head_parts(weights: dict) -> torch.Tensor:
    """Bool (4, heads): per head, whether its rows of Q, K, V and its columns of O are all zero."""
    rows = [(weights[r] == 0).reshape(HEADS, -1).all(1) for r in ("q", "k", "v")]
    cols = (weights["o"] == 0).reshape(HIDDEN, HEADS, HEAD).all(2).all(0)
    return torch.stack([*rows, cols])


# ---- where the scores live -------------------------------------------------------------------------------------
@pytest.mark.parametrize("block_size, side", [(32, 16), (16, 16), (8, 8)])
def test_attention_scores_live_per_block_and_ffn_scores_per_unit_shared_by_both_matrices(block_size, side):
    """Blocks of ``block_size``, at most one head high (32 on heads of 16 gives 16); one FFN score vector per
    layer, the same parameter in FFN-in's and FFN-out's masks, handed to the optimizer once."""
    model, method = prepared(block_size=block_size)
    assert method.grouping.block_size == side
    generator = torch.Generator().manual_seed(0)
    for layer in (0, 1):
        r = roles(model, layer)
        for role in ("q", "k", "v", "o"):
            mask = method.masks[r[role].name]
            assert tuple(mask.scores.shape) == (HIDDEN // side, HIDDEN // side)
            scores = torch.randn(mask.scores.shape, generator=generator)
            expected = scores.repeat_interleave(side, 0).repeat_interleave(side, 1)
            assert torch.equal(mask.expansion(scores), expected), "each block's score repeated over the block"
        unit_in, unit_out = method.masks[r["ffn_in"].name], method.masks[r["ffn_out"].name]
        assert unit_in.scores is unit_out.scores and tuple(unit_in.scores.shape) == (FFN,)
        units = torch.randn(FFN, generator=generator)
        assert torch.equal(unit_in.expansion(units), units[:, None].expand(FFN, HIDDEN)), "row i of FFN-in"
        assert torch.equal(unit_out.expansion(units), units[None, :].expand(HIDDEN, FFN)), "column i of FFN-out"
    params = method.param_groups()[0]["params"]
    assert len(params) == len({id(p) for p in params}) == 2 * (4 + 1)


def test_scores_get_the_straight_through_gradient_summed_over_each_block_and_unit():
    """Lagunas et al. eq. 2 (all masks are still ones, so W' = W and the plain model gives ∂L/∂W'): a block's score
    gets Σ ∂L/∂W'_ij · W_ij over its block; a unit's score the same sum over FFN-in's row i and FFN-out's column i."""
    labels = torch.tensor([0, 1, 2])
    model, method = prepared(block_size=8)
    reference = model_4_heads()
    model(**inputs(), labels=labels).loss.backward()
    reference(**inputs(), labels=labels).loss.backward()
    for layer in (0, 1):
        r = roles(reference, layer)
        moved = {role: pw.module.weight.grad * pw.module.weight.detach() for role, pw in r.items()}
        for role in ("q", "k", "v", "o"):
            expected = Expansion("block", 8, (HIDDEN, HIDDEN)).sums(moved[role])
            torch.testing.assert_close(method.masks[r[role].name].scores.grad, expected, atol=1e-6, rtol=1e-5)
        expected = moved["ffn_in"].sum(1) + moved["ffn_out"].sum(0)
        torch.testing.assert_close(method.masks[r["ffn_in"].name].scores.grad, expected, atol=1e-6, rtol=1e-5)


# ---- threshold and penalty ---------------------------------------------------------------------------------------
def test_threshold_masks_and_the_penalty_follow_nn_pruning():
    """M = 1[σ(S) > τ_t] per block and unit (τ cubic from 0 to 0.1 after a 5% warm-up, 49% cool-down); the penalty
    is λ_t · (mean over attention matrices of mean σ(S) + mean over layers of mean σ(S) of the units) / 2."""
    model, method = prepared(block_size=8)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for mask in method.masks.values():
            mask.scores.copy_(torch.randn(mask.scores.shape, generator=generator) * 3)
    method.step(3, 100)
    assert method.threshold == 0.0 and float(method.regularization_loss().detach()) == 0.0, "nothing in the warm-up"
    assert all(bool(m.mask.all()) for m in method.masks.values())
    method.step(30, 100)
    tau = 0.1 * (1 - (1 - 25 / 46) ** 3)
    assert method.threshold == pytest.approx(tau) and method.reg_lambda == pytest.approx(10.0 * tau / 0.1)
    for layer in (0, 1):
        r = roles(model, layer)
        for role in ("q", "k", "v", "o"):
            mask = method.masks[r[role].name]
            expected = Expansion("block", 8, (HIDDEN, HIDDEN))(torch.sigmoid(mask.scores) > tau)
            assert torch.equal(mask.mask, expected)
        units = torch.sigmoid(method.masks[r["ffn_in"].name].scores) > tau
        assert torch.equal(method.masks[r["ffn_in"].name].mask, units[:, None].expand(FFN, HIDDEN))
        assert torch.equal(method.masks[r["ffn_out"].name].mask, units[None, :].expand(HIDDEN, FFN))
    attention = [torch.sigmoid(m.scores).mean() for n, m in method.masks.items() if "attention" in n]
    units = [torch.sigmoid(method.masks[roles(model, i)["ffn_in"].name].scores).mean() for i in (0, 1)]
    expected = method.reg_lambda * (torch.stack(attention).mean() + torch.stack(units).mean()) / 2
    torch.testing.assert_close(method.regularization_loss(), expected)
    method.step(100, 100)
    assert method.threshold == 0.1 and method.reg_lambda == 10.0


# ---- the final masks, compaction and export ------------------------------------------------------------------------
def finalized(sparsity: float, block_size: int = 32, q_dead_head: int = 1):
    """A tiny model trained 6 steps, whose head ``q_dead_head`` of layer 0 has the lowest scores of all in Q (so the
    ranking prunes its Q rows) and the highest in K, V and O, then finalized."""
    model, method = prepared(sparsity, block_size=block_size)
    _train(model, method, 6)
    side = method.grouping.block_size
    rows = slice(q_dead_head * HEAD // side, (q_dead_head + 1) * HEAD // side)
    r = roles(model, 0)
    with torch.no_grad():
        method.masks[r["q"].name].scores[rows] = -100.0
        for role in ("k", "v"):
            method.masks[r[role].name].scores[rows] = 100.0
        method.masks[r["o"].name].scores[:, rows] = 100.0
    return model, method, method.finalize(model)


@pytest.mark.parametrize("block_size", [32, 8])
@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_final_sparsity_is_the_target_and_compaction_removes_exactly_the_pruned_heads_and_units(sparsity, block_size):
    model, method, info = finalized(sparsity, block_size)
    report = measure_sparsity(model)
    assert abs(report.encoder_sparsity - sparsity) <= UNIT / 2 / TOTAL, "within half an FFN unit of the target"
    heads = units = 0
    for layer in (0, 1):
        r = {role: pw.module.weight for role, pw in roles(model, layer).items()}
        parts = head_parts(r)
        assert bool((parts.all(0) | ~parts.any(0)).all()), "a head with Q, K or V rows (or O columns) gone is gone"
        heads += int(parts.all(0).sum())
        unit_in, unit_out = (r["ffn_in"] == 0).all(1), (r["ffn_out"] == 0).all(0)
        assert torch.equal(unit_in, unit_out), "FFN-in row i and FFN-out column i go together"
        units += int(unit_in.sum())
        if layer == 0:
            assert bool(parts[:, 1].all()), "Q rows pruned by the ranking: the head is pruned whole, as nn_pruning"
    assert info["heads_pruned"] == heads and units > 0
    compacted, compaction = compact(model)
    assert compaction.heads_removed == heads and compaction.ffn_units_removed == units
    zeros = int(sum((pw.module.weight == 0).sum() for pw in prunable_weights(model)))
    assert zeros - compaction.compacted_zeros == heads * 4 * HEAD * HIDDEN + units * UNIT, "exactly those weights"
    torch.testing.assert_close(compacted(**inputs()).logits, model(**inputs()).logits, atol=1e-5, rtol=1e-5)


def test_sparsity_before_projection_is_what_the_threshold_pruned():
    """σ(S) ≤ τ_f = 0.1 prunes three of layer 0's heads in V and FFN units 0-9 of both layers; then the
    projection hits the target."""
    model, method = prepared(0.6)
    r0, r1 = roles(model, 0), roles(model, 1)
    with torch.no_grad():
        for mask in method.masks.values():
            mask.scores.fill_(1.0)
        method.masks[r0["v"].name].scores[: 3 * HEAD // 16] = -5.0
        for r in (r0, r1):
            method.masks[r["ffn_in"].name].scores[:10] = -5.0
    info = method.finalize(model)
    assert info["sparsity_before_projection"] == pytest.approx((3 * HEAD * HIDDEN + 2 * 10 * UNIT) / TOTAL)
    assert abs(measure_sparsity(model).encoder_sparsity - 0.6) <= UNIT / 2 / TOTAL


@pytest.mark.parametrize("block_size", [32, 8])
def test_an_export_computes_what_the_finalized_model_computes(tmp_path, block_size):
    model, _, _ = finalized(0.6, block_size)
    write_export(model, tmp_path)
    reference = model(**inputs()).logits
    for sparse in (True, False):
        loaded = load_export(tmp_path, sparse=sparse)
        torch.testing.assert_close(loaded(**inputs()).logits, reference, atol=1e-4, rtol=1e-4)


# ---- registration, conformance, validation -------------------------------------------------------------------------
def test_it_is_registered_with_the_papers_defaults():
    assert registry.methods.get("block_movement") is BlockMovement
    assert dict(BlockMovement.defaults) == {
        "warmup_frac": 0.05, "cooldown_frac": 0.49, "warmup_steps": None, "cooldown_steps": None, "block_size": 32,
        "mask_lr": 1e-2, "score_init": 0.0, "final_threshold": 0.1, "final_lambda": 10.0,
    }  # fmt: skip
    assert BlockMovement(0.5).hparams["block_size"] == 32, "block_size enters the cell"


def test_the_conformance_suite_passes_with_blocks_smaller_than_a_head():
    Hparams = dataclasses.make_dataclass("Hparams", [("block_size", int, dataclasses.field(default=8))],
                                         bases=(BlockMovement.Hparams,), frozen=True)  # fmt: skip
    variant = type("BlockMovement", (BlockMovement,), {"Hparams": Hparams, "__doc__": BlockMovement.__doc__,
                                                       "__module__": BlockMovement.__module__})  # fmt: skip
    assert "sparsity hits the target" in check_method(variant)


@pytest.mark.parametrize(
    "hparams, words",
    [
        ({"block_size": 0}, "'block_size' of method 'block_movement' must be an integer >= 1, got 0"),
        ({"block_size": 2.5}, "'block_size' of method 'block_movement' must be an integer"),
        ({"final_threshold": 1.5}, "'final_threshold' of method 'block_movement' must be in (0, 1)"),
        ({"final_threshold": 0}, "'final_threshold' of method 'block_movement' must be in (0, 1)"),
        ({"final_lambda": -1.0}, "'final_lambda' of method 'block_movement' must be >= 0, got -1.0"),
        ({"mask_lr": "1e-2"}, "'mask_lr' of method 'block_movement' must be a finite number"),
        ({"granularity": "block"}, "unknown hyperparameter(s) granularity for method 'block_movement'"),
    ],
)
def test_bad_values_are_one_line_bench_errors(hparams, words):
    with pytest.raises(BenchError) as err:
        BlockMovement(0.5, **hparams)
    assert words in str(err.value) and "\n" not in str(err.value)
