"""The task conformance suite behind :func:`bench.testing.check_task`: offline, on a few synthetic (or given) eval
examples, a tokenizer made from a small vocabulary and a tiny random BERT saved to a temporary folder."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.testing.support import _require, quiet, require_plugin_metadata, tiny_bert_config

WORDS = ("the a cat dog sat ran on in mat park film was good bad very not it who what where did").split()
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def run_task_checks(check: Any, cls: Any, examples: Any, max_length: int, doc_stride: int) -> None:
    """Every task property, in order; ``check`` (a ``bench.testing._Checker``) names the one that fails."""
    from bench.core.task import Featurization

    task = check("metadata", lambda: _task_metadata(cls))
    check("describe", lambda: _describe(cls))
    examples = check("examples", lambda: _examples(task, examples))
    feats = Featurization(max_length=max_length, doc_stride=doc_stride)
    with quiet(), tempfile.TemporaryDirectory(prefix="bench-conformance-") as folder:
        tokenizer = _save_tiny_model(Path(folder))
        model = check("build_model", lambda: _build_model(task, folder))
        check("featurize", lambda: _featurize(task, model, examples, tokenizer, feats))
        check("evaluate", lambda: _evaluate(task, model, examples, tokenizer, feats, Path(folder) / "trainer"))
    check("trivial_baseline", lambda: _baseline(task, examples))


def _task_metadata(cls: Any) -> Any:
    from bench.core.errors import BenchError
    from bench.core.task import HEADS, Task

    require_plugin_metadata(cls, Task, "bench.Task")
    _require(getattr(cls, "head", None) in HEADS, f"head must be one of {HEADS}, got {getattr(cls, 'head', None)!r}")
    metrics = getattr(cls, "metrics", ())
    _require(isinstance(metrics, tuple) and len(metrics) > 0 and all(isinstance(m, str) for m in metrics),
             "metrics must be a non-empty tuple of names")  # fmt: skip
    _require(cls.primary_metric in metrics, f"primary_metric {cls.primary_metric!r} is not in metrics {metrics}")
    _require(isinstance(cls.greater_is_better, bool), "greater_is_better must be a boolean")
    tolerances = dict(cls.regression_tolerances)
    _require(set(tolerances) <= set(metrics), f"regression_tolerances names metrics the task does not report: "
             f"{sorted(set(tolerances) - set(metrics))}")  # fmt: skip
    _require(all(isinstance(v, (int, float)) and v >= 0 for v in tolerances.values()),
             f"regression_tolerances must be non-negative numbers, got {tolerances}")  # fmt: skip
    _require(cls.evaluate is not Task.evaluate or cls.evaluate_per_example is not Task.evaluate_per_example,
             "implement evaluate or evaluate_per_example")  # fmt: skip
    try:
        cls(dev_fraction=1.0)
    except BenchError:
        pass
    else:
        raise AssertionError("dev_fraction=1.0 must be refused with a BenchError")
    return cls()


def _describe(cls: Any) -> None:
    described = cls(train_split="train[:4]", eval_split="validation[:2]").describe()
    _require(isinstance(described, dict), "describe() must return a dict")
    text = json.dumps(described, sort_keys=True)  # it enters the cell id
    _require(described.get("name") == cls.name, f"describe()['name'] must be {cls.name!r}")
    _require("train[:4]" in text and "validation[:2]" in text, "describe() must hold the train and eval splits")


# ---- data -----------------------------------------------------------------------------------------------------------
def _examples(task: Any, examples: Any) -> Any:
    import datasets

    if examples is None:
        examples = synthetic_examples(task)
    if isinstance(examples, dict):
        examples = datasets.Dataset.from_dict(examples)
    _require(isinstance(examples, datasets.Dataset) and len(examples) > 0, "examples must be a non-empty Dataset")
    return examples


def synthetic_examples(task: Any, n: int = 8) -> dict[str, list]:
    """``n`` made-up eval examples in the format of a GLUE-shaped task (``text_keys``, ``label``) or of a SQuAD-shaped
    one (``id``, ``title``, ``context``, ``question``, ``answers``).

    Raises:
        AssertionError: another format; such a task passes its own ``examples`` to ``check_task``.
    """
    rng = np.random.default_rng(0)

    def sentence(k: int) -> str:
        return " ".join(rng.choice(WORDS, size=4 + k % 5))

    if task.head == "sequence-classification" and hasattr(task, "text_keys") and hasattr(task, "num_labels"):
        columns = {key: [sentence(i) for i in range(n)] for key in task.text_keys}
        return {**columns, "label": [i % task.num_labels for i in range(n)], "idx": list(range(n))}
    if task.head == "question-answering":
        contexts = [f"{sentence(i)} the cat sat on the mat {sentence(i + 1)}" for i in range(n)]
        starts = [c.index("the cat sat") for c in contexts]
        return {"id": [f"q{i}" for i in range(n)], "title": ["t"] * n, "context": contexts,
                "question": [f"where did the cat {WORDS[i % 5]} sit" for i in range(n)],
                "answers": [{"text": ["the cat sat"], "answer_start": [s]} for s in starts]}  # fmt: skip
    raise AssertionError(
        "cannot make synthetic examples for this task's format: pass examples= (a few rows of its eval split, as a "
        "datasets.Dataset or a dict of columns)"
    )


def _save_tiny_model(folder: Path) -> Any:
    """A WordPiece tokenizer over :data:`WORDS` plus single characters and a tiny random BERT, saved in ``folder``."""
    import torch
    from transformers import BertModel, BertTokenizer

    vocab = [*SPECIALS, *WORDS, *LETTERS, *(f"##{c}" for c in LETTERS)]
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)})
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(tiny_bert_config(vocab_size=len(vocab), num_labels=2)).save_pretrained(folder)  # as an encoder has
    return tokenizer


def _build_model(task: Any, folder: str) -> Any:
    from transformers import AutoConfig, PreTrainedModel
    from transformers.models.auto import modeling_auto

    from bench.core.task import HEAD_CLASSES

    task.check_model(folder, AutoConfig.from_pretrained(folder))
    model = task.build_model(folder)
    _require(isinstance(model, PreTrainedModel), f"build_model must return a transformers model, got {type(model)}")
    expected = getattr(modeling_auto, HEAD_CLASSES[task.head][1]).get("bert")
    _require(type(model).__name__ == expected, f"build_model gave a {type(model).__name__}, not a {expected}")
    return model.eval()


def _featurize(task: Any, model: Any, examples: Any, tokenizer: Any, feats: Any) -> None:
    import datasets
    import torch
    from transformers import DataCollatorWithPadding

    labels = {"sequence-classification": {"labels"}, "question-answering": {"start_positions", "end_positions"}}
    for train in (True, False):
        features = task.featurize(examples, tokenizer, feats, train=train)
        _require(isinstance(features, datasets.Dataset) and len(features) > 0,
                 f"featurize(train={train}) must return a non-empty datasets.Dataset")  # fmt: skip
        _require("input_ids" in features.column_names, f"featurize(train={train}) gave no input_ids")
        longest = max(len(ids) for ids in features["input_ids"])
        _require(longest <= feats.max_length, f"a feature has {longest} tokens, more than max_length")
        if train:
            missing = labels[task.head] - set(features.column_names)
            _require(not missing, f"train features lack {sorted(missing)}")
            keep = [c for c in features.column_names if c in {"input_ids", "token_type_ids", "attention_mask"}
                    | labels[task.head]]  # fmt: skip
            batch = DataCollatorWithPadding(tokenizer)([features.select_columns(keep)[i] for i in range(2)])
            with torch.no_grad():
                loss = model(**batch).loss
            _require(loss is not None and bool(torch.isfinite(loss)), f"the model's loss on train features is {loss}")


def _evaluate(task: Any, model: Any, examples: Any, tokenizer: Any, feats: Any, workdir: Path) -> None:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(workdir), report_to="none", use_cpu=True, per_device_eval_batch_size=4,
                             disable_tqdm=True, save_strategy="no")  # fmt: skip
    trainer = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer)  # fmt: skip
    metrics = task.evaluate(trainer, examples, tokenizer, feats)
    names = sorted(metrics) if isinstance(metrics, dict) else metrics
    _require(isinstance(metrics, dict) and set(metrics) == set(task.metrics),
             f"evaluate returned {names!r}, not the task's metrics {task.metrics}")  # fmt: skip
    bad = {k: v for k, v in metrics.items() if not _finite(v)}
    _require(not bad, f"evaluate returned metrics that are not finite numbers: {bad}")
    evaluation = task.evaluate_per_example(trainer, examples, tokenizer, feats)
    _check_evaluation(task, evaluation, len(examples), "evaluate_per_example")
    _require(set(evaluation.metrics) == set(task.metrics), "evaluate_per_example must return every metric")
    differ = {k for k in metrics if abs(metrics[k] - evaluation.metrics[k]) > 1e-6}
    _require(not differ, f"evaluate and evaluate_per_example disagree on {sorted(differ)}")


def _baseline(task: Any, examples: Any) -> None:
    baseline = task.trivial_baseline(examples)
    if baseline is None:
        return
    _check_evaluation(task, baseline, len(examples), "trivial_baseline")
    _require(task.primary_metric in baseline.metrics, "trivial_baseline must score the primary metric")
    _require(bool(baseline.description), "trivial_baseline must say what it predicts (description)")


def _check_evaluation(task: Any, evaluation: Any, n: int, where: str) -> None:
    from bench.core.task import Evaluation

    _require(isinstance(evaluation, Evaluation), f"{where} must return a bench.core.task.Evaluation")
    unknown = set(evaluation.metrics) - set(task.metrics)
    _require(not unknown, f"{where} returned metrics {sorted(unknown)} not in the task's metrics")
    bad = {k: v for k, v in evaluation.metrics.items() if not _finite(v)}
    _require(not bad, f"{where} returned metrics that are not finite numbers: {bad}")
    for metric, values in evaluation.per_example.items():
        values = np.asarray(values, dtype=np.float64)
        _require(values.shape == (n,), f"{where}: per_example[{metric!r}] has shape {values.shape}, not ({n},)")
        _require(math.isclose(float(values.mean()), evaluation.metrics[metric], rel_tol=1e-6, abs_tol=1e-6),
                 f"{where}: the mean of per_example[{metric!r}] is not the metric")  # fmt: skip
    if evaluation.predictions is not None:
        _require(
            len(evaluation.predictions) == n, f"{where}: {len(evaluation.predictions)} predictions for {n} examples"
        )


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
