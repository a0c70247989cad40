"""SQuAD v1.1 extractive question answering (Rajpurkar et al., 2016, "SQuAD: 100,000+ Questions for Machine
Comprehension of Text", EMNLP), scored by exact match and token F1 in percent.

Long contexts are split into overlapping windows (question first, context truncated); predictions are the
best-scoring valid span over all windows of an example.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.core.errors import BenchError
from bench.core.task import Evaluation, Featurization, Task

if TYPE_CHECKING:
    import datasets
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase, Trainer

Offsets = list  # one feature's offset_mapping: per token a (start_char, end_char) pair, or None


# ---- featurization --------------------------------------------------------------------------------------
def _tokenize_windows(
    batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, max_length: int, stride: int
) -> BatchEncoding:
    """Question/context windows of ``max_length`` tokens overlapping by ``stride`` context tokens."""
    # Leading spaces in some SQuAD questions only waste window room.
    questions = [question.lstrip() for question in batch["question"]]
    try:
        return tokenizer(
            questions,
            list(batch["context"]),
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
    except Exception as err:  # the tokenizers backend raises a bare Exception on truncation errors
        raise BenchError(
            f"squad: cannot split contexts into windows of max_length={max_length} with doc_stride={stride} "
            f"(the question plus 3 special tokens plus the stride must fit in max_length): {err}"
        ) from err


def _answer_token_span(offsets: Offsets, sequence_ids: list[int | None], answer: dict[str, list]) -> tuple[int, int]:
    """Token (start, end) of the first gold answer in one window, or (0, 0) (the CLS token) when the answer
    is not entirely inside the window's context."""
    if not answer["text"]:
        return 0, 0
    start_char = answer["answer_start"][0]
    end_char = start_char + len(answer["text"][0])
    context = [k for k, seq in enumerate(sequence_ids) if seq == 1]
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return 0, 0
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def _train_features(
    batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, max_length: int, stride: int
) -> dict[str, list]:
    """``Dataset.map(batched=True)`` body: windows with ``start_positions``/``end_positions``."""
    encoded = _tokenize_windows(batch, tokenizer, max_length, stride)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    all_offsets = encoded.pop("offset_mapping")
    answers = list(batch["answers"])
    spans = [
        _answer_token_span(offsets, encoded.sequence_ids(i), answers[sample_map[i]])
        for i, offsets in enumerate(all_offsets)
    ]
    encoded["start_positions"] = [start for start, _ in spans]
    encoded["end_positions"] = [end for _, end in spans]
    return encoded


def _eval_features(
    batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, max_length: int, stride: int
) -> dict[str, list]:
    """``Dataset.map(batched=True)`` body: windows with ``example_id`` and context-only ``offset_mapping``."""
    encoded = _tokenize_windows(batch, tokenizer, max_length, stride)
    sample_map = encoded.pop("overflow_to_sample_mapping")
    ids = list(batch["id"])
    encoded["example_id"] = [ids[sample] for sample in sample_map]
    encoded["offset_mapping"] = [
        [offset if seq == 1 else None for offset, seq in zip(offsets, encoded.sequence_ids(i), strict=True)]
        for i, offsets in enumerate(encoded["offset_mapping"])
    ]
    return encoded


# ---- post-processing and metrics ------------------------------------------------------------------------
def _best_span_in_window(
    start_logits: np.ndarray, end_logits: np.ndarray, offsets: Offsets, n_best: int, max_answer_length: int
) -> tuple[float, int, int] | None:
    """(score, start_char, end_char) of the best valid span of one window, or None if it has none.

    Logits are cut to the window's own length first (the Trainer pads batches with -100)."""
    start_logits, end_logits = start_logits[: len(offsets)], end_logits[: len(offsets)]
    starts = np.argsort(start_logits, kind="stable")[::-1][:n_best]
    ends = np.argsort(end_logits, kind="stable")[::-1][:n_best]
    in_context = np.array([offset is not None for offset in offsets], dtype=bool)
    length = ends[None, :] - starts[:, None] + 1
    valid = in_context[starts][:, None] & in_context[ends][None, :]
    valid &= (length >= 1) & (length <= max_answer_length)
    if not valid.any():
        return None
    scores = np.where(valid, start_logits[starts][:, None] + end_logits[ends][None, :], -np.inf)
    row, col = np.unravel_index(int(np.argmax(scores)), scores.shape)
    start, end = int(starts[row]), int(ends[col])
    return float(scores[row, col]), offsets[start][0], offsets[end][1]


