"""bench.deploy.sparse_linear and bench.deploy.speed: the CSR inference path computes the same function; the
latency protocol interleaves and reports."""

from __future__ import annotations

import copy
import time

import pytest
import torch
from torch import nn
from transformers import BertForSequenceClassification

from bench.core.prunable import prunable_weights
from bench.deploy.sparse_linear import CSRLinear, sparse_csr_copy
from bench.deploy.speed import measure_latency, speed_ups
from tests.conftest import tiny_config


def zero_out(weight: torch.Tensor, fraction: float, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight[torch.rand(weight.shape, generator=generator) < fraction] = 0


def sparse_tiny_bert(skip: int | None = None) -> BertForSequenceClassification:
    """A tiny BERT with ~90 % zeros in every prunable weight except prunable_weights(...)[skip]."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config()).eval()
    for i, pw in enumerate(prunable_weights(model)):
        if i != skip:
            zero_out(pw.module.weight, 0.9, seed=i)
    return model


def tiny_inputs(batch: int = 2, seq: int = 8) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 30522, (batch, seq), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


# --- CSRLinear and sparse_csr_copy ---------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_csr_linear_matches_linear(bias):
    torch.manual_seed(0)
    linear = nn.Linear(48, 40, bias=bias)
    zero_out(linear.weight, 0.9)
    csr = CSRLinear.from_linear(linear)
    assert csr.weight.layout == torch.sparse_csr
    assert csr.weight._nnz() == int((linear.weight != 0).sum())
    with torch.no_grad():
        for shape in [(7, 48), (2, 5, 48), (48,)]:
            x = torch.randn(shape)
            expected = linear(x)
            got = csr(x)
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    with torch.inference_mode():
        x = torch.randn(3, 4, 48)
        torch.testing.assert_close(csr(x), linear(x), atol=1e-6, rtol=1e-5)


def test_csr_linear_shares_no_memory_with_the_linear():
    linear = nn.Linear(8, 4)
    zero_out(linear.weight, 0.5)
    csr = CSRLinear.from_linear(linear)
    x = torch.randn(3, 8)
    before = csr(x)
    with torch.no_grad():
        linear.weight.add_(1.0)
        linear.bias.add_(1.0)
    torch.testing.assert_close(csr(x), before)


def test_csr_linear_refuses_bad_input():
    csr = CSRLinear.from_linear(nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        csr(torch.randn(2, 5))
    with pytest.raises(ValueError, match="Conv1d"):
        CSRLinear.from_linear(nn.Conv1d(2, 2, 1))


def test_sparse_csr_copy_same_logits_original_untouched():
    model = sparse_tiny_bert()
    model.train()  # the copy is put in eval mode; the original keeps its flag
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [pw.name for pw in prunable_weights(model)]

    clone = sparse_csr_copy(model)

    assert not clone.training and model.training
    for name in names:
        assert isinstance(clone.get_submodule(name), CSRLinear), name
        assert type(model.get_submodule(name)) is nn.Linear, name
    assert model.state_dict().keys() == state_before.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state_before[key]), key
    model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(clone(**tiny_inputs()).logits, model(**tiny_inputs()).logits, atol=1e-5, rtol=1e-5)


def test_sparse_csr_copy_respects_min_sparsity():
    model = sparse_tiny_bert(skip=0)  # the first prunable weight stays dense
    names = [pw.name for pw in prunable_weights(model)]
    clone = sparse_csr_copy(model, min_sparsity=0.5)
    assert type(clone.get_submodule(names[0])) is nn.Linear
    assert all(isinstance(clone.get_submodule(name), CSRLinear) for name in names[1:])
    assert all(type(m) is not CSRLinear for m in sparse_csr_copy(model, min_sparsity=0.95).modules())
    with torch.inference_mode():
        torch.testing.assert_close(clone(**tiny_inputs()).logits, model(**tiny_inputs()).logits, atol=1e-5, rtol=1e-5)


def test_a_csr_copy_can_be_deep_copied():
    model = sparse_tiny_bert(skip=0)
    clone = sparse_csr_copy(model, min_sparsity=0.5)
    again = copy.deepcopy(clone)
    name = prunable_weights(model)[1].name
    assert isinstance(again.get_submodule(name), CSRLinear)
    assert again.get_submodule(name).weight is not clone.get_submodule(name).weight
    converted = sparse_csr_copy(clone)  # the layer left dense becomes CSR too
    assert isinstance(converted.get_submodule(prunable_weights(model)[0].name), CSRLinear)
    with torch.inference_mode():
        expected = model(**tiny_inputs()).logits
        for other in (again, converted):
            torch.testing.assert_close(other(**tiny_inputs()).logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5", True])
def test_sparse_csr_copy_refuses_bad_min_sparsity(bad):
    with pytest.raises(ValueError, match="min_sparsity"):
        sparse_csr_copy(sparse_tiny_bert(), min_sparsity=bad)


# --- measure_latency -----------------------------------------------------------------------------------------


class Recorder(nn.Module):
    """Records (name, input_ids, attention_mask, token_type_ids, training) per call into a shared list."""

    def __init__(self, name: str, log: list, sleep_s: float = 0.0):
        super().__init__()
        self.name, self.log, self.sleep_s = name, log, sleep_s

    def forward(self, input_ids, attention_mask, token_type_ids):
        self.log.append((self.name, input_ids, attention_mask, token_type_ids, self.training))
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return input_ids.float().sum()


def test_measure_latency_on_tiny_berts_reports_every_model():
    model = sparse_tiny_bert()
    models = {"dense": model, "csr": sparse_csr_copy(model)}
    result = measure_latency(models, vocab_size=100, batch_sizes=(1, 2), seq_length=8, runs=5, warmup=1)
    assert list(result) == ["batch_1", "batch_2"]
    for per_model in result.values():
        assert list(per_model) == ["dense", "csr"]
        for stats in per_model.values():
            assert set(stats) == {"median_ms", "iqr_ms", "q1_ms", "q3_ms", "runs"}
            assert stats["runs"] == 5
            assert 0 < stats["q1_ms"] <= stats["median_ms"] <= stats["q3_ms"]
            assert stats["iqr_ms"] == pytest.approx(stats["q3_ms"] - stats["q1_ms"])


def test_measure_latency_interleaves_rotates_and_feeds_the_same_input():
    log: list = []
    names = ["a", "b", "c"]
    models = {name: Recorder(name, log) for name in names}
    for model in models.values():
        model.train()
    warmup, runs, seq = 2, 4, 6
    result = measure_latency(models, vocab_size=50, batch_sizes=(1, 3), seq_length=seq, runs=runs, warmup=warmup)

    assert all(stats["runs"] == runs for per_model in result.values() for stats in per_model.values())
    per_batch = warmup + runs
    assert len(log) == 2 * per_batch * len(names)
    for name in names:  # every model, every step, every batch size: exactly once per step
        assert sum(1 for call in log if call[0] == name) == 2 * per_batch
    steps = [log[i : i + len(names)] for i in range(0, len(log), len(names))]
    for index, step in enumerate(steps):
        shift = (index % per_batch) % len(names)
        assert [call[0] for call in step] == names[shift:] + names[:shift]
        batch = 1 if index < per_batch else 3
        first_ids = step[0][1]
        for _, ids, mask, types, training in step:
            assert ids is first_ids  # the very same tensor for every model within a run
            assert ids.shape == (batch, seq) and ids.dtype == torch.long
            assert int(ids.min()) >= 0 and int(ids.max()) < 50
            assert torch.equal(mask, torch.ones_like(ids)) and torch.equal(types, torch.zeros_like(ids))
            assert not training
    firsts = {step[0][0] for step in steps}
    assert firsts == set(names)  # no model is always first
    assert all(model.training for model in models.values())  # training flags restored


def test_measure_latency_input_is_seeded():
    def ids_for(seed):
        log: list = []
        measure_latency({"m": Recorder("m", log)}, vocab_size=1000, batch_sizes=(2,), seq_length=16, runs=1,
                        warmup=0, seed=seed)  # fmt: skip
        return log[0][1]

    assert torch.equal(ids_for(0), ids_for(0))
    assert not torch.equal(ids_for(0), ids_for(1))


def test_slower_model_gets_larger_median_and_speed_up_below_one():
    log: list = []
    models = {"dense": Recorder("dense", log), "slow": Recorder("slow", log, sleep_s=0.003)}
    result = measure_latency(models, vocab_size=10, batch_sizes=(1,), seq_length=4, runs=5, warmup=1)
    fast, slow = result["batch_1"]["dense"]["median_ms"], result["batch_1"]["slow"]["median_ms"]
    assert slow >= 3.0 > fast
    ratios = speed_ups(result)
    assert list(ratios) == ["batch_1"] and list(ratios["batch_1"]) == ["slow"]
    assert ratios["batch_1"]["slow"] == pytest.approx(fast / slow)
    assert ratios["batch_1"]["slow"] < 1
    assert speed_ups(result, reference="slow")["batch_1"]["dense"] > 1


def test_speed_ups_arithmetic():
    def stats(median):
        return {"median_ms": median, "iqr_ms": 0.0, "q1_ms": median, "q3_ms": median, "runs": 1}

    latency = {"batch_1": {"dense": stats(10.0), "csr": stats(5.0)}, "batch_32": {"dense": stats(100.0),
               "csr": stats(400.0)}}  # fmt: skip
    assert speed_ups(latency) == {"batch_1": {"csr": 2.0}, "batch_32": {"csr": 0.25}}


# --- bad input ------------------------------------------------------------------------------------------------


def fake_models():
    return {"a": Recorder("a", [])}


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"runs": 0}, "0"),
        ({"runs": 2.5}, "2.5"),
        ({"warmup": -1}, "-1"),
        ({"vocab_size": 0}, "0"),
        ({"seq_length": -3}, "-3"),
        ({"batch_sizes": (1, 0)}, "0"),
        ({"batch_sizes": ()}, r"\(\)"),
        ({"batch_sizes": (2, 2)}, r"\(2, 2\)"),
        ({"batch_sizes": "32"}, "'32'"),
        ({"models": {}}, r"\{\}"),
        ({"models": {"x": "not a model"}}, "str"),
    ],
)
def test_measure_latency_refuses_bad_input(kwargs, named):
    call = {"models": fake_models(), "vocab_size": 10, "batch_sizes": (1,), "seq_length": 4, "runs": 1, "warmup": 0}
    call.update(kwargs)
    with pytest.raises(ValueError, match=named):
        measure_latency(**call)


def test_measure_latency_refuses_shapes_beyond_the_model():
    models = {"bert": sparse_tiny_bert()}
    with pytest.raises(ValueError, match="1000"):
        measure_latency(models, vocab_size=10, batch_sizes=(1,), seq_length=1000, runs=1)
    with pytest.raises(ValueError, match="99999"):
        measure_latency(models, vocab_size=99999, batch_sizes=(1,), seq_length=4, runs=1)


def test_speed_ups_refuses_unknown_reference():
    latency = {"batch_1": {"csr": {"median_ms": 1.0, "iqr_ms": 0.0, "q1_ms": 1.0, "q3_ms": 1.0, "runs": 1}}}
    with pytest.raises(ValueError, match="'nope'"):
        speed_ups(latency, reference="nope")
    with pytest.raises(ValueError, match=r"\{\}"):
        speed_ups({})
