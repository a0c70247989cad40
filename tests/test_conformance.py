"""One conformance suite run over every registered pruning method (as Optuna runs one over every sampler).

On a tiny random BERT: prepare, a few real training steps with the method's hooks, finalize; then the
measured sparsity is within 0.5 pp of the target, only the prunable set changed, parametrizations are gone,
frozen-weight methods left their kept weights bit-identical, and a save/load round trip keeps the zeros.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BertForSequenceClassification

from bench import registry
from bench.prunable import prunable_weights
from bench.sparsity import measure_sparsity

METHODS = registry.methods.names()
FROZEN = [name for name in METHODS if not registry.methods.get(name).trains_weights]
STEPS = 12


def train_briefly(model, method, steps: int = STEPS) -> None:
    """A plain loop that calls the hooks in the order PruningTrainer does."""
    own = {id(p) for g in method.param_groups() for p in g["params"]}
    if not method.trains_weights:
        for p in model.bert.parameters():
            if id(p) not in own:
                p.requires_grad_(False)
    base = [p for p in model.parameters() if p.requires_grad and id(p) not in own]
    optimizer = torch.optim.AdamW([{"params": base}, *method.param_groups()], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    method.step(0, steps, 1e-3)
    for step in range(1, steps + 1):
        input_ids = torch.randint(0, 30522, (4, 16), generator=generator)
        labels = torch.randint(0, 3, (4,), generator=generator)
        loss = model(input_ids=input_ids, labels=labels).loss
        regularization = method.regularization_loss()
        if regularization is not None:
            loss = loss + regularization
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        method.step(step, steps, 1e-3)
    model.eval()


def target_for(method_cls) -> float:
    return 0.7 if method_cls.prunes else 0.0


@pytest.mark.parametrize("name", METHODS)
def test_finalized_sparsity_hits_target(name, tiny_bert):
    method_cls = registry.methods.get(name)
    method = method_cls(target_for(method_cls))
    method.prepare(tiny_bert)
    train_briefly(tiny_bert, method)
    method.finalize(tiny_bert)
    report = measure_sparsity(tiny_bert)
    assert abs(report.encoder_sparsity - method.sparsity) <= 0.005
    assert report.remaining_params == report.total_params - report.prunable_zeros


@pytest.mark.parametrize("name", METHODS)
def test_only_prunable_set_is_pruned(name, tiny_bert):
    before = {n: int((p == 0).sum()) for n, p in tiny_bert.named_parameters()}
    method_cls = registry.methods.get(name)
    method = method_cls(target_for(method_cls))
    method.prepare(tiny_bert)
    train_briefly(tiny_bert, method)
    method.finalize(tiny_bert)
    after = dict(tiny_bert.named_parameters())
    assert set(after) == set(before), "finalize must restore the original parameter names"
    assert not any(".parametrizations." in n for n, _ in tiny_bert.named_modules())
    prunable = {f"{pw.name}.weight" for pw in prunable_weights(tiny_bert)}
    for name_, param in after.items():
        if name_ not in prunable:
            assert int((param == 0).sum()) <= before[name_], f"{name_} gained zeros but is not prunable"


@pytest.mark.parametrize("name", FROZEN)
def test_frozen_methods_keep_weights_bit_identical(name, tiny_bert):
    method_cls = registry.methods.get(name)
    original = {pw.name: pw.module.weight.detach().clone() for pw in prunable_weights(tiny_bert)}
    method = method_cls(target_for(method_cls))
    method.prepare(tiny_bert)
    train_briefly(tiny_bert, method)
    method.finalize(tiny_bert)
    for pw in prunable_weights(tiny_bert):
        kept = pw.module.weight != 0
        assert torch.equal(pw.module.weight[kept], original[pw.name][kept])


@pytest.mark.parametrize("name", METHODS)
def test_save_load_round_trip_keeps_zeros(name, tiny_bert, tmp_path):
    method_cls = registry.methods.get(name)
    method = method_cls(target_for(method_cls))
    method.prepare(tiny_bert)
    train_briefly(tiny_bert, method, steps=4)
    method.finalize(tiny_bert)
    tiny_bert.save_pretrained(tmp_path)
    loaded = BertForSequenceClassification.from_pretrained(tmp_path)
    saved, reloaded = dict(tiny_bert.named_parameters()), dict(loaded.named_parameters())
    assert set(saved) == set(reloaded)
    for key, param in saved.items():
        assert torch.equal(param, reloaded[key]), key
    assert measure_sparsity(loaded) == measure_sparsity(tiny_bert)


@pytest.mark.parametrize("name", METHODS)
def test_masks_are_parametrizations_and_forward_is_unchanged(name, tiny_bert):
    method_cls = registry.methods.get(name)
    method = method_cls(target_for(method_cls))
    method.prepare(tiny_bert)
    if method_cls.prunes:
        assert method.masks, "a pruning method must attach masks"
        for pw in prunable_weights(tiny_bert):
            assert torch.nn.utils.parametrize.is_parametrized(pw.module, "weight")
    out = tiny_bert(input_ids=torch.tensor([[101, 2023, 102]]))  # plain forward, no extra arguments
    assert out.logits.shape == (1, 3)


@pytest.mark.parametrize("name", METHODS)
def test_defaults_and_search_space(name):

    method_cls = registry.methods.get(name)
    assert method_cls.description and method_cls.__doc__
    space = method_cls.search_space(_first_trial())
    assert set(space) <= set(method_cls.defaults)
    method_cls(0.5, **space)  # sampled values are accepted


def _first_trial():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return study.ask()