def postprocess_predictions(
    examples: Any,
    features: Any,
    start_logits: Any,
    end_logits: Any,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """Answer text per example: the best valid span over all windows of the example.

    A span (s, e) of a window is valid when both tokens are context tokens (offset not None), ``s <= e``
    and it is at most ``max_answer_length`` tokens long; its score is ``start_logits[s] + end_logits[e]``.
    Only the ``n_best`` highest start and ``n_best`` highest end logits of each window are tried (as in the
    BERT reference implementation, Devlin et al. 2019). The text is the context slice between the span's
    character offsets.

    Args:
        examples: a ``datasets.Dataset`` or a mapping with columns ``id`` and ``context`` (n_examples rows).
        features: a ``datasets.Dataset`` or a mapping with columns ``example_id`` and ``offset_mapping``
            (n_features rows); ``offset_mapping[i][k]`` is the (start_char, end_char) of token k in the
            context, or None for question, special and padding tokens.
        start_logits, end_logits: arrays of shape ``(n_features, seq_len)``; ``seq_len`` may exceed a window's
            length (batch padding), the excess is ignored.
        n_best: start and end candidates per window, >= 1.
        max_answer_length: longest answer in tokens, >= 1.

    Returns:
        ``{example_id: answer_text}`` for every example; ``""`` when no window has a valid span.

    Raises:
        ValueError: the logits shapes disagree with each other or with the number of features, or
            ``n_best``/``max_answer_length`` is < 1.
    """
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    example_ids, all_offsets = list(features["example_id"]), list(features["offset_mapping"])
    n_features = len(example_ids)
    if start_logits.ndim != 2 or start_logits.shape != end_logits.shape or len(start_logits) != n_features:
        raise ValueError(
            f"expected start/end logits of shape ({n_features}, seq_len), "
            f"got {start_logits.shape} and {end_logits.shape}"
        )
    if n_best < 1 or max_answer_length < 1:
        raise ValueError(f"n_best and max_answer_length must be >= 1, got {n_best} and {max_answer_length}")
    windows: dict[str, list[int]] = defaultdict(list)
    for i, example_id in enumerate(example_ids):
        windows[example_id].append(i)
    predictions = {}
    for example_id, context in zip(examples["id"], examples["context"], strict=True):
        candidates = [
            _best_span_in_window(start_logits[i], end_logits[i], all_offsets[i], n_best, max_answer_length)
            for i in windows.get(example_id, [])
        ]
        candidates = [candidate for candidate in candidates if candidate is not None]
        best = max(candidates, key=lambda candidate: candidate[0], default=None)
        predictions[example_id] = context[best[1] : best[2]] if best else ""
    return predictions


def squad_metrics(predictions: dict[str, str], examples: Any) -> dict[str, float]:
    """Exact match and token F1 of ``predictions`` against the gold answers, in percent (0-100).

    The SQuAD v1.1 official definitions (Rajpurkar et al. 2016), computed by :class:`torchmetrics.text.SQuAD`:
    answers are lower-cased and stripped of punctuation, articles (a, an, the) and extra whitespace; each
    example scores the maximum over its gold answers; an example without a prediction scores 0. One departure from
    the v1.1 script (tests/test_official_metrics.py): when a gold answer and the prediction both normalise to no
    tokens, torchmetrics gives F1 100 (SQuAD v2's rule) where v1.1 gives 0 — possible for 3 of the 10,570
    validation questions.

    Args:
        predictions: ``{example_id: answer_text}``, e.g. from :func:`postprocess_predictions`.
        examples: a ``datasets.Dataset`` or a mapping with columns ``id`` and ``answers``
            (``{"text": [...], "answer_start": [...]}`` per row).

    Returns:
        ``{"exact_match": float, "f1": float}``.

    Raises:
        ValueError: ``examples`` is empty.
    """
    from torchmetrics.text import SQuAD as SQuADMetric

    ids, answers = list(examples["id"]), list(examples["answers"])
    if not ids:
        raise ValueError("no examples to score")
    preds = [{"id": i, "prediction_text": predictions[i]} for i in ids if i in predictions]
    target = [
        {"id": i, "answers": {"text": list(a["text"]), "answer_start": list(a["answer_start"])}}
        for i, a in zip(ids, answers, strict=True)
    ]
    metric = SQuADMetric()
    metric.update(preds, target)
    return {name: float(value) for name, value in metric.compute().items()}


# ---- the task -------------------------------------------------------------------------------------------
class SQuAD(Task):
    """SQuAD v1.1 extractive QA; EM and F1 in percent on the validation set."""

    name = "squad"
    description = "SQuAD v1.1: extractive question answering, exact match and F1 on validation"
    dataset_id = "rajpurkar/squad"
    dataset_config = "plain_text"
    train_split = "train"
    eval_split = "validation"
    head = "question-answering"
    metrics = ("exact_match", "f1")
    primary_metric = "f1"
    regression_tolerances = {"exact_match": 1.0, "f1": 1.0}  # one of the regression gate's 100 questions
    greater_is_better = True
    n_best: ClassVar[int] = 20
    max_answer_length: ClassVar[int] = 30
    presets = {
        "quick": {
            "train_split": "train[:800]",
            "eval_split": "validation[:500]",
            "budget": {"batch_size": 16, "max_length": 256, "doc_stride": 64},
        },
        "paper": {"budget": {"epochs": 10, "batch_size": 16, "max_length": 384, "doc_stride": 128}},
    }

    def build_model(self, model_id: str) -> PreTrainedModel:
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering.from_pretrained(model_id)

    def featurize(
        self,
        examples: datasets.Dataset,
        tokenizer: PreTrainedTokenizerBase,
        feats: Featurization,
        train: bool,
    ) -> datasets.Dataset:
        """One row per window of ``feats.max_length`` tokens (unpadded), consecutive windows of a context
        overlapping by ``feats.doc_stride`` tokens.

        Train rows carry ``start_positions``/``end_positions`` (token indices of the first gold answer,
        0 = CLS when the answer is not inside the window). Eval rows carry ``example_id`` and
        ``offset_mapping`` (character offsets into the context, None for non-context tokens) for
        :func:`postprocess_predictions`.

        Raises:
            BenchError: ``doc_stride >= max_length``, or a question leaves no room for a window.
        """
        if feats.doc_stride >= feats.max_length:
            raise BenchError(
                f"squad: doc_stride ({feats.doc_stride}) must be smaller than max_length "
                f"({feats.max_length}); the usual setting is max_length=384, doc_stride=128"
            )
        return examples.map(
            _train_features if train else _eval_features,
            batched=True,
            fn_kwargs={"tokenizer": tokenizer, "max_length": feats.max_length, "stride": feats.doc_stride},
            remove_columns=examples.column_names,
            desc=f"featurize squad ({'train' if train else 'eval'})",
        )

    def evaluate_per_example(
        self,
        trainer: Trainer,
        examples: datasets.Dataset,
        tokenizer: PreTrainedTokenizerBase,
        feats: Featurization,
    ) -> Evaluation:
        """EM and F1, with each question's predicted answer and its own EM and F1 (:func:`squad_per_example`)."""
        features = self.featurize(examples, tokenizer, feats, train=False)
        output = trainer.predict(features.remove_columns(["example_id", "offset_mapping"]))
        start_logits, end_logits = output.predictions[:2]
        predictions = postprocess_predictions(
            examples, features, start_logits, end_logits, self.n_best, self.max_answer_length
        )
        return squad_evaluation(predictions, examples)

    def trivial_baseline(self, examples: datasets.Dataset) -> Evaluation:
        """An empty answer to every question: EM and F1 are 0."""
        evaluation = squad_evaluation({i: "" for i in examples["id"]}, examples)
        evaluation.description = "an empty answer to every question"
        return evaluation


def squad_evaluation(predictions: dict[str, str], examples: Any) -> Evaluation:
    """:func:`squad_metrics` of ``predictions`` plus every question's own EM and F1 (0-100) and answer text.

    Each question is scored alone by torchmetrics' functional ``squad`` (the same official v1.1 definitions), so
    the per-example arrays average to the metrics (checked to 1e-6 in the tests).
    """
    from torchmetrics.functional.text import squad

    ids, answers = list(examples["id"]), list(examples["answers"])
    metrics = squad_metrics(predictions, examples)
    em, f1 = np.zeros(len(ids)), np.zeros(len(ids))
    for row, (i, a) in enumerate(zip(ids, answers, strict=True)):
        if i not in predictions:
            continue  # no prediction scores 0, as in squad_metrics
        target = [{"id": i, "answers": {"text": list(a["text"]), "answer_start": list(a["answer_start"])}}]
        scores = squad([{"id": i, "prediction_text": predictions[i]}], target)
        em[row], f1[row] = float(scores["exact_match"]), float(scores["f1"])
    texts = np.asarray([predictions.get(i, "") for i in ids], dtype=str)
    return Evaluation(metrics, {"exact_match": em, "f1": f1}, texts)
