"""All of GLUE that the data allows (issue 16): CoLA, MRPC, STS-B, RTE, WNLI and QNLI on real (cached) data with
the MiniLM tokenizer and a tiny random BERT, their GLUE metrics, intervals for the metrics that do not decompose by
example, and their trivial baselines."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core import registry
from bench.core.task import Featurization
from bench.results import verdicts
from tests.test_tasks_data import UNAVAILABLE, tiny_trainer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=f"Hub data unavailable: {UNAVAILABLE}"),
]

PRIMARY = {"cola": "matthews_correlation", "mrpc": "f1", "stsb": "pearson", "rte": "accuracy", "wnli": "accuracy"}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")


@pytest.mark.parametrize("name", sorted(PRIMARY))
def test_task_runs_on_its_data_with_glue_metrics_and_intervals(name, tokenizer, tmp_path):
    from transformers import BertForSequenceClassification

    task = registry.tasks.get(name)()
    assert task.primary_metric == PRIMARY[name]
    examples = task.load_split("validation[:40]")
    features = task.featurize(examples, tokenizer, Featurization(max_length=48), train=True)
    assert max(len(ids) for ids in features["input_ids"]) <= 48
    trainer = tiny_trainer(BertForSequenceClassification, tokenizer, tmp_path, num_labels=task.num_labels)
    evaluation = task.evaluate_per_example(trainer, examples, tokenizer, Featurization(max_length=48))
    assert set(evaluation.metrics) == set(task.metrics)
    assert all(np.isfinite(v) for v in evaluation.metrics.values())
    assert len(evaluation.predictions) == len(evaluation.labels) == 40
    if name == "stsb":  # a regression head: real-valued predictions and labels in [0, 5]
        assert evaluation.predictions.dtype.kind == "f" and 0 <= evaluation.labels.min() <= evaluation.labels.max() <= 5
    intervals = verdicts.evaluation_intervals(evaluation)
    for metric, score in evaluation.metrics.items():  # every metric has an interval, decomposable or not
        low, high = intervals[metric]["low"], intervals[metric]["high"]
        assert low <= score + 1e-9 and score - 1e-9 <= high, (metric, low, score, high)


def test_trivial_baselines_score_what_a_constant_scores():
    cola, stsb, mrpc = (registry.tasks.get(n)() for n in ("cola", "stsb", "mrpc"))
    assert cola.trivial_baseline(cola.load_split("validation")).metrics["matthews_correlation"] == 0.0
    baseline = stsb.trivial_baseline(stsb.load_split("validation"))
    assert baseline.metrics == {"pearson": 0.0, "spearman": 0.0}
    assert baseline.description.startswith("the mean score")
    labels = np.asarray(mrpc.load_split("validation")["label"])
    p = labels.mean()  # the majority class is 1 (paraphrase): F1 = 2p / (1 + p)
    assert mrpc.trivial_baseline(mrpc.load_split("validation")).metrics["f1"] == pytest.approx(100 * 2 * p / (1 + p))


def test_paired_bootstrap_interval_covers_an_f1_and_is_seeded():
    from bench.core.metrics import METRICS
    from bench.results.stats import paired_bootstrap_interval

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    predicted = np.where(rng.random(300) < 0.8, labels, 1 - labels)
    score = METRICS["f1"].score
    low, high = paired_bootstrap_interval(predicted, labels, score, resamples=1000, seed=1)
    assert low < score(predicted, labels) < high and high - low < 20
    assert (low, high) == paired_bootstrap_interval(predicted, labels, score, resamples=1000, seed=1)


def test_qnli_is_registered_and_loads_its_validation_split():
    qnli = registry.tasks.get("qnli")()
    assert (qnli.text_keys, qnli.num_labels) == (("question", "sentence"), 2)
    assert len(qnli.load_split("validation[:8]")) == 8
