"""The installed conformance suites (bench.testing) catch broken plugins, naming the plugin and the property, and run
without pytest on classes that are not registered."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import torch
from bench.tasks.glue import SST2

from bench.core.masking import Mask
from bench.core.method import PruningMethod
from bench.core.task import Task
from bench.testing import ConformanceError, check_method, check_task


class Good(PruningMethod):
    """Magnitude pruning at the end of training, in one shot."""

    name = "good"
    description = "one-shot magnitude pruning"

    def make_mask(self, weight):
        return Mask(weight.module.weight)

    def scores(self):
        return {name: self.weight(name).detach().abs() for name in self.masks}

    def set_final_masks(self):
        self.project_locally(self.scores(), self.sparsity)
        return {}


class MissesTarget(Good):
    """Prunes half of what it was asked for."""

    name = "misses_target"

    def set_final_masks(self):
        self.project_locally(self.scores(), self.sparsity / 2)
        return {}


class PrunesTheHead(Good):
    """Also zeroes the classifier, which is not in the prunable set."""

    name = "prunes_the_head"

    def prepare(self, model, task=None, tokenizer=None):
        super().prepare(model, task, tokenizer)
        self.model = model

    def set_final_masks(self):
        with torch.no_grad():
            self.model.classifier.weight[0].zero_()
        return super().set_final_masks()


class Unseeded(Good):
    """Random masks from an unseeded generator."""

    name = "unseeded"

    def scores(self):
        generator = torch.Generator().manual_seed(random.SystemRandom().randrange(2**32))
        return {name: torch.rand(mask.mask.shape, generator=generator) for name, mask in self.masks.items()}


class TwoLineDescription(Good):
    """Fine, but for its description."""

    name = "two_lines"
    description = "first line\nsecond line"


class SearchesUnknown(Good):
    """Its search space samples a hyperparameter it does not have."""

    name = "searches_unknown"

    @classmethod
    def search_space(cls, trial):
        return {"mystery": trial.suggest_float("mystery", 0.0, 1.0)}


def test_a_correct_unregistered_method_passes():
    passed = check_method(Good)
    assert passed[0] == "metadata" and "same seed, same model" in passed


@pytest.mark.parametrize(
    ("cls", "prop", "detail"),
    [
        (MissesTarget, "sparsity hits the target", "measured sparsity 0.3499, target 0.7"),
        (PrunesTheHead, "only the prunable set is pruned", "classifier.weight"),
        (Unseeded, "same seed, same model", "two runs with the same seed differ"),
        (TwoLineDescription, "metadata", "one-line description"),
        (SearchesUnknown, "search_space", "['mystery']"),
    ],
)
def test_broken_methods_are_named_with_the_failed_property(cls, prop, detail):
    with pytest.raises(ConformanceError) as caught:
        check_method(cls)
    message = str(caught.value)
    assert message.startswith(f"method {cls.name!r} (tests.test_testing.{cls.__name__}): {prop}: ")
    assert detail in message
    assert isinstance(caught.value, AssertionError)


def test_check_method_takes_a_registered_name():
    assert "finalize" in check_method("magnitude")


class RenamesMetric(SST2):
    """Reports its accuracy under another name than its metrics declare."""

    name = "renames_metric"

    def evaluate_per_example(self, trainer, examples, tokenizer, feats):
        evaluation = super().evaluate_per_example(trainer, examples, tokenizer, feats)
        evaluation.metrics = {"acc": evaluation.metrics["accuracy"]}
        evaluation.per_example = {}
        return evaluation


class BadPerExample(SST2):
    """Per-example values that do not average to the metric."""

    name = "bad_per_example"

    def evaluate_per_example(self, trainer, examples, tokenizer, feats):
        evaluation = super().evaluate_per_example(trainer, examples, tokenizer, feats)
        evaluation.per_example["accuracy"] = evaluation.per_example["accuracy"] * 0 + 200.0
        return evaluation


class ToleratesUnknownMetric(SST2):
    """Names a regression tolerance for a metric it does not report."""

    name = "tolerates_unknown"
    regression_tolerances = {"f1": 1.0}


class OwnColumns(SST2):
    """An SST-2 variant whose dataset calls its text column 'text'."""

    name = "own_columns"
    text_keys = ("text",)


@pytest.mark.parametrize(
    ("cls", "prop", "detail"),
    [
        (RenamesMetric, "evaluate", "evaluate returned ['acc'], not the task's metrics ('accuracy',)"),
        (BadPerExample, "evaluate", "the mean of per_example['accuracy'] is not the metric"),
        (ToleratesUnknownMetric, "metadata", "regression_tolerances names metrics the task does not report: ['f1']"),
    ],
)
def test_broken_tasks_are_named_with_the_failed_property(cls, prop, detail):
    with pytest.raises(ConformanceError) as caught:
        check_task(cls)
    assert str(caught.value).startswith(f"task {cls.name!r} (tests.test_testing.{cls.__name__}): {prop}: ")
    assert detail in str(caught.value)


def test_a_task_of_another_format_passes_its_own_examples():
    class Custom(SST2):
        """Text in a column the synthetic examples do not know."""

        name = "custom"
        head = "sequence-classification"
        text_keys = ("review",)

    examples = {"review": ["a good film", "a bad film", "not good", "very good"], "label": [1, 0, 0, 1]}
    assert "evaluate" in check_task(Custom, examples=examples)
    with pytest.raises(ConformanceError, match="featurize: BenchError: .*lack columns"):
        check_task(OwnColumns, examples={"sentence": ["a cat"], "label": [0]})


class NoShape(Task):
    """Data in a format the suite cannot make up."""

    name = "no_shape"
    description = "a task without GLUE or SQuAD columns"
    dataset_id = "someone/something"
    head = "sequence-classification"
    metrics = ("accuracy",)
    primary_metric = "accuracy"

    def build_model(self, model_id):
        raise NotImplementedError

    def featurize(self, examples, tokenizer, feats, train):
        raise NotImplementedError

    def evaluate(self, trainer, examples, tokenizer, feats):
        raise NotImplementedError


def test_unknown_format_without_examples_says_to_pass_them():
    with pytest.raises(
        ConformanceError, match="'no_shape' .*: examples: AssertionError: cannot make synthetic .*examples="
    ):
        check_task(NoShape)


def test_suites_run_without_pytest():
    code = "import sys; from bench.testing import check_method; check_method('dense'); print('pytest' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
