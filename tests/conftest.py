"""Shared fixtures: tiny random BERT models, and a probe for the Hub cache mirror."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def tiny_config(**overrides) -> BertConfig:
    settings = dict(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, num_labels=3,
    )  # fmt: skip
    settings.update(overrides)
    return BertConfig(**settings)


@pytest.fixture
def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_config()).eval()


@pytest.fixture
def tiny_qa_bert() -> BertForQuestionAnswering:
    torch.manual_seed(0)
    return BertForQuestionAnswering(tiny_config()).eval()


def hub_available(repo_id: str, repo_type: str = "model") -> bool:
    """True when ``repo_id`` can be loaded: from the HF_HUB_CACHE mirror offline, or from the Hub online."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, repo_type=repo_type, local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1")
    except Exception:  # noqa: BLE001 - any failure means: not available here
        return False
    return True


needs_minilm = pytest.mark.skipif(
    not hub_available(MINILM),
    reason=f"{MINILM} not reachable: set HF_HUB_CACHE=$(realpath ../shared/hf-hub) HF_HUB_OFFLINE=1",
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random BERT saved with MiniLM's real tokenizer, usable as ``--model PATH``."""
    path = tmp_path_factory.mktemp("tiny-bert")
    from transformers import AutoTokenizer, BertModel

    BertModel(tiny_config()).save_pretrained(path)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(path)
    return str(path)
