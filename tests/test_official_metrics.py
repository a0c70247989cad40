"""Our metrics agree with the official definitions (issue 16, item 10).

Metrics come from torchmetrics, scikit-learn and scipy, not from ``evaluate.load`` (which downloads and runs metric
code from the Hub at run time: it fails offline and is remote code). This file restates the official definitions
from first principles and checks ours against them on generated inputs:

* SQuAD v1.1: the official ``evaluate-v1.1.py`` of Rajpurkar et al. (2016) — normalise (lower-case, drop
  punctuation, drop the articles a/an/the, collapse whitespace), exact match, bag-of-tokens F1, the maximum over the
  gold answers, the mean over questions in percent; restated below from its published text.
* GLUE (Wang et al. 2019): accuracy, binary F1 of the positive class (MRPC, QQP), Matthews correlation (CoLA),
  Pearson and Spearman correlation (STS-B), written from their textbook formulas (confusion counts, ranks with ties
  averaged), not through the libraries our code calls.
"""

from __future__ import annotations

import collections
import re
import string
import warnings

import numpy as np
import pytest
from bench.tasks.squad import squad_metrics
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.core import metrics


# ---- SQuAD v1.1, as the official script defines it -----------------------------------------------------------
def official_normalize(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def official_f1(prediction: str, truth: str) -> float:
    pred, gold = official_normalize(prediction).split(), official_normalize(truth).split()
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def official_squad(predictions: dict[str, str], golds: dict[str, list[str]]) -> dict[str, float]:
    em = f1 = 0.0
    for qid, truths in golds.items():
        if qid not in predictions:
            continue  # unanswered: scores 0 (the official script prints a message)
        em += max(float(official_normalize(predictions[qid]) == official_normalize(t)) for t in truths)
        f1 += max(official_f1(predictions[qid], t) for t in truths)
    return {"exact_match": 100.0 * em / len(golds), "f1": 100.0 * f1 / len(golds)}


WORDS = ["the", "a", "an", "cat", "Cat", "sat", "on", "mat", "mat.", "Paris", "1990", "it's", "  ", "-", "The"]
answer = st.lists(st.sampled_from(WORDS), min_size=0, max_size=6).map(" ".join)
# Gold answers that keep a token after normalisation: the one known departure is below.
gold = answer.filter(lambda text: official_normalize(text) != "")


def as_examples(golds: dict[str, list[str]]) -> dict[str, list]:
    return {"id": list(golds), "answers": [{"text": t, "answer_start": [0] * len(t)} for t in golds.values()]}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(answer, st.lists(gold, min_size=1, max_size=3), st.booleans()), min_size=1, max_size=6))
def test_squad_matches_the_official_v1_1_script(rows):
    golds = {f"q{i}": truths for i, (_, truths, _) in enumerate(rows)}
    predictions = {f"q{i}": pred for i, (pred, _, answered) in enumerate(rows) if answered}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns about unanswered questions
        ours = squad_metrics(predictions, as_examples(golds))
    official = official_squad(predictions, golds)
    assert ours["exact_match"] == pytest.approx(official["exact_match"], abs=1e-3)
    assert ours["f1"] == pytest.approx(official["f1"], abs=1e-3)


def test_squad_official_cases_by_hand():
    golds = {"q0": ["The Eiffel Tower"], "q1": ["in 1990", "1990"], "q2": ["cat sat on mat"]}
    predictions = {"q0": "eiffel tower!", "q1": "year 1990", "q2": "the cat"}
    # q0: exact after normalisation; q1: best gold "1990", F1 = 2·(1/2·1)/(1/2+1) = 2/3; q2: F1 = 2·(1·1/4)/(5/4) = 0.4
    official = official_squad(predictions, golds)
    assert official == pytest.approx({"exact_match": 100 / 3, "f1": 100 * (1 + 2 / 3 + 0.4) / 3})
    assert squad_metrics(predictions, as_examples(golds)) == pytest.approx(official, abs=1e-3)


