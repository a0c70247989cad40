"""Shared fixtures: tiny random BERT models, a probe for the Hub cache mirror, and the slow test tier."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

MINILM = "sentence-transformers/all-MiniLM-L6-v2"

# Modules whose tests start `bench` processes or run whole matrices: marked slow, so that `make test`
# (-m "not slow and not integration") runs in a few minutes; CI and `make test-all` run everything. Measured with
# `pytest --durations=0` on two busy cores: these 12 modules took 760 of the suite's 926 seconds.
SLOW_MODULES = {
    "test_no_tracebacks", "test_runner", "test_faults", "test_workers", "test_safe_exports", "test_regress",
    "test_search", "test_growing_folder", "test_progress", "test_plots", "test_report", "test_integration_minilm",
    "test_reading_is_clean",
}  # fmt: skip
# And the slowest tests of the other modules (5 s or more each in the same measurement).
SLOW_TESTS = {
    "test_bench_export_works_for_every_method_and_matches_the_record", "test_suites_run_without_pytest",
    "test_measure_latency_input_is_seeded",
    "test_finished_cells_carry_verdicts_intervals_baseline_schedule_and_predictions",
    "test_plot_writes_the_critical_difference_diagram_and_the_report_embeds_it",
    "test_random_configs_give_valid_cells_or_a_bench_error", "test_the_installed_conformance_suites_pass_on_it",
    # test_onnx: two ONNX exports and ONNX Runtime timings, or a trained cell, each (6-8 s on two busy cores)
    "test_speed_report_adds_onnx_and_flops_and_keeps_its_keys",
    "test_onnx_report_times_dense_and_compacted_onnx_interleaved_with_parity",
    "test_bench_export_onnx_writes_a_checked_model_onnx",
    # test_core: an inductor compile of one masked Linear (about 5 s)
    "test_a_compiled_masked_layer_follows_every_mask_write",
}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module is not None else ""
        if module in SLOW_MODULES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


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
