"""Tasks on real data: GLUE MNLI and SQuAD from the Hub (or the ``HF_HUB_CACHE`` mirror) with the MiniLM
tokenizer, and a tiny random BERT through a transformers ``Trainer`` for ``evaluate``.

Run offline against the mirror with
``HF_HUB_CACHE=/work/shared/hf-hub HF_HUB_OFFLINE=1 pytest -m integration tests/test_tasks_data.py``.
"""

from __future__ import annotations

import unicodedata

import pytest
from bench.tasks.glue import MNLI
from bench.tasks.squad import SQuAD

from bench.core.task import Featurization

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
NEEDED = [
    (MODEL_ID, "model", ["*.json", "vocab.txt", "*.safetensors"]),
    ("nyu-mll/glue", "dataset", ["mnli/*", "README.md"]),
    ("rajpurkar/squad", "dataset", ["plain_text/*", "README.md"]),
]


def _fetch_error(repo_id: str, repo_type: str, patterns: list[str], local_only: bool) -> str | None:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, repo_type=repo_type, allow_patterns=patterns, local_files_only=local_only)
    except Exception as err:  # any failure means: skip, and say why
        return f"{type(err).__name__}: {err}"
    return None


def _why_unavailable() -> str | None:
    """None when every needed repo is in the local Hub cache or, unless HF_HUB_OFFLINE, downloadable."""
    try:
        from huggingface_hub import constants
    except ImportError as err:
        return f"huggingface_hub is not installed: {err}"
    for repo_id, repo_type, patterns in NEEDED:
        error = _fetch_error(repo_id, repo_type, patterns, local_only=True)
        if error and not constants.HF_HUB_OFFLINE:
            error = _fetch_error(repo_id, repo_type, patterns, local_only=False)
        if error:
            where = "the Hub cache" if constants.HF_HUB_OFFLINE else "the Hub or the Hub cache"
            return (
                f"{repo_type} {repo_id} not in {where} {constants.HF_HUB_CACHE} ({error}); "
                "use a mirror: HF_HUB_CACHE=/work/shared/hf-hub HF_HUB_OFFLINE=1"
            )
    return None


UNAVAILABLE = _why_unavailable()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"Hub data unavailable: {UNAVAILABLE}"),
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MODEL_ID)


def squash(text: str) -> str:
    """Lower-cased, accents and whitespace removed: what an uncased WordPiece round trip preserves."""
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Mn")


def tiny_trainer(model_cls, tokenizer, tmp_path, **config):
    import torch
    from transformers import BertConfig, DataCollatorWithPadding, Trainer, TrainingArguments

    torch.manual_seed(0)
    bert = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **config,
    )
    args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, per_device_eval_batch_size=8
    )
    return Trainer(
        model=model_cls(bert),
        args=args,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )


def _pairs(examples):
    return list(examples["premise"]), list(examples["hypothesis"])


# ---- MNLI ---------------------------------------------------------------------------------------------
def test_mnli_featurize(tokenizer):
    task = MNLI()
    examples = task.load_split("train[:16]")
    features = task.featurize(examples, tokenizer, Featurization(max_length=32), train=True)
    assert set(features.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert len(features) == 16
    lengths = [len(ids) for ids in features["input_ids"]]
    assert max(lengths) <= 32
    assert (
        min(lengths)
        < 32
        < max(len(tokenizer(p, h)["input_ids"]) for p, h in zip(*_pairs(examples), strict=True))
    )
    assert list(features["labels"]) == list(examples["label"])
    assert set(features["labels"]) <= {0, 1, 2}
    first = tokenizer.decode(features[0]["input_ids"], skip_special_tokens=True)
    assert squash(first).startswith(squash(examples[0]["premise"])[:10])


def test_mnli_evaluate_end_to_end(tokenizer, tmp_path):
    from transformers import BertForSequenceClassification

    task = MNLI()
    trainer = tiny_trainer(BertForSequenceClassification, tokenizer, tmp_path, num_labels=MNLI.num_labels)
    metrics = task.evaluate(trainer, task.load_split("validation_matched[:8]"), tokenizer, Featurization(64))
    assert set(metrics) == set(task.metrics) == {"accuracy"}
    assert 0.0 <= metrics["accuracy"] <= 100.0
    assert (metrics["accuracy"] * 8 / 100) == pytest.approx(round(metrics["accuracy"] * 8 / 100))  # k of 8


# ---- SQuAD --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", ["train[:8]", "validation[:4]"])
def test_squad_train_features_point_at_the_answer(tokenizer, split):
    task = SQuAD()
    examples = task.load_split(split)
    features = task.featurize(examples, tokenizer, Featurization(max_length=128, doc_stride=32), train=True)
    expected = {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}
    assert set(features.column_names) == expected
    assert len(features) >= len(examples)
    answers = {squash(a["text"][0]) for a in examples["answers"]}
    found, outside = set(), 0
    for row in features:
        start, end = row["start_positions"], row["end_positions"]
        assert len(row["input_ids"]) <= 128
        if (start, end) == (0, 0):
            outside += 1
            continue
        assert 0 < start <= end and row["token_type_ids"][start] == 1
        text = squash(tokenizer.decode(row["input_ids"][start : end + 1]))
        assert text in answers
        found.add(text)
    assert found == answers  # every answer lies inside at least one window
    if split.startswith("validation"):  # long Super Bowl contexts: some windows miss the answer
        assert len(features) > len(examples) and outside > 0


def test_squad_eval_features_keep_ids_and_context_offsets(tokenizer):
    task = SQuAD()
    examples = task.load_split("validation[:4]")
    features = task.featurize(examples, tokenizer, Featurization(max_length=128, doc_stride=32), train=False)
    assert {"example_id", "offset_mapping", "input_ids", "attention_mask"} <= set(features.column_names)
    assert "start_positions" not in features.column_names
    assert set(features["example_id"]) == set(examples["id"])
    contexts = dict(zip(examples["id"], examples["context"], strict=True))
    for row in features:
        offsets, types = row["offset_mapping"], row["token_type_ids"]
        assert len(offsets) == len(row["input_ids"])
        in_context = [k for k, offset in enumerate(offsets) if offset is not None]
        # Context tokens are the second segment less its final [SEP].
        assert in_context == [k for k, t in enumerate(types) if t == 1][:-1]
        context = contexts[row["example_id"]]
        for k in in_context:
            start, end = offsets[k]
            piece = tokenizer.convert_ids_to_tokens(row["input_ids"][k]).removeprefix("##")
            assert squash(context[start:end]) == squash(piece) or piece == tokenizer.unk_token


def test_squad_evaluate_end_to_end(tokenizer, tmp_path):
    from transformers import BertForQuestionAnswering

    task = SQuAD()
    trainer = tiny_trainer(BertForQuestionAnswering, tokenizer, tmp_path)
    metrics = task.evaluate(trainer, task.load_split("validation[:4]"), tokenizer, Featurization(128, 32))
    assert set(metrics) == set(task.metrics) == {"exact_match", "f1"}
    assert all(0.0 <= value <= 100.0 for value in metrics.values())


def test_build_model_heads():
    mnli = MNLI().build_model(MODEL_ID)
    assert mnli.config.num_labels == 3 and mnli.classifier.out_features == 3
    squad = SQuAD().build_model(MODEL_ID)
    assert squad.qa_outputs.out_features == 2
