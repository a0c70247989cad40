"""Issue 17 item 1: ``granularity`` (unstructured / block / structured) for the score-based methods.

Masks are constant over each block, head and unit; the kept groups follow the target; unstructured is what it was;
structured masks compact into exactly the pruned heads and units; exports keep parity; the conformance suite passes
at every granularity; bad values are one-line BenchErrors; cells without the setting keep their ids.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from bench.methods.magnitude import Magnitude
from bench.methods.movement import Movement
from bench.methods.soft_movement import SoftMovement
from transformers import BertForSequenceClassification

from bench.core.errors import BenchError
from bench.core.granularity import Expansion, GranularityHparams, prune_to
from bench.core.masking import topk_masks
from bench.core.prunable import prunable_weights
from bench.core.sparsity import measure_sparsity
from bench.deploy.compaction import compact
from bench.deploy.export_format import load_export, write_export
from bench.testing import _train, check_method
from tests.conftest import tiny_config

METHODS = [Magnitude, Movement, SoftMovement]
HEADS, HEAD = 4, 8  # the tiny model below: hidden 32, 4 heads of 8, FFN 64
SETTINGS = [("unstructured", 32), ("block", 8), ("block", 5), ("structured", 32)]


def model_4_heads(seed: int = 0) -> BertForSequenceClassification:
    """A tiny BERT with 4 heads and random biases (so that compaction has biases to fold)."""
    torch.manual_seed(seed)
    model = BertForSequenceClassification(tiny_config(num_attention_heads=HEADS)).eval()
    with torch.no_grad():
        for pw in prunable_weights(model):
            pw.module.bias.normal_()
    return model


def trained(cls, granularity: str, block_size: int = 32, sparsity: float = 0.5, steps: int = 6):
    """A tiny model and ``cls`` at ``granularity``, prepared and trained ``steps`` steps with the hooks called."""
    model = model_4_heads()
    method = cls(sparsity, granularity=granularity, block_size=block_size)
    method.prepare(model)
    _train(model, method, steps)
    return model, method


def roles(model, layer: int) -> dict:
    return {pw.role: pw for pw in prunable_weights(model) if pw.layer == layer}


def inputs():
    ids = torch.randint(0, 1000, (3, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


# ---- expansion -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", METHODS)
@pytest.mark.parametrize("block_size", [8, 5])
def test_block_masks_are_constant_over_each_block_and_keep_the_target_count(cls, block_size):
    model, method = trained(cls, "block", block_size)
    for sparsity in (0.3, 0.5):
        method.project_scores(sparsity)
        for name, mask in method.masks.items():
            exp = Expansion("block", block_size, tuple(mask.mask.shape))
            share = exp.reduce(mask.mask.float())  # fraction kept per block
            assert bool(((share == 0) | (share == 1)).all()), f"{name}: a block is partly pruned"
            pruned_blocks = int((share == 0).sum())
            pruned_weights = int((~mask.mask).sum())
            if block_size == 8:  # 32 and 64 are multiples of 8: equal blocks, the count within one of the target
                assert abs(pruned_blocks - sparsity * share.numel()) <= 1
            else:  # partial edge blocks: within half the largest block of the target in weights
                assert abs(pruned_weights - sparsity * mask.mask.numel()) <= block_size**2 / 2
    if cls is not Magnitude:  # learned scores live at the blocks' shape
        mask = next(iter(method.masks.values()))
        assert tuple(mask.scores.shape) == (-(-32 // block_size), -(-32 // block_size))


@pytest.mark.parametrize("cls", METHODS)
def test_structured_masks_share_one_decision_per_head_and_unit_and_keep_the_target_count(cls):
    model, method = trained(cls, "structured")
    for sparsity in (0.3, 0.5, 0.7):
        method.project_scores(sparsity)
        for layer in (0, 1):
            r = {role: method.masks[pw.name].mask for role, pw in roles(model, layer).items()}
            head_rows = [r[x].view(HEADS, HEAD * 32) for x in ("q", "k", "v")]
            head_cols = r["o"].view(32, HEADS, HEAD).permute(1, 0, 2).reshape(HEADS, -1)
            for part in [*head_rows, head_cols]:
                assert bool((part.all(1) | ~part.any(1)).all()), "a head is partly pruned"
                assert torch.equal(part[:, 0], head_rows[0][:, 0]), "Q, K, V and O prune the same heads"
            unit_in, unit_out = r["ffn_in"], r["ffn_out"].t()
            assert bool((unit_in.all(1) | ~unit_in.any(1)).all()) and bool((unit_out.all(1) | ~unit_out.any(1)).all())
            assert torch.equal(unit_in[:, 0], unit_out[:, 0]), "FFN-in row i and FFN-out column i go together"
            pruned_heads = int((~head_rows[0][:, 0]).sum())
            assert abs(pruned_heads - sparsity * HEADS) <= 1, "the kept heads within one of the target"
            pruned = sum(int((~m).sum()) for m in r.values())
            layer_size = sum(m.numel() for m in r.values())
            assert abs(pruned - sparsity * layer_size) <= 2 * 32 / 2, "the layer within half an FFN unit"
    if cls is not Magnitude:
        q = roles(model, 0)["q"].name
        assert tuple(method.masks[q].scores.shape) == (HEADS,), "learned scores live per head"


def test_unstructured_masks_are_what_they_were():
    """The default is today's behaviour: per-weight local top-k of the same scores, with per-weight scores."""
    model, method = trained(Magnitude, "unstructured")
    method.project_scores(0.6)
    expected = topk_masks({n: method.weight(n).detach().abs() for n in method.masks}, 0.6)
    assert all(torch.equal(method.masks[n].mask, keep) for n, keep in expected.items())
    _, movement = trained(Movement, "unstructured")
    assert all(m.scores.shape == m.mask.shape and m.expansion is None for m in movement.masks.values())
    again = [trained(Movement, "unstructured")[1], trained(Movement, "unstructured", block_size=4)[1]]
    for other in again:
        assert all(torch.equal(other.masks[n].mask, m.mask) for n, m in movement.masks.items())


