"""SMP (Jiang et al. 2022): frozen weights, straight-through score gradient, SMP-S budgets, label-word head."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from bench.methods.smp import SMP, allocate
from transformers import TrainingArguments

from bench.core.errors import BenchError
from bench.core.prunable import prunable_weights
from bench.core.sparsity import measure_sparsity
from bench.run.training import PruningTrainer, freeze_pretrained
from tests.conftest import MINILM, needs_minilm

MNLI_WORDS = ("Yes", "Maybe", "No")


def random_batch(generator, batch=4, length=16):
    ids = torch.randint(0, 30522, (batch, length), generator=generator)
    return ids, torch.randint(0, 3, (batch,), generator=generator)


def train_with_trainer(model, method, tmp_path, steps=4):
    """What the runner does for a frozen-weight method: prepare, freeze_pretrained, PruningTrainer."""
    freeze_pretrained(model)
    generator = torch.Generator().manual_seed(0)
    data = []
    for _ in range(steps * 4):
        ids, label = random_batch(generator, batch=1)
        data.append({"input_ids": ids[0], "labels": int(label[0])})
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4, learning_rate=1e-3,
        report_to="none", use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    PruningTrainer(model=model, args=args, train_dataset=data, method=method).train()


def set_random_scores(method, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mask in method.masks.values():
            mask.scores.copy_(torch.randn(mask.scores.shape, generator=generator))


# ---- frozen weights --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["L", "S"])
def test_frozen_weights_stay_bit_identical_through_the_trainer(variant, tiny_bert, tmp_path):
    before = {n: p.detach().clone() for n, p in tiny_bert.base_model.named_parameters()}
    head_before = tiny_bert.classifier.weight.detach().clone()
    method = SMP(0.7, variant=variant)
    method.prepare(tiny_bert)
    scores_before = {n: m.scores.detach().clone() for n, m in method.masks.items()}
    train_with_trainer(tiny_bert, method, tmp_path)

    assert any(not torch.equal(m.scores, scores_before[n]) for n, m in method.masks.items()), "scores must learn"
    assert not torch.equal(tiny_bert.classifier.weight, head_before), "the task head trains"
    info = method.finalize(tiny_bert)
    assert info == {"head_from_label_words": 0.0}
    after = dict(tiny_bert.base_model.named_parameters())
    assert set(after) == set(before)
    prunable = {f"{pw.name}.weight".removeprefix("bert.") for pw in prunable_weights(tiny_bert)}
    for name, param in after.items():
        if name in prunable:
            kept = param != 0
            assert torch.equal(param[kept], before[name][kept]), name
            assert torch.equal(param[~kept], torch.zeros_like(param[~kept])), name
        else:
            assert torch.equal(param, before[name]), f"{name} is frozen and must not change"
    assert abs(measure_sparsity(tiny_bert).encoder_sparsity - 0.7) <= 0.005


# ---- straight-through gradient ---------------------------------------------------------------------------------
def test_score_gradient_is_weight_times_gradient_of_masked_weight(tiny_bert):
    dense = copy.deepcopy(tiny_bert)
    method = SMP(0.5, variant="L")
    method.prepare(tiny_bert)
    set_random_scores(method)
    method.step(10, 10)  # the final sparsity: half of every matrix masked
    with torch.no_grad():  # the dense twin carries W ⊙ M as its plain weights
        for pw in prunable_weights(dense):
            pw.module.weight.mul_(method.masks[pw.name].mask)
    ids, labels = random_batch(torch.Generator().manual_seed(1))
    tiny_bert(input_ids=ids, labels=labels).loss.backward()
    dense(input_ids=ids, labels=labels).loss.backward()
    masked_out = 0
    for pw in prunable_weights(dense):
        w, mask = method.weight(pw.name), method.masks[pw.name]
        expected = w.detach() * pw.module.weight.grad
        torch.testing.assert_close(mask.scores.grad, expected, rtol=1e-5, atol=1e-9)
        masked_out += int(((~mask.mask) & (mask.scores.grad != 0)).sum())
    assert masked_out > 0, "pruned weights must still receive score gradient (the mask stays in the gradient)"


# ---- SMP-S budgets ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sparsity", [0.1, 0.7, 0.97])
def test_smp_s_budgets_sum_to_the_target_per_role_and_overall(sparsity, tiny_bert):
    method = SMP(sparsity, variant="S")
    method.prepare(tiny_bert)
    set_random_scores(method)
    budgets = method.layer_budgets(sparsity)
    sizes = {name: mask.scores.numel() for name, mask in method.masks.items()}
    for role in {pw.role for pw in method.weights.values()}:
        names = [n for n, pw in method.weights.items() if pw.role == role]
        total = sum(sizes[n] for n in names)
        assert sum(budgets[n] for n in names) == total - round(sparsity * total)
    assert abs(1 - sum(budgets.values()) / sum(sizes.values()) - sparsity) <= 0.005
    method.finalize(tiny_bert)
    assert abs(measure_sparsity(tiny_bert).encoder_sparsity - sparsity) <= 0.005


def test_smp_s_budgets_follow_the_mean_sigmoid_score(tiny_bert):
    method = SMP(0.8, variant="S")
    method.prepare(tiny_bert)
    with torch.no_grad():
        for pw in method.weights.values():  # layer 0 looks more important than layer 1 in every role
            method.masks[pw.name].scores.fill_(1.0 if pw.layer == 0 else -1.0)
    budgets = method.layer_budgets(0.8)
    r_important, r_other = torch.sigmoid(torch.tensor(1.0)).item(), torch.sigmoid(torch.tensor(-1.0)).item()
    for name, pw in method.weights.items():
        n = method.masks[name].scores.numel()
        r = r_important if pw.layer == 0 else r_other
        expected = r * 2 / (r_important + r_other) * 0.2 * n  # v^l = R(S^l)·L / Σ R(S^l') · v, with L = 2
        assert abs(budgets[name] - expected) <= 1, name
    method.step(10, 10)
    for name, keep in budgets.items():
        assert int(method.masks[name].mask.sum()) == keep


def test_allocate_caps_at_the_matrix_size_and_sums_exactly():
    assert allocate([10.0, 1.0, 1.0], [10, 10, 10], 15) == [10, 3, 2]  # quota 12.5 > 10: capped, 5 left over
    assert allocate([1.0, 1.0], [10, 10], 20) == [10, 10]
    assert allocate([1.0, 2.0], [10, 10], 0) == [0, 0]
    assert sum(allocate([0.3, 0.5, 0.2], [7, 11, 13], 17)) == 17
    with pytest.raises(ValueError):
        allocate([1.0], [10], 11)


def test_smp_l_prunes_every_matrix_to_the_target(tiny_bert):
    method = SMP(0.7, variant="L")
    method.prepare(tiny_bert)
    set_random_scores(method)
    method.set_final_masks()
    for mask in method.masks.values():
        assert int((~mask.mask).sum()) == round(0.7 * mask.mask.numel())


def test_unknown_variant_is_rejected():
    with pytest.raises(BenchError, match="variant"):
        SMP(0.5, variant="G")


# ---- objective -------------------------------------------------------------------------------------------------
def test_regularization_is_cubic_lambda_over_the_whole_run_times_mean_sigmoid(tiny_bert):
    method = SMP(0.8)
    method.prepare(tiny_bert)
    values = {}
    with torch.no_grad():
        for i, mask in enumerate(method.masks.values()):
            values[i] = 0.1 * i - 0.5
            mask.scores.fill_(values[i])
    method.step(0, 100)
    assert method.regularization_loss() is None  # λ_0 = 0: no penalty yet
    r = torch.sigmoid(torch.tensor(list(values.values()))).mean().item()
    method.step(100, 100)
    torch.testing.assert_close(method.regularization_loss().item(), 400.0 * r)
    method.step(80, 100)  # the sparsity ramp has ended (cool-down 0.2), λ has not: the code's λ ramps to T
    assert method.scheduled_sparsity(80, 100) == 0.8
    torch.testing.assert_close(method.regularization_loss().item(), 400.0 * (1 - 0.2**3) * r)
    method.step(40, 100)  # λ_R · (1 − (1 − t/T)³)
    penalty = method.regularization_loss()
    torch.testing.assert_close(penalty.item(), 400.0 * (1 - 0.6**3) * r)
    penalty.backward()
    assert all(mask.scores.grad is not None and (mask.scores.grad > 0).all() for mask in method.masks.values())


def test_schedule_has_no_warmup():
    method = SMP(0.8)
    assert method.hparams["warmup_frac"] == 0.0
    assert method.scheduled_sparsity(1, 100) > 0.0


# ---- head initialised from label words ---------------------------------------------------------------------
class StubTokenizer:
    """Tokenizer-like: ``tokenizer(text, add_special_tokens=False)["input_ids"]``."""

    vocab = {"Yes": [5], "Maybe": [7, 9], "No": [11]}

    def __call__(self, text, add_special_tokens=True):
        assert not add_special_tokens
        return {"input_ids": self.vocab[text.strip()]}


def stub_task(head="sequence-classification", label_words=MNLI_WORDS):
    return SimpleNamespace(head=head, label_words=label_words)


def test_head_rows_are_label_word_embeddings(tiny_bert):
    method = SMP(0.5)
    method.prepare(tiny_bert, task=stub_task(), tokenizer=StubTokenizer())
    embeddings = tiny_bert.get_input_embeddings().weight.detach()
    expected = torch.stack([embeddings[5], (embeddings[7] + embeddings[9]) / 2, embeddings[11]])
    torch.testing.assert_close(tiny_bert.classifier.weight.detach(), expected)
    assert torch.equal(tiny_bert.classifier.bias, torch.zeros(3))
    assert method.set_final_masks() == {"head_from_label_words": 1.0}


def test_head_is_left_alone_without_task_or_label_words(tiny_bert, tiny_qa_bert):
    before = tiny_bert.classifier.weight.detach().clone()
    SMP(0.5).prepare(tiny_bert)
    SMP(0.5).prepare(tiny_bert, task=stub_task(label_words=()), tokenizer=StubTokenizer())
    assert torch.equal(tiny_bert.classifier.weight, before)
    qa_before = tiny_qa_bert.qa_outputs.weight.detach().clone()
    SMP(0.5).prepare(tiny_qa_bert, task=stub_task(head="question-answering", label_words=()), tokenizer=StubTokenizer())
    assert torch.equal(tiny_qa_bert.qa_outputs.weight, qa_before)


def test_label_word_count_must_match_the_head(tiny_bert):
    with pytest.raises(BenchError, match="label words"):
        SMP(0.5).prepare(tiny_bert, task=stub_task(label_words=("Yes", "No")), tokenizer=StubTokenizer())


@needs_minilm
def test_head_from_minilm_tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    SMP(0.5).prepare(tiny_bert, task=stub_task(), tokenizer=tokenizer)
    ids = tokenizer.convert_tokens_to_ids(["yes", "maybe", "no"])
    embeddings = tiny_bert.get_input_embeddings().weight.detach()
    torch.testing.assert_close(tiny_bert.classifier.weight.detach(), embeddings[ids])
