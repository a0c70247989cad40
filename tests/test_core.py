"""Unit tests of the core pieces: schedule, top-k, straight-through masks, prunable table, registry, cells."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bench.config.cell import Budget, Cell
from bench.core import registry
from bench.core.errors import BenchError
from bench.core.masking import StraightThroughMask, topk_mask
from bench.core.prunable import ROLES, prunable_weights
from bench.core.schedule import cubic_schedule


def test_cubic_schedule_holds_warmup_and_cooldown_and_is_cubic():
    kw = dict(total_steps=100, final=0.9, warmup_frac=0.1, cooldown_frac=0.2)
    assert cubic_schedule(0, **kw) == 0.0 and cubic_schedule(10, **kw) == 0.0
    assert cubic_schedule(80, **kw) == 0.9 and cubic_schedule(100, **kw) == 0.9 and cubic_schedule(500, **kw) == 0.9
    # halfway through the ramp (step 45): s_f + (s_i - s_f)(1 - 0.5)^3
    assert cubic_schedule(45, **kw) == pytest.approx(0.9 - 0.9 * 0.125)
    values = [cubic_schedule(t, **kw) for t in range(101)]
    assert values == sorted(values)


def test_cubic_schedule_scales_with_budget():
    assert cubic_schedule(450, 1000, 0.9) == pytest.approx(cubic_schedule(45, 100, 0.9))


@pytest.mark.parametrize("bad", [dict(total_steps=0), dict(warmup_frac=0.6, cooldown_frac=0.5)])
def test_cubic_schedule_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        cubic_schedule(1, **{"total_steps": 10, "final": 0.5, **bad})


def test_topk_mask_keeps_exact_count_even_with_ties():
    scores = torch.zeros(10, 10)
    scores[0, :5] = 1.0
    mask = topk_mask(scores, 0.9)
    assert int(mask.sum()) == 10 and mask[0, :5].all()
    assert int(topk_mask(torch.randn(7, 13), 0.5).sum()) == 91 - round(0.5 * 91)
    assert topk_mask(torch.randn(3, 3), 0.0).all()


def test_straight_through_gradient_equals_dense_gradient():
    torch.manual_seed(0)
    weight = torch.randn(4, 3, requires_grad=True)
    x = torch.randn(5, 3)
    mask = StraightThroughMask(weight.detach())
    mask.mask.copy_(topk_mask(torch.randn(4, 3), 0.5))
    (x @ mask(weight).T).sum().backward()
    # dL/dS = dL/d(W ⊙ M) ⊙ W, where dL/d(W ⊙ M) is the dense gradient of the masked product.
    dense_grad = torch.ones(5, 4).T @ x
    assert torch.allclose(mask.scores.grad, dense_grad * weight.detach())
    assert torch.allclose(weight.grad, dense_grad * mask.mask)


def test_prunable_table_finds_six_roles_per_layer(tiny_bert):
    found = prunable_weights(tiny_bert)
    assert len(found) == 6 * tiny_bert.config.num_hidden_layers
    assert {pw.role for pw in found} == set(ROLES)
    assert not any("classifier" in pw.name or "pooler" in pw.name for pw in found)


def test_unknown_architecture_lists_supported():
    model = torch.nn.Linear(2, 2)
    model.config = type("C", (), {"model_type": "gpt2"})()
    with pytest.raises(BenchError, match="unsupported architecture 'gpt2'.*bert.*distilbert.*mpnet.*roberta"):
        prunable_weights(model)


def test_registry_did_you_mean():
    with pytest.raises(BenchError, match="unknown method 'movment'. Did you mean 'movement'"):
        registry.methods.get("movment")
    with pytest.raises(BenchError, match="duplicate"):
        registry.methods.resolve("dense,dense")
    assert registry.methods.resolve("all") == registry.methods.names()


def test_method_rejects_bad_sparsity_and_unknown_hparams():
    movement = registry.methods.get("movement")
    with pytest.raises(BenchError, match="sparsity must be a number in \\[0, 1\\), got 1.0"):
        movement(1.0)
    with pytest.raises(BenchError, match="unknown hyperparameter.*mask_rate.*valid: .*mask_lr"):
        movement(0.5, mask_rate=0.1)


CELL = Cell("m", "movement", {"name": "mnli"}, 0.9, 0, Budget(), {"mask_lr": 0.01}, None, {"torch": "x"})


def test_cell_id_is_stable_across_processes():
    code = (
        "from bench.config.cell import Budget, Cell;"
        "print(Cell('m', 'movement', {'name': 'mnli'}, 0.9, 0, Budget(), {'mask_lr': 0.01}, None, {'torch': 'x'}).id)"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == CELL.id and len(CELL.id) == 64


def test_cell_id_changes_with_any_field():
    from dataclasses import replace

    assert replace(CELL, seed=1).id != CELL.id
    assert replace(CELL, method_hparams={"mask_lr": 0.02}).id != CELL.id
    assert replace(CELL, versions={"torch": "y"}).id != CELL.id
    assert Cell.from_dict(CELL.to_dict()).id == CELL.id


@pytest.mark.parametrize("kind", ["roberta", "distilbert", "mpnet"])
def test_prunable_table_covers_other_architectures(kind):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    sizes = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=2)
    if kind == "distilbert":
        sizes = dict(dim=32, n_heads=2, hidden_dim=64, n_layers=2)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(kind, vocab_size=100, **sizes))
    found = prunable_weights(model)
    assert len(found) == 12 and {pw.role for pw in found} == set(ROLES)
    assert sum(pw.module.weight.numel() for pw in found) == 2 * (4 * 32 * 32 + 2 * 32 * 64)


def test_dense_mask_cache_follows_every_write():
    from bench.core.masking import Mask

    mask = Mask(torch.ones(3, 4))
    weight = torch.full((3, 4), 2.0)
    assert torch.equal(mask(weight), weight)
    mask.mask[0, 0] = False  # in-place writes bump the version counter
    assert mask(weight)[0, 0] == 0 and mask(weight).sum() == 22
    mask.mask.copy_(topk_mask(torch.arange(12.0).view(3, 4), 0.5))
    assert int((mask(weight) != 0).sum()) == 6
    assert mask.dense_mask(torch.float64).dtype == torch.float64


def test_a_compiled_masked_layer_follows_every_mask_write():
    """Under torch.compile (inductor) the mask cache would be checked once, when tracing, and the compiled forward
    kept the first mask (found by benchmarks/compile_step.py: |diff| 0.6 on this layer); it must see every write."""
    from torch import nn
    from torch.nn.utils import parametrize

    from bench.core.masking import Mask

    torch.manual_seed(0)
    linear = nn.Linear(8, 4)
    mask = Mask(linear.weight)
    parametrize.register_parametrization(linear, "weight", mask)
    compiled = torch.compile(linear, backend="inductor")
    x = torch.randn(2, 8)
    with torch.no_grad():
        for step in range(3):
            keep = torch.rand(4, 8, generator=torch.Generator().manual_seed(step)) > 0.5
            mask.mask.copy_(keep)
            expected = x @ (linear.parametrizations.weight.original * keep).T + linear.bias
            assert torch.allclose(compiled(x), expected, atol=1e-6), f"a stale mask after write {step}"


def test_equal_budgets_from_flags_and_config_give_equal_cell_ids(tmp_path):
    from bench.run.runner import Matrix, expand

    def cell(budget):
        matrix = Matrix(methods=["magnitude"], tasks=["sst2"], sparsities=[0.5], output=tmp_path, budget=budget)
        return expand(matrix)[-1]

    flag, config = cell({"epochs": 1.0, "learning_rate": 1}), cell({"epochs": 1, "learning_rate": 1.0})
    assert flag.id == config.id and flag.budget.epochs == 1 and isinstance(flag.budget.learning_rate, float)
    assert cell({"epochs": 1.5}).budget.epochs == 1.5
