"""benchmarks/movement_study.py (issue 13): the loop runs with the project's methods and logs what the study's
conclusions rest on, and the summary finds a collapse where there is one and none where there is none."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import BertModel

from benchmarks import movement_study
from tests.conftest import tiny_config


@pytest.fixture
def study_folder(tmp_path):
    """What ``prepare`` writes, with random sentences over a 50-token vocabulary and a tiny random BERT."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 64), ("validation", 24)):
        rows = [rng.integers(5, 50, size=rng.integers(3, 9)) for _ in range(n)]
        arrays[f"{split}_ids"] = np.concatenate(rows).astype(np.int32)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(r) for r in rows])
        arrays[f"{split}_labels"] = rng.integers(0, 2, size=n)
    arrays["corpus"] = rng.integers(5, 50, size=600).astype(np.int32)
    np.savez_compressed(tmp_path / "data.npz", **arrays)
    special = {"cls": 1, "sep": 2, "pad": 0, "mask": 3, "vocab_size": 50}
    (tmp_path / "special.json").write_text(json.dumps(special))
    torch.manual_seed(0)
    BertModel(tiny_config(vocab_size=50)).save_pretrained(tmp_path / "model")
    return tmp_path


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("method", ["movement", "magnitude", "dense"])
def test_finetune_logs_the_schedule_and_ends_at_the_target(study_folder, tmp_path, method):
    log = tmp_path / f"{method}.jsonl"
    argv = ["finetune", "--data", str(study_folder), "--model", str(study_folder / "model"), "--method", method,
            "--steps", "20", "--batch", "4", "--log-every", "2", "--eval-every", "10", "--log", str(log)]  # fmt: skip
    assert movement_study.main(argv) == 0
    rows = _rows(log)
    steps = [r for r in rows if "step" in r]
    assert [r["step"] for r in steps] == list(range(2, 21, 2))
    final = rows[-1]
    assert final["final"] is True
    target = 0.0 if method == "dense" else 0.9
    assert final["sparsity"] == pytest.approx(target, abs=1e-3)
    sparsities = [r["sparsity"] for r in steps]
    assert sparsities == sorted(sparsities) and sparsities[0] == 0.0  # warm-up, then a monotone ramp
    if method != "dense":
        assert sparsities[-1] == pytest.approx(0.9)
        assert sum(r["churn"] for r in steps) >= 0.9 - 1e-3  # every pruned weight flipped once
    assert sum("val_accuracy" in r for r in steps) == 2


def test_pretrain_saves_a_model_that_finetune_loads(study_folder, tmp_path):
    out = tmp_path / "mlm"
    argv = ["pretrain", "--data", str(study_folder), "--out", str(out), "--steps", "3", "--batch", "2",
            "--log", str(tmp_path / "p.jsonl"), "--log-every", "1"]  # fmt: skip
    assert movement_study.main(argv) == 0
    assert len(_rows(tmp_path / "p.jsonl")) == 3
    argv = ["finetune", "--data", str(study_folder), "--model", str(out), "--method", "dense", "--steps", "2",
            "--batch", "4", "--log", str(tmp_path / "f.jsonl")]  # fmt: skip
    assert movement_study.main(argv) == 0


def _log(tmp_path, name, losses, majority, sparsity):
    lines = [json.dumps({"config": {"method": "movement", "steps": 10 * len(losses), "sparsity": 0.9}})]
    for i, (loss, share, s) in enumerate(zip(losses, majority, sparsity, strict=True), start=1):
        lines.append(json.dumps({"step": 10 * i, "loss": loss, "majority": share, "sparsity": s, "churn": 0.0,
                                 "grad_norm": 5.0 if loss < 0.6 else 0.3}))  # fmt: skip
    lines.append(json.dumps({"final": True, "accuracy": 50.0}))
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines))
    return str(path)


def test_summary_finds_the_collapse_and_its_sparsity(tmp_path):
    sparsity = [0, 0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.9]
    collapsed = _log(
        tmp_path, "c", [0.4, 0.3, 0.3, 0.69, 0.7, 0.69, 0.69, 0.69], [0.6, 0.6, 0.6, 1, 1, 1, 1, 1], sparsity
    )
    row = movement_study.summary_row(collapsed)
    assert (row["collapse step"], row["sparsity at collapse"]) == (60, 0.7)  # running mean of 3 lines
    assert row["grad norm before pruning"] == 5.0 and row["grad norm after collapse"] == 0.3
    healthy = _log(tmp_path, "h", [0.4, 0.3, 0.3, 0.35, 0.3, 0.3, 0.3, 0.3], [0.6] * 8, sparsity)
    assert movement_study.summary_row(healthy)["collapse step"] is None
    # chance-level loss without one-class predictions (a model still learning) is not a collapse
    learning = _log(tmp_path, "l", [0.69] * 8, [0.6] * 8, sparsity)
    assert movement_study.summary_row(learning)["collapse step"] is None
