"""Task metrics on known values (GLUE accuracy via scikit-learn, SQuAD EM/F1 via torchmetrics) and task
metadata."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from bench.tasks.glue import MNLI, SST2, classification_metrics
from bench.tasks.squad import SQuAD, squad_metrics

from bench.core.errors import BenchError
from bench.core.task import HEADS, Featurization


# ---- classification ---------------------------------------------------------------------------------------
def test_accuracy_three_of_four_is_75_percent():
    logits = np.array([[2.0, 0.1, 0.3], [0.0, 1.0, -1.0], [0.1, 0.2, 0.3], [5.0, 0.0, 0.0]])
    labels = np.array([0, 1, 2, 1])  # argmax: 0, 1, 2, 0
    assert classification_metrics(logits, labels) == {"accuracy": pytest.approx(75.0)}


def test_accuracy_accepts_lists_and_is_a_percentage():
    assert classification_metrics([[0.0, 1.0], [1.0, 0.0]], [1, 0]) == {"accuracy": 100.0}
    assert classification_metrics([[0.0, 1.0], [1.0, 0.0]], [0, 1]) == {"accuracy": 0.0}


@pytest.mark.parametrize(
    ("logits", "labels", "match"),
    [
        (np.zeros((3, 2)), np.zeros(2, dtype=int), "expected"),
        (np.zeros(3), np.zeros(3, dtype=int), "expected"),
        (np.zeros((0, 2)), np.zeros(0, dtype=int), "no examples"),
        (np.zeros((2, 2)), np.array([0, -1]), "no gold labels"),
    ],
)
def test_accuracy_rejects_bad_input(logits, labels, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(logits, labels)


# ---- SQuAD ------------------------------------------------------------------------------------------------
def squad_examples(*golds: list[str]) -> dict[str, list]:
    ids = [f"q{i}" for i in range(len(golds))]
    return {"id": ids, "answers": [{"text": texts, "answer_start": [0] * len(texts)} for texts in golds]}


def test_squad_exact_match():
    assert squad_metrics({"q0": "the cat sat"}, squad_examples(["the cat sat"])) == {
        "exact_match": pytest.approx(100.0),
        "f1": pytest.approx(100.0),
    }


def test_squad_partial_overlap():
    # Normalised: "cat" vs "cat sat" (articles dropped). P = 1/1, R = 1/2, F1 = 2PR/(P+R) = 2/3.
    metrics = squad_metrics({"q0": "the cat"}, squad_examples(["the cat sat"]))
    assert metrics["exact_match"] == pytest.approx(0.0)
    assert metrics["f1"] == pytest.approx(200.0 / 3, abs=1e-4)


def test_squad_normalisation_and_best_gold():
    # Case, punctuation and articles are ignored; each example scores its best gold answer.
    metrics = squad_metrics({"q0": "A Cat!"}, squad_examples(["dog", "the cat"]))
    assert metrics == {"exact_match": pytest.approx(100.0), "f1": pytest.approx(100.0)}


def test_squad_averages_over_examples_and_missing_scores_zero():
    examples = squad_examples(["the cat sat"], ["the cat sat"], ["on the mat"])
    # q0 exact (1, 1); q1 partial (0, 2/3); q2 unanswered (0, 0).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about the unanswered question
        metrics = squad_metrics({"q0": "cat sat", "q1": "the cat"}, examples)
    assert metrics["exact_match"] == pytest.approx(100.0 / 3, abs=1e-4)
    assert metrics["f1"] == pytest.approx(100.0 * (1 + 2 / 3) / 3, abs=1e-4)


def test_squad_no_overlap_and_empty_prediction():
    metrics = squad_metrics({"q0": "dog", "q1": ""}, squad_examples(["cat"], ["cat"]))
    assert metrics == {"exact_match": 0.0, "f1": 0.0}


def test_squad_rejects_no_examples():
    with pytest.raises(ValueError, match="no examples"):
        squad_metrics({}, squad_examples())


# ---- task metadata ------------------------------------------------------------------------------------
@pytest.mark.parametrize("task_cls", [MNLI, SST2, SQuAD])
def test_task_metadata_is_consistent(task_cls):
    task = task_cls()
    assert task.head in HEADS
    assert task.primary_metric in task.metrics
    assert task.greater_is_better
    assert task.description and "\n" not in task.description
    assert task.describe()["name"] == task_cls.name


def test_glue_label_words():
    assert (MNLI.num_labels, MNLI.label_words) == (3, ("Yes", "Maybe", "No"))
    assert (SST2.num_labels, SST2.label_words) == (2, ("terrible", "great"))
    assert (MNLI().eval_split, SST2().eval_split) == ("validation_matched", "validation")
    assert MNLI.text_keys == ("premise", "hypothesis") and SST2.text_keys == ("sentence",)


def test_squad_rejects_stride_not_below_max_length():
    with pytest.raises(BenchError, match="doc_stride"):
        SQuAD().featurize(None, None, Featurization(max_length=128, doc_stride=128), train=True)
