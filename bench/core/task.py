"""The task interface: data, preprocessing, model head and metrics of one benchmark task."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.core.errors import BenchError
from bench.core.hub import first_line, with_hub_hint

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer

HEADS = ("sequence-classification", "question-answering")
DEFAULT_REGRESSION_TOLERANCE = 1.0  # points of a percent metric: e.g. one of the regression gate's 100 SQuAD questions
# The transformers Auto class behind each head, and the module constant mapping model types to its classes.
HEAD_CLASSES = {
    "sequence-classification": (
        "AutoModelForSequenceClassification",
        "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    ),
    "question-answering": ("AutoModelForQuestionAnswering", "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES"),
}


@dataclass(frozen=True)
class Featurization:
    """Tokenization budget of a cell.

    Attributes:
        max_length: tokens per feature (truncation length; padding is dynamic per batch).
        doc_stride: overlap in tokens between the sliding windows of a long QA context.
    """

    max_length: int = 128
    doc_stride: int = 128


@dataclass
class Evaluation:
    """What a model (or a trivial baseline) scored on the eval examples, example by example.

    Attributes:
        metrics: ``{metric: value}`` in the task's units (percent for GLUE and SQuAD).
        per_example: ``{metric: float array of shape (n_examples,)}``, each example's contribution, so that the
            metric is the mean of its array (accuracy: 100 or 0; SQuAD F1: that question's F1). It is what the
            confidence intervals and the paired tests between methods resample (:mod:`bench.results.stats`). Empty for a
            task whose metrics do not decompose by example.
        predictions: shape (n_examples,): the predicted label id or answer text of each example, or None.
        description: for a trivial baseline, what it predicts (e.g. "majority class 1 of the eval split").
        labels: shape (n_examples,): the gold labels, where the metrics come from :meth:`Task.compute_metrics`; with
            ``predictions`` they give the intervals of the metrics that do not decompose by example.
    """

    metrics: dict[str, float]
    per_example: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: np.ndarray | None = None
    description: str = ""
    labels: np.ndarray | None = None

    def constant_predictions(self) -> bool:
        """True when every example got the same prediction (a model that fell to one class or one span)."""
        return self.predictions is not None and len(self.predictions) > 1 and len(set(self.predictions.tolist())) == 1


class Task(ABC):
    """Base class of every benchmark task.

    Class attributes:
        name, description: registry name and one line for ``bench ls tasks``.
        dataset_id, dataset_config: the Hub dataset repo and config.
        train_split, eval_split: default split specs; ``datasets`` slicing syntax works (``"train[:2000]"``).
        head: one of :data:`HEADS`.
        metrics: names of the metrics :meth:`evaluate` returns; ``primary_metric`` is one of them, ranked in
            the direction ``greater_is_better``.
        label_words: for classification heads, one word per label (used by methods that initialise the head
            from word embeddings).
        presets: the task's settings under each preset that needs them, ``{preset name: {"train_split": ...,
            "eval_split": ..., "budget": {Budget field: value}}}`` (e.g. the slices that make ``quick`` fit a
            2-core CPU); a preset the task does not name runs its default splits and the preset's budget.
        regression_tolerances: ``{metric: absolute tolerance}`` in the metric's units, with which ``bench regress``
            writes a new baseline for this task's cells (a baseline file's own tolerances win); a metric not named
            gets :data:`DEFAULT_REGRESSION_TOLERANCE`.
        groups: the task groups it belongs to (e.g. ``("glue",)``): ``--tasks glue`` names every trainable member.

    Args:
        train_split, eval_split: overrides of the class defaults (from the CLI or a matrix config).
        dev_fraction: fraction of the train split held out, seeded, as the tuning dev split, in (0, 1).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    dataset_id: ClassVar[str]
    dataset_config: ClassVar[str | None] = None
    train_split: str = "train"
    eval_split: str = "validation"
    head: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    greater_is_better: ClassVar[bool] = True
    label_words: ClassVar[tuple[str, ...]] = ()
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    regression_tolerances: ClassVar[Mapping[str, float]] = {}
    groups: ClassVar[tuple[str, ...]] = ()

    def __init__(self, train_split: str | None = None, eval_split: str | None = None, dev_fraction: float = 0.1):
        if not 0.0 < dev_fraction < 1.0:
            raise BenchError(f"dev_fraction must be in (0, 1), got {dev_fraction!r}")
        self.train_split = train_split or type(self).train_split
        self.eval_split = eval_split or type(self).eval_split
        self.dev_fraction = dev_fraction

    # ---- data ------------------------------------------------------------------------------------------
    def load_split(self, split: str) -> datasets.Dataset:
        """Raw examples of ``split`` (slicing syntax allowed), from the Hub or the local Hub cache.

        Raises:
            BenchError: the dataset cannot be found, or the split does not exist (the message lists the
                available ones).
        """
        from datasets import load_dataset

        path = self.dataset_path()
        try:
            return load_dataset(path, self.dataset_config, split=split)
        except ValueError as err:
            if "split" in str(err).lower():
                raise BenchError(f"task {self.name!r}: bad split {split!r} for {self.dataset_id}: {err}") from err
            raise

    def dataset_path(self) -> str:
        """The local snapshot of :attr:`dataset_id` (only the files of :attr:`dataset_config`), downloaded unless
        ``HF_HUB_OFFLINE`` is set.

        Raises:
            BenchError: the dataset cannot be found (offline: it is not in the Hub cache).
        """
        from huggingface_hub import snapshot_download

        patterns = [f"{self.dataset_config}/*", "README.md"] if self.dataset_config else None
        try:
            return snapshot_download(self.dataset_id, repo_type="dataset", allow_patterns=patterns)
        except Exception as err:  # noqa: BLE001 - the hub client raises many kinds; all mean: not available
            raise BenchError(
                with_hub_hint(f"task {self.name!r}: cannot get dataset {self.dataset_id!r}: {first_line(err)}")
            ) from err

    def split_sizes(self) -> dict[str, int] | None:
        """``{split name: examples}`` of the dataset (config :attr:`dataset_config`), without loading it: from the
        dataset card's split info, else by preparing the dataset (as training would, into the ``datasets`` cache).

        A task whose data does not come from a Hub dataset returns None (no split check before running).

        Raises:
            BenchError: the dataset or its config cannot be found.
        """
        from datasets import load_dataset_builder

        path = self.dataset_path()
        try:
            builder = load_dataset_builder(path, self.dataset_config)
            if not builder.info.splits:
                builder.download_and_prepare()
        except Exception as err:  # noqa: BLE001 - bad config names and unreadable files raise many kinds
            raise BenchError(
                f"task {self.name!r}: cannot read dataset {self.dataset_id!r} (config {self.dataset_config!r}): "
                f"{first_line(err)}"
            ) from err
        return {name: info.num_examples for name, info in (builder.info.splits or {}).items()}

    def check_model(self, model_id: str, config: Any) -> None:
        """Refuse a model that cannot carry this task's head (transformers has no :attr:`head` class for its
        architecture). Subclasses add their own checks (e.g. the label count of a fine-tuned checkpoint).

        Args:
            model_id: the model's Hub id or path, for messages.
            config: its transformers ``PretrainedConfig``.

        Raises:
            BenchError: the head does not fit the model.
        """
        if self.head not in HEAD_CLASSES:
            return
        from transformers.models.auto import modeling_auto

        auto_class, mapping = HEAD_CLASSES[self.head]
        supported = getattr(modeling_auto, mapping, None)
        model_type = getattr(config, "model_type", None)
        if supported is not None and model_type not in supported:
            raise BenchError(
                f"task {self.name!r} needs a {self.head} head, but transformers' {auto_class} has none for "
                f"model {model_id!r} (model_type {model_type!r}); use a model of another architecture"
            )

    def train_examples(self) -> datasets.Dataset:
        return self.load_split(self.train_split)

    def eval_examples(self) -> datasets.Dataset:
        """The split the leaderboard reports. Hyperparameter search never sees it."""
        return self.load_split(self.eval_split)

    def tuning_splits(self, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
        """(train minus dev, dev): the dev split carved from train by ``dev_fraction`` with ``seed``."""
        parts = self.train_examples().train_test_split(test_size=self.dev_fraction, seed=seed)
        return parts["train"], parts["test"]

    # ---- model and features --------------------------------------------------------------------------------
    @abstractmethod
    def build_model(self, model_id: str) -> PreTrainedModel:
        """The pretrained encoder ``model_id`` with this task's head (freshly initialised)."""

    @abstractmethod
    def featurize(
        self, examples: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, feats: Featurization, train: bool
    ) -> datasets.Dataset:
        """Tokenized features (unpadded) for the Trainer: model inputs plus labels when ``train``.

        Eval features may carry extra columns that :meth:`evaluate` needs (the Trainer drops columns the model
        does not take). Implementations use ``Dataset.map`` so results are cached by fingerprint.
        """

    def evaluate(
        self,
        trainer: Trainer,
        examples: datasets.Dataset,
        tokenizer: PreTrainedTokenizerBase,
        feats: Featurization,
    ) -> dict[str, float]:
        """Predict on ``examples`` with ``trainer`` and return every name in :attr:`metrics` (as fractions
        or percentages as documented by the task). A task implements this or :meth:`evaluate_per_example`; the
        default of each calls the other.

        Raises:
            NotImplementedError: the task implements neither.
        """
        if type(self).evaluate_per_example is Task.evaluate_per_example:
            raise NotImplementedError(f"task {self.name!r} implements neither evaluate nor evaluate_per_example")
        return self.evaluate_per_example(trainer, examples, tokenizer, feats).metrics

    def evaluate_per_example(
        self,
        trainer: Trainer,
        examples: datasets.Dataset,
        tokenizer: PreTrainedTokenizerBase,
        feats: Featurization,
    ) -> Evaluation:
        """:meth:`evaluate` with every example's prediction and metric contributions (:class:`Evaluation`).

        The built-in tasks override it; the default wraps :meth:`evaluate` with no per-example values, so a
        plugin task that only implements :meth:`evaluate` still runs (its cells then carry no intervals).
        """
        if type(self).evaluate is Task.evaluate:
            raise NotImplementedError(f"task {self.name!r} implements neither evaluate nor evaluate_per_example")
        return Evaluation(self.evaluate(trainer, examples, tokenizer, feats))

    def compute_metrics(self, predictions: Any, labels: Any) -> Evaluation:
        """Every metric of :attr:`metrics` for ``predictions`` against ``labels``, with the per-example
        contributions of those that decompose by example (:mod:`bench.core.metrics`, scikit-learn and scipy).

        Args:
            predictions, labels: array-likes of shape (n_examples,): predicted and gold label ids
                (classification) or values (regression).

        Raises:
            ValueError: a metric name that :data:`bench.core.metrics.METRICS` lacks (a task that names its own metrics
                overrides this), or shapes that do not match.
        """
        import bench.core.metrics as metrics

        scores, per_example = metrics.compute(self.metrics, predictions, labels)
        return Evaluation(scores, per_example, np.asarray(predictions), labels=np.asarray(labels))

    def trivial_baseline(self, examples: datasets.Dataset) -> Evaluation | None:
        """The score of a model that learned nothing, on the eval ``examples``: what a cell must beat to be more
        than chance (majority class for classification, the train mean for regression, empty answers for QA).
        None when the task defines none (then no cell of it gets the chance verdict from its metric)."""
        return None

    def describe(self) -> dict[str, Any]:
        """Settings that identify the task in a cell id."""
        return {
            "name": self.name,
            "dataset": self.dataset_id,
            "config": self.dataset_config,
            "train_split": self.train_split,
            "eval_split": self.eval_split,
            "dev_fraction": self.dev_fraction,
        }
