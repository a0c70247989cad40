"""Tasks own their knowledge (issue 15): metrics by name through one ``compute_metrics`` hook, and each task's
settings under a preset on the task class."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.config.presets import get_preset, task_settings
from bench.core import metrics
from bench.core.task import Task


def test_metric_definitions_match_hand_computed_values():
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    predicted = np.array([1, 1, 0, 0, 0, 1, 1, 1])
    tp, fp, fn, tn = 3, 2, 1, 2
    scores, per_example = metrics.compute(("accuracy", "f1", "matthews_correlation"), predicted, labels)
    assert scores["accuracy"] == pytest.approx(100 * (tp + tn) / 8)
    assert scores["f1"] == pytest.approx(100 * 2 * tp / (2 * tp + fp + fn))
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert scores["matthews_correlation"] == pytest.approx(100 * mcc)
    assert set(per_example) == {"accuracy"}  # F1 and MCC do not decompose by example
    assert per_example["accuracy"].mean() == pytest.approx(scores["accuracy"])


def test_correlations_and_a_constant_prediction():
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, size=50)
    predicted = labels + rng.normal(0, 1, size=50)
    scores, per_example = metrics.compute(("pearson", "spearman"), predicted, labels)
    assert scores["pearson"] == pytest.approx(100 * stats.pearsonr(predicted, labels)[0])
    assert scores["spearman"] == pytest.approx(100 * stats.spearmanr(predicted, labels)[0])
    assert per_example == {}
    constant, _ = metrics.compute(("pearson",), np.full(50, 2.5), labels)
    assert constant == {"pearson": 0.0}


def test_bad_metric_input_is_refused():
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.compute(("bleu",), [1], [1])
    with pytest.raises(ValueError, match="one shape"):
        metrics.compute(("accuracy",), [1, 0], [1])
    with pytest.raises(ValueError, match="no examples"):
        metrics.compute(("accuracy",), [], [])


class PairTask(Task):
    """A task declared by its metrics alone: compute_metrics comes from the base class."""

    name = "pair"
    description = "test"
    dataset_id = "none"
    head = "sequence-classification"
    metrics = ("f1", "accuracy")
    primary_metric = "f1"

    def featurize(self, examples, tokenizer, feats, train):  # pragma: no cover - not used here
        raise NotImplementedError

    def build_model(self, model_id):  # pragma: no cover - not used here
        raise NotImplementedError


def test_a_task_gets_compute_metrics_from_its_metric_names():
    evaluation = PairTask().compute_metrics([1, 0, 1, 1], [1, 0, 0, 1])
    assert evaluation.metrics == {"f1": pytest.approx(80.0), "accuracy": pytest.approx(75.0)}
    assert list(evaluation.per_example) == ["accuracy"]
    assert evaluation.predictions.tolist() == [1, 0, 1, 1]


def test_glue_evaluation_goes_through_the_hook():
    from bench.tasks.glue import SST2

    task = SST2()
    baseline = task.trivial_baseline({"label": [1, 1, 0]})
    assert baseline.metrics == {"accuracy": pytest.approx(200 / 3)}
    assert baseline.description == "majority class 1 ('great') of the eval split"
    assert baseline.per_example["accuracy"].tolist() == [100.0, 100.0, 0.0]


def test_presets_take_each_tasks_settings_from_the_task():
    budget, train, evaluation = task_settings(get_preset("quick"), "squad")
    assert (train, evaluation) == ("train[:800]", "validation[:500]")
    assert (budget.batch_size, budget.max_length, budget.doc_stride) == (16, 256, 64)
    assert task_settings(get_preset("quick"), "sst2")[1:] == ("train[:2000]", "validation")
    budget, train, evaluation = task_settings(get_preset("proxy"), "mnli")  # mnli names no proxy settings
    assert (train, evaluation) == (None, None) and budget == get_preset("proxy")["budget"]
    budget, *_ = task_settings(get_preset("quick"), "sst2", {"batch_size": 8, "train_split": "train[:10]"})
    assert budget.batch_size == 8
