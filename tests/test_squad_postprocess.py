"""SQuAD post-processing on handmade logits and offsets (no model, no tokenizer)."""

from __future__ import annotations

import numpy as np
import pytest
from bench.tasks.squad import postprocess_predictions

CONTEXT = "The cat sat on the mat."
# A window: [CLS] q q [SEP] The cat sat on the mat . [SEP]; None marks question and special tokens.
OFFSETS = [None, None, None, None, (0, 3), (4, 7), (8, 11), (12, 14), (15, 18), (19, 22), (22, 23), None]
SEQ_LEN = len(OFFSETS)
THE, CAT, SAT, ON, THE2, MAT, DOT = range(4, 11)


def logits(peaks: dict[int, float], seq_len: int = SEQ_LEN, base: float = -100.0) -> np.ndarray:
    """A row of ``base`` logits with ``peaks``; ``base`` is low enough that only peak pairs can win."""
    row = np.full(seq_len, base)
    for index, value in peaks.items():
        row[index] = value
    return row


def predict_one(start: dict[int, float], end: dict[int, float], **kwargs) -> str:
    examples = {"id": ["q1"], "context": [CONTEXT]}
    features = {"example_id": ["q1"], "offset_mapping": [OFFSETS]}
    preds = postprocess_predictions(examples, features, logits(start)[None], logits(end)[None], **kwargs)
    return preds["q1"]


def test_picks_best_valid_span():
    assert predict_one({CAT: 5.0, ON: 1.0}, {SAT: 4.0, MAT: 2.0}) == "cat sat"


def test_single_token_span():
    assert predict_one({MAT: 5.0}, {MAT: 5.0}) == "mat"


def test_rejects_span_longer_than_max_answer_length():
    # Pairs by score: The..mat. (18, 7 tokens), cat..mat. (15, 6), The..sat (11, 3), cat..sat (8, 2).
    start, end = {THE: 9.0, CAT: 6.0}, {DOT: 9.0, SAT: 2.0}
    assert predict_one(start, end, max_answer_length=30) == "The cat sat on the mat."
    assert predict_one(start, end, max_answer_length=7) == "The cat sat on the mat."
    assert predict_one(start, end, max_answer_length=6) == "cat sat on the mat."
    assert predict_one(start, end, max_answer_length=5) == "The cat sat"
    assert predict_one(start, end, max_answer_length=2) == "cat sat"
    assert predict_one(start, end, max_answer_length=1) == "The"  # one token: the highest start wins


def test_rejects_end_before_start():
    # The highest start (the 2nd "the") lies after the highest end ("cat"): that pair (18) is never taken.
    assert predict_one({THE2: 9.0, CAT: 5.0}, {CAT: 9.0, SAT: 1.0}) == "cat"
    # Reversed pairs THE2..cat (18), THE2..on (15), sat..cat (14) all lose to sat..on (11).
    assert predict_one({THE2: 9.0, SAT: 5.0}, {CAT: 9.0, ON: 6.0}) == "sat on"


def test_rejects_question_and_special_tokens():
    start = {0: 20.0, 1: 20.0, 2: 15.0, 11: 20.0, ON: 1.0}
    end = {0: 20.0, 2: 20.0, 3: 15.0, 11: 20.0, MAT: 1.0}
    assert predict_one(start, end) == "on the mat"


def test_no_valid_span_gives_empty_answer():
    # With n_best=1 the only candidates are the question tokens.
    assert predict_one({1: 9.0, CAT: 5.0}, {2: 9.0, SAT: 5.0}, n_best=1) == ""
    assert predict_one({1: 9.0, CAT: 5.0}, {2: 9.0, SAT: 5.0}, n_best=2) == "cat sat"


def test_best_window_wins_across_windows_and_examples():
    contexts = ["Paris is big. London is old.", "Red fox."]
    examples = {"id": ["a", "b"], "context": contexts}
    window_1 = [None, None, (0, 5), (6, 8), (9, 12), (12, 13), None]  # Paris is big .
    window_2 = [None, None, (9, 12), (12, 13), (14, 20), (21, 23), (24, 27), None]  # big . London is old
    window_b = [None, None, (0, 3), (4, 7), None]  # Red fox
    features = {"example_id": ["a", "b", "a"], "offset_mapping": [window_1, window_b, window_2]}
    seq_len = 10  # batch padding beyond every window, filled like the Trainer does (-100), or worse
    start = np.stack(
        [logits({2: 3.0}, seq_len), logits({3: 2.0}, seq_len), logits({4: 4.0, 9: 50.0}, seq_len)]
    )
    end = np.stack([logits({2: 3.0}, seq_len), logits({3: 2.0}, seq_len), logits({6: 4.0, 9: 50.0}, seq_len)])
    preds = postprocess_predictions(examples, features, start, end)
    assert preds == {"a": "London is old", "b": "fox"}
    start[0, 2] = end[0, 2] = 5.0  # now the first window scores 10 > 8
    assert postprocess_predictions(examples, features, start, end)["a"] == "Paris"


def test_example_without_features_gets_empty_answer():
    examples = {"id": ["q1", "q2"], "context": [CONTEXT, "unused"]}
    features = {"example_id": ["q1"], "offset_mapping": [OFFSETS]}
    preds = postprocess_predictions(examples, features, logits({CAT: 1.0})[None], logits({CAT: 1.0})[None])
    assert preds == {"q1": "cat", "q2": ""}


def test_accepts_datasets_with_null_offsets():
    datasets = pytest.importorskip("datasets")
    examples = datasets.Dataset.from_dict({"id": ["q1"], "context": [CONTEXT]})
    features = datasets.Dataset.from_dict({"example_id": ["q1"], "offset_mapping": [OFFSETS]})
    start, end = logits({1: 9.0, CAT: 5.0})[None], logits({2: 9.0, MAT: 5.0})[None]
    assert postprocess_predictions(examples, features, start, end) == {"q1": "cat sat on the mat"}


@pytest.mark.parametrize(
    ("start_shape", "end_shape"),
    [((2, SEQ_LEN), (2, SEQ_LEN)), ((1, SEQ_LEN), (1, SEQ_LEN + 1)), ((SEQ_LEN,), (SEQ_LEN,))],
)
def test_rejects_bad_logit_shapes(start_shape, end_shape):
    examples = {"id": ["q1"], "context": [CONTEXT]}
    features = {"example_id": ["q1"], "offset_mapping": [OFFSETS]}
    with pytest.raises(ValueError, match="logits"):
        postprocess_predictions(examples, features, np.zeros(start_shape), np.zeros(end_shape))


def test_rejects_bad_limits():
    examples = {"id": ["q1"], "context": [CONTEXT]}
    features = {"example_id": ["q1"], "offset_mapping": [OFFSETS]}
    with pytest.raises(ValueError, match="n_best"):
        postprocess_predictions(examples, features, logits({})[None], logits({})[None], n_best=0)
