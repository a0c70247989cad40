"""The task interface: data, preprocessing, model head and metrics of one benchmark task."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from bench.errors import BenchError

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer

HEADS = ("sequence-classification", "question-answering")


@dataclass(frozen=True)
class Featurization:
    """Tokenization budget of a cell.

    Attributes:
        max_length: tokens per feature (truncation length; padding is dynamic per batch).
        doc_stride: overlap in tokens between the sliding windows of a long QA context.
    """

    max_length: int = 128
    doc_stride: int = 128


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
            BenchError: the split does not exist; the message lists the available ones.
        """
        from datasets import load_dataset
        from huggingface_hub import snapshot_download

        patterns = [f"{self.dataset_config}/*", "README.md"] if self.dataset_config else None
        path = snapshot_download(self.dataset_id, repo_type="dataset", allow_patterns=patterns)
        try:
            return load_dataset(path, self.dataset_config, split=split)
        except ValueError as err:
            if "split" in str(err).lower():
                raise BenchError(f"task {self.name!r}: bad split {split!r} for {self.dataset_id}: {err}") from err
            raise

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

    @abstractmethod
    def evaluate(
        self,
        trainer: Trainer,
        examples: datasets.Dataset,
        tokenizer: PreTrainedTokenizerBase,
        feats: Featurization,
    ) -> dict[str, float]:
        """Predict on ``examples`` with ``trainer`` and return every name in :attr:`metrics` (as fractions
        or percentages as documented by the task)."""

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