def test_block_scores_get_the_sum_of_the_straight_through_gradient():
    """Lagunas et al. eq. 2: a block score's gradient is the sum over its block of ∂L/∂W'_ij · W_ij (all masks are
    still ones here, so W' = W and the plain model gives ∂L/∂W')."""
    labels = torch.tensor([0, 1, 2])
    model, reference = model_4_heads(), model_4_heads()
    method = Movement(0.5, granularity="block", block_size=5)
    method.prepare(model)
    model(**inputs(), labels=labels).loss.backward()
    reference(**inputs(), labels=labels).loss.backward()
    for name, mask in method.masks.items():
        weight = reference.get_submodule(name).weight
        expected = Expansion("block", 5, tuple(weight.shape)).sums(weight.grad * weight.detach())
        torch.testing.assert_close(mask.scores.grad, expected, atol=1e-6, rtol=1e-5)


def test_prune_to_counts_weights_with_groups_of_mixed_sizes():
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    sizes = torch.tensor([10.0, 100.0, 10.0, 10.0, 10.0])
    keep = prune_to(scores, sizes, 35.0)  # the big group would overshoot: smaller ones after it are pruned instead
    assert keep.tolist() == [False, True, False, False, True]
    assert prune_to(torch.zeros(4), torch.full((4,), 5.0), 10.0).sum() == 2, "equal sizes: round(target / size)"


# ---- compaction and export -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", METHODS)
def test_compaction_removes_exactly_the_heads_and_units_the_structured_masks_pruned(cls):
    model, method = trained(cls, "structured", sparsity=0.5)
    method.finalize(model)
    heads = units = 0
    for layer in (0, 1):
        r = roles(model, layer)
        heads += int((r["q"].module.weight.view(HEADS, -1) == 0).all(1).sum())
        units += int((r["ffn_in"].module.weight == 0).all(1).sum())
        assert torch.equal((r["ffn_in"].module.weight == 0).all(1), (r["ffn_out"].module.weight == 0).all(0))
    assert heads > 0 and units > 0
    compacted, report = compact(model)
    assert report.heads_removed == heads and report.ffn_units_removed == units
    assert report.compacted_zeros == 0 and report.structured_fraction == 1.0, "all of the sparsity became structure"
    assert sum(pw.module.weight.numel() for pw in prunable_weights(compacted)) == report.compacted_params
    assert measure_sparsity(model).encoder_sparsity == pytest.approx(0.5, abs=0.01)
    torch.testing.assert_close(compacted(**inputs()).logits, model(**inputs()).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [Magnitude, Movement])
@pytest.mark.parametrize("granularity, block_size", SETTINGS)
def test_an_export_computes_what_the_finalized_model_computes(tmp_path, cls, granularity, block_size):
    model, method = trained(cls, granularity, block_size, sparsity=0.6)
    method.finalize(model)
    write_export(model, tmp_path)
    reference = model(**inputs()).logits
    for sparse in (True, False):
        loaded = load_export(tmp_path, sparse=sparse)
        torch.testing.assert_close(loaded(**inputs()).logits, reference, atol=1e-4, rtol=1e-4)


