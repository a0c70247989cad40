"""Determinism: the same cell run twice on CPU gives identical metrics and identical masks.

Seeds (python, numpy, torch via ``transformers.set_seed``), ``full_determinism`` (deterministic algorithms) and the
seeded data order are set per cell, so the second run in the same process does not inherit any random state.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from bench.core.prunable import prunable_weights
from bench.run.execute import FINAL, Run, train_and_evaluate
from bench.run.runner import expand
from tests.conftest import needs_minilm
from tests.test_runner import tiny_matrix

pytestmark = needs_minilm

RESULT_KEYS = ("metrics", "sparsity", "method_info", "train_steps", "train_loss")


def run_twice(cell, tmp_path):
    results, models = [], []
    for attempt in ("a", "b"):
        save = tmp_path / f"model-{attempt}"
        results.append(train_and_evaluate(cell, Run(FINAL, tmp_path / f"work-{attempt}", save)))
        models.append(AutoModelForSequenceClassification.from_pretrained(save))
    return results, models


@pytest.mark.parametrize("method", ["movement", "l0", "abp"])  # scores; stochastic gates; random score init
def test_the_same_cell_twice_gives_identical_metrics_and_masks(method, tmp_path, tiny_model_dir):
    cell = next(c for c in expand(tiny_matrix(tmp_path, tiny_model_dir, methods=[method])) if c.method == method)
    (first, second), (model_a, model_b) = run_twice(cell, tmp_path)

    for key in RESULT_KEYS:
        assert first[key] == second[key], key
    assert [h["loss"] for h in first["history"]] == [h["loss"] for h in second["history"]]
    weights_a, weights_b = prunable_weights(model_a), prunable_weights(model_b)
    for a, b in zip(weights_a, weights_b, strict=True):
        assert torch.equal(a.module.weight == 0, b.module.weight == 0), f"mask of {a.name} differs"
    for (name, pa), (_, pb) in zip(model_a.state_dict().items(), model_b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), f"{name} differs"
    assert 0 < first["sparsity"]["encoder_sparsity"] < 1, "a pruned model, so the mask comparison means something"


def test_a_different_seed_gives_a_different_run(tmp_path, tiny_model_dir):
    cells = expand(tiny_matrix(tmp_path, tiny_model_dir, methods=["movement"], seeds=[0, 1]))
    a, b = (train_and_evaluate(c, Run(FINAL, tmp_path / f"w{c.seed}")) for c in cells)
    assert a["train_loss"] != b["train_loss"], "the seed reaches initialisation and data order"


def test_the_cell_records_its_seed_and_library_versions(tmp_path, tiny_model_dir):
    cell = expand(tiny_matrix(tmp_path, tiny_model_dir, methods=["movement"], seeds=[7]))[0]
    record = cell.to_dict()
    assert record["seed"] == 7
    assert set(record["versions"]) >= {"torch", "transformers", "datasets"}
    assert record["versions"]["torch"] == torch.__version__
