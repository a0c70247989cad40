"""GLUE sentence(-pair) tasks (Wang et al., 2019, "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural
Language Understanding", ICLR) with GLUE's metrics, in percent: accuracy (SST-2, MNLI, QNLI, RTE, WNLI), Matthews
correlation (CoLA), F1 and accuracy (MRPC), Pearson and Spearman correlation of a regression head (STS-B)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.core.errors import BenchError
from bench.core.task import Evaluation, Featurization, Task

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer


def classification_metrics(logits: Any, labels: Any) -> dict[str, float]:
    """Accuracy of the argmax of ``logits`` against ``labels``, in percent (0-100), as GLUE reports it.

    Args:
        logits: array-like of shape ``(n_examples, n_labels)``, raw scores (any monotone transform works).
        labels: array-like of shape ``(n_examples,)``, gold label ids in ``[0, n_labels)``.

    Returns:
        ``{"accuracy": float}``, computed with :func:`sklearn.metrics.accuracy_score`.

    Raises:
        ValueError: ``logits`` is not 2-D, the lengths differ, there are no examples, or a label is negative
            (GLUE test splits carry label -1, i.e. no gold labels).
    """
    from bench.core.metrics import METRICS

    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels):
        raise ValueError(f"expected logits (n, n_labels) and labels (n,), got {logits.shape}, {labels.shape}")
    if len(labels) == 0:
        raise ValueError("no examples to score")
    if (labels < 0).any():
        raise ValueError("negative label ids: the split has no gold labels (a GLUE test split?)")
    return {"accuracy": METRICS["accuracy"].score(logits.argmax(axis=-1), labels)}


def _tokenize(
    batch: dict[str, list],
    tokenizer: PreTrainedTokenizerBase,
    text_keys: tuple[str, ...],
    label_field: str,
    max_length: int,
) -> dict[str, list]:
    """``Dataset.map(batched=True)`` body: truncated, unpadded token ids plus ``labels``."""
    encoded = tokenizer(*(list(batch[key]) for key in text_keys), truncation=True, max_length=max_length)
    encoded["labels"] = list(batch[label_field])
    return encoded


class GlueTask(Task):
    """A GLUE-shaped task: one or two text columns and a label column (integer class ids; a float score when
    ``num_labels`` is 1, a regression head).

    Subclasses set ``name``, ``description``, ``dataset_config``, ``text_keys``, ``num_labels``,
    ``label_words`` and, where they differ from the defaults, ``label_field`` (``"label"``) and ``eval_split``
    (``"validation"``). A YAML file does the same without Python (:mod:`bench.tasks.yaml_tasks`).
    """

    dataset_id = "nyu-mll/glue"
    head = "sequence-classification"
    metrics = ("accuracy",)
    primary_metric = "accuracy"
    # About 1.5x the drift measured across CPU kernels on the gate's 872 SST-2 examples (1.72 points; see
    # bench.results.regress.TOLERANCES_COMMENT).
    regression_tolerances = {"accuracy": 2.5}
    greater_is_better = True
    text_keys: ClassVar[tuple[str, ...]]
    label_field: ClassVar[str] = "label"
    num_labels: ClassVar[int]
    # A task from a YAML file of --include-tasks: its whole definition, which enters describe() and so cell ids.
    definition: ClassVar[dict[str, Any] | None] = None

    def describe(self) -> dict[str, Any]:
        """:meth:`Task.describe`, plus the YAML definition of a task from ``--include-tasks``."""
        described = super().describe()
        if self.definition is not None:
            described["definition"] = self.definition
        return described

    @property
    def regression(self) -> bool:
        """One output (STS-B): a regression head trained with MSE, predictions are its values."""
        return self.num_labels == 1

    def build_model(self, model_id: str) -> PreTrainedModel:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(model_id, num_labels=self.num_labels)

    def check_model(self, model_id: str, config: Any) -> None:
        """Also refuse a checkpoint that already carries a classification head with another label count (its
        ``architectures`` name a ``...ForSequenceClassification`` class): loading it with :attr:`num_labels`
        would fail on the head's shape.

        Raises:
            BenchError: no sequence-classification head for the architecture, or a head of the wrong size.
        """
        super().check_model(model_id, config)
        heads = [a for a in (getattr(config, "architectures", None) or []) if a.endswith("ForSequenceClassification")]
        labels = getattr(config, "num_labels", None)
        if heads and labels != self.num_labels:
            raise BenchError(
                f"model {model_id!r} is a {heads[0]} checkpoint with a {labels}-label head, but task {self.name!r} "
                f"has {self.num_labels} labels; use the encoder it was fine-tuned from (or any checkpoint without "
                f"a classification head), or one fine-tuned for {self.name}"
            )

    def featurize(
        self,
        examples: datasets.Dataset,
        tokenizer: PreTrainedTokenizerBase,
        feats: Featurization,
        train: bool,
    ) -> datasets.Dataset:
        """Columns ``input_ids``, ``token_type_ids`` (if the tokenizer makes them), ``attention_mask``
        (each at most ``feats.max_length`` tokens, unpadded) and ``labels``; the text columns and ``idx``
        are dropped. Train and eval features are the same.

        Raises:
            BenchError: ``examples`` lacks a text column or ``label``.
        """
        missing = [key for key in (*self.text_keys, self.label_field) if key not in examples.column_names]
        if missing:
            have = examples.column_names
            raise BenchError(f"task {self.name!r}: examples lack columns {missing}; they have {have}")
        return examples.map(
            _tokenize,
            batched=True,
            fn_kwargs={"tokenizer": tokenizer, "text_keys": self.text_keys, "label_field": self.label_field,
                       "max_length": feats.max_length},  # fmt: skip
            remove_columns=examples.column_names,
            desc=f"featurize {self.name}",
        )

    def evaluate_per_example(
        self,
        trainer: Trainer,
        examples: datasets.Dataset,
        tokenizer: PreTrainedTokenizerBase,
        feats: Featurization,
    ) -> Evaluation:
        """The task's metrics (:meth:`compute_metrics`) of the argmax label (the regression head's value for STS-B),
        with each example's prediction and, for accuracy, its contribution (100 if right, else 0).

        Raises:
            BenchError: ``examples`` has no gold labels (label -1, as in GLUE test splits).
        """
        features = self.featurize(examples, tokenizer, feats, train=False)
        labels = self.gold_labels(features["labels"])
        predictions = trainer.predict(features).predictions
        logits = predictions[0] if isinstance(predictions, tuple) else predictions
        logits = np.asarray(logits)
        return self.compute_metrics(logits[:, 0] if self.regression else logits.argmax(axis=-1), labels)

    def trivial_baseline(self, examples: datasets.Dataset) -> Evaluation:
        """Always the majority class of the eval ``examples`` (ties: the lowest label id); for a regression task,
        always their mean score (whose correlation with anything is 0).

        Raises:
            BenchError: ``examples`` has no gold labels.
        """
        labels = self.gold_labels(examples[self.label_field])
        if self.regression:
            evaluation = self.compute_metrics(np.full(len(labels), labels.mean()), labels)
            evaluation.description = f"the mean score {labels.mean():.3g} of the eval split"
            return evaluation
        majority = int(np.bincount(labels, minlength=self.num_labels).argmax())
        evaluation = self.compute_metrics(np.full(len(labels), majority), labels)
        word = f" ({self.label_words[majority]!r})" if majority < len(self.label_words) else ""
        evaluation.description = f"majority class {majority}{word} of the eval split"
        return evaluation

    def gold_labels(self, labels: Any) -> np.ndarray:
        """``labels`` as an int array (float for a regression task), refused when the split has none (label -1)."""
        labels = np.asarray(labels, dtype=np.float64 if self.regression else np.int64)
        if (labels < 0).any():
            raise BenchError(f"task {self.name!r}: the eval examples have no gold labels (label -1, a test split?)")
        return labels


# The built-in GLUE tasks are YAML files (tasks/configs/glue/*.yaml, read by bench.tasks.yaml_tasks), built into
# classes on first use under the names the entry points and imports use (PEP 562: importing this module reads none).
_BUILTIN = {"MNLI": "mnli", "SST2": "sst2", "CoLA": "cola", "MRPC": "mrpc", "STSB": "stsb", "RTE": "rte",
            "WNLI": "wnli", "QNLI": "qnli"}  # fmt: skip


def __getattr__(name: str) -> type[GlueTask]:
    if name in _BUILTIN:
        from bench.tasks.yaml_tasks import builtin

        globals()[name] = cls = builtin("glue", _BUILTIN[name], name)
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