# ---- conformance, validation, ids ------------------------------------------------------------------------------
def with_defaults(cls, granularity: str, block_size: int):
    """``cls`` whose defaults are ``granularity`` and ``block_size`` (check_method builds the method with its
    defaults)."""
    fields = {"granularity": granularity, "block_size": block_size}
    Hparams = dataclasses.make_dataclass("Hparams", [(k, type(v), dataclasses.field(default=v)) for k, v in
                                                     fields.items()], bases=(cls.Hparams,), frozen=True)  # fmt: skip
    return type(cls.__name__, (cls,), {"Hparams": Hparams, "__doc__": cls.__doc__, "__module__": cls.__module__})


@pytest.mark.parametrize("cls", METHODS)
@pytest.mark.parametrize("granularity, block_size", [("block", 4), ("block", 5), ("structured", 32)])
def test_the_conformance_suite_passes_at_every_granularity(cls, granularity, block_size):
    variant = with_defaults(cls, granularity, block_size)
    assert variant(0.5).h.granularity == granularity
    assert "sparsity hits the target" in check_method(variant)


@pytest.mark.parametrize(
    "hparams, words",
    [
        ({"granularity": "rows"}, "'granularity' of method 'movement' must be one of unstructured, block, structured"),
        ({"granularity": 3}, "'granularity' of method 'movement' must be a string"),
        ({"block_size": 0}, "'block_size' of method 'movement' must be an integer >= 1, got 0"),
        ({"block_size": 2.5}, "'block_size' of method 'movement' must be an integer"),
    ],
)
def test_bad_values_are_one_line_bench_errors(hparams, words):
    with pytest.raises(BenchError) as err:
        Movement(0.5, **hparams)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_hparams_dataclass_checks_its_values_itself():
    with pytest.raises(BenchError, match="'granularity' must be one of unstructured, block, structured, got 'rows'"):
        GranularityHparams(granularity="rows")
    with pytest.raises(BenchError, match="'block_size' must be an integer >= 1, got -1"):
        Movement.Hparams(block_size=-1)


def test_a_config_with_a_bad_granularity_names_the_field(tmp_path):
    from bench.config.yaml_config import load_config

    config = tmp_path / "m.yaml"
    config.write_text("methods: [movement]\ntasks: [sst2]\nsparsities: [0.5]\n"
                      "method_hparams: {movement: {granularity: rows}}\n")  # fmt: skip
    with pytest.raises(BenchError) as err:
        load_config(config)
    message = str(err.value)
    assert "method_hparams.movement.granularity" in message and "unstructured, block, structured" in message


def test_cells_without_the_setting_keep_their_hyperparameters_and_ids(tmp_path):
    from bench.config.cell import Cell
    from bench.config.matrix import Matrix, expand

    before = {  # what cells held before granularity existed
        "magnitude": {"warmup_frac", "cooldown_frac", "warmup_steps", "cooldown_steps"},
        "movement": {"warmup_frac", "cooldown_frac", "warmup_steps", "cooldown_steps", "mask_lr", "score_init"},
        "soft_movement": {"warmup_frac", "cooldown_frac", "warmup_steps", "cooldown_steps", "mask_lr", "score_init",
                          "final_threshold", "final_lambda"},
    }  # fmt: skip
    cells = expand(Matrix(methods=list(before), tasks=["sst2"], sparsities=[0.5], output=tmp_path))
    for cell in cells:
        assert set(cell.method_hparams) == before[cell.method]
        old = Cell(**{**cell.__dict__, "method_hparams": {k: cell.method_hparams[k] for k in before[cell.method]}})
        assert old.id == cell.id
    given = {"movement": {"granularity": "structured"}, "magnitude": {"granularity": "block", "block_size": 16},
             "soft_movement": {"granularity": "unstructured", "block_size": 8}}  # fmt: skip
    cells = expand(Matrix(methods=list(before), tasks=["sst2"], sparsities=[0.5], output=tmp_path,
                          method_hparams=given))  # fmt: skip
    by_method = {c.method: c.method_hparams for c in cells}
    assert by_method["movement"]["granularity"] == "structured" and "block_size" not in by_method["movement"]
    assert by_method["magnitude"]["granularity"] == "block" and by_method["magnitude"]["block_size"] == 16
    assert set(by_method["soft_movement"]) == before["soft_movement"], "settings that change nothing stay out"