def test_the_one_departure_a_gold_answer_that_normalises_to_nothing():
    """torchmetrics scores F1 = 1 when prediction and gold both normalise to no tokens (SQuAD v2's rule); the v1.1
    script scores 0 (no common token). Exact match agrees (both empty strings). Measured on the SQuAD v1.1
    validation set: 3 of its 10,570 questions have a gold answer that normalises to nothing, so at most 3 questions
    can differ, and only when the prediction normalises to nothing too."""
    golds, predictions = {"q0": ["The"]}, {"q0": "a"}
    assert official_squad(predictions, golds) == {"exact_match": 100.0, "f1": 0.0}
    assert squad_metrics(predictions, as_examples(golds)) == pytest.approx({"exact_match": 100.0, "f1": 100.0})


# ---- GLUE, from the textbook formulas --------------------------------------------------------------------------
def confusion(pred: np.ndarray, gold: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.sum((pred == 1) & (gold == 1)))
    tn = int(np.sum((pred == 0) & (gold == 0)))
    fp = int(np.sum((pred == 1) & (gold == 0)))
    fn = int(np.sum((pred == 0) & (gold == 1)))
    return tp, tn, fp, fn


def textbook_f1(pred, gold) -> float:
    tp, _, fp, fn = confusion(pred, gold)
    return 0.0 if tp == 0 else 100.0 * 2 * tp / (2 * tp + fp + fn)


def textbook_matthews(pred, gold) -> float:
    tp, tn, fp, fn = confusion(pred, gold)
    denominator = np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    return 0.0 if denominator == 0 else 100.0 * (tp * tn - fp * fn) / denominator


def textbook_pearson(x, y) -> float:
    x, y = x - x.mean(), y - y.mean()
    return 100.0 * float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        tied = values == v
        ranks[tied] = ranks[tied].mean()
    return ranks


binary = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=2, max_size=40)


@settings(max_examples=150, deadline=None)
@given(binary)
def test_glue_classification_metrics_match_their_definitions(pairs):
    pred, gold = (np.array(column) for column in zip(*pairs, strict=True))
    scores, _ = metrics.compute(("accuracy", "f1", "matthews_correlation"), pred, gold)
    assert scores["accuracy"] == pytest.approx(100.0 * np.mean(pred == gold))
    assert scores["f1"] == pytest.approx(textbook_f1(pred, gold))
    assert scores["matthews_correlation"] == pytest.approx(textbook_matthews(pred, gold), abs=1e-9)


scores_1_to_5 = st.lists(st.tuples(st.integers(0, 10), st.integers(0, 10)), min_size=3, max_size=40)


@settings(max_examples=150, deadline=None)
@given(scores_1_to_5)
def test_stsb_correlations_match_their_definitions(pairs):
    pred, gold = (np.array(column, dtype=float) / 2.0 for column in zip(*pairs, strict=True))  # 0.0 .. 5.0
    scores, _ = metrics.compute(("pearson", "spearman"), pred, gold)
    if np.ptp(pred) == 0 or np.ptp(gold) == 0:  # undefined for a constant; we report 0 rather than NaN
        assert scores == {"pearson": 0.0, "spearman": 0.0}
        return
    assert scores["pearson"] == pytest.approx(textbook_pearson(pred, gold), abs=1e-9)
    ranked = textbook_pearson(average_ranks(pred), average_ranks(gold)) if np.ptp(average_ranks(pred)) else 0.0
    assert scores["spearman"] == pytest.approx(ranked, abs=1e-9)


def test_per_example_accuracy_averages_to_the_metric():
    pred, gold = np.array([1, 0, 2, 2, 1]), np.array([1, 1, 2, 0, 1])
    scores, per_example = metrics.compute(("accuracy",), pred, gold)
    assert per_example["accuracy"].tolist() == [100.0, 0.0, 100.0, 0.0, 100.0]
    assert scores["accuracy"] == pytest.approx(per_example["accuracy"].mean()) == pytest.approx(60.0)
