"""The conformance suites every plugin must pass, installed with the package: :func:`check_method` and
:func:`check_task`.

prune-bench's own tests run them over every registered plugin, and an outside author runs them in their own tests
(no pytest needed; a failure raises :class:`ConformanceError`, an ``AssertionError`` naming the plugin and the
property)::

    from bench.testing import check_method, check_task

    check_method(MyMethod)                    # or a registered name: check_method("my_method")
    check_task(MyTask, examples=my_examples)  # GLUE- and SQuAD-shaped tasks need no examples

Both build tiny random BERT models themselves and touch neither the network nor the Hub cache.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import torch

from bench.testing.support import ConformanceError, _require, quiet, require_plugin_metadata, tiny_bert_config

__all__ = ["ConformanceError", "check_method", "check_task", "tiny_bert_config"]


def _plugin(kind: str, cls: Any) -> Any:
    """``cls`` itself, or the class registered under the name ``cls``."""
    if isinstance(cls, str):
        import bench.core.registry as registry

        return (registry.methods if kind == "method" else registry.tasks).get(cls)
    return cls


class _Checker:
    """Runs named checks of one plugin, turning any failure into a :class:`ConformanceError`."""

    def __init__(self, kind: str, cls: Any):
        self.label = f"{kind} {getattr(cls, 'name', '?')!r} ({cls.__module__}.{cls.__qualname__})"
        self.passed: list[str] = []

    def __call__(self, prop: str, check: Callable[[], Any]) -> Any:
        try:
            result = check()
        except ConformanceError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of the plugin is a failed property
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ConformanceError(f"{self.label}: {prop}: {type(err).__name__}: {detail}") from err
        self.passed.append(prop)
        return result


# ---- methods --------------------------------------------------------------------------------------------------
def check_method(cls: Any, *, sparsity: float = 0.7, steps: int = 12) -> list[str]:
    """Check a :class:`bench.PruningMethod` subclass (or a registered method name) on a tiny random BERT.

    Properties: its metadata (one-line description, docstring, ``defaults``, flags); ``search_space`` samples only
    known hyperparameters that the constructor accepts; ``prepare`` attaches a mask parametrization to every prunable
    weight and keeps a plain forward working; after ``steps`` training steps that call the hooks in the Trainer's
    order, ``finalize`` reaches the target within 0.5 percentage points (0 for ``prunes = False``), restores the
    parameter names, leaves no parametrization, adds zeros only in the prunable set, keeps the kept weights of a
    frozen-weight method bit-identical; a save/load round trip keeps every zero; the same seed gives the same model.

    Returns:
        The names of the properties checked.

    Raises:
        ConformanceError: the first property that fails, naming the method and the property.
    """
    cls = _plugin("method", cls)
    check = _Checker("method", cls)
    with quiet(), torch.random.fork_rng(devices=[]):
        _run_method_checks(check, cls, sparsity, steps)
    return check.passed


def _run_method_checks(check: _Checker, cls: Any, sparsity: float, steps: int) -> None:
    target = sparsity if getattr(cls, "prunes", True) else 0.0
    check("metadata", lambda: _method_metadata(cls))
    check("search_space", lambda: _search_space(cls))
    model, method, original = check("prepare", lambda: _prepared(cls, target))
    check("training hooks", lambda: _train(model, method, steps))
    check("finalize", lambda: method.finalize(model))
    check("sparsity hits the target", lambda: _hits_target(model, target))
    check("only the prunable set is pruned", lambda: _only_prunable(model, original))
    if not cls.trains_weights:
        check("frozen weights stay bit-identical", lambda: _frozen(model, original))
    check("save/load keeps the zeros", lambda: _round_trip(model))
    check("same seed, same model", lambda: _deterministic(cls, target, steps, model))


def _method_metadata(cls: Any) -> None:
    from bench.core.method import PruningMethod

    require_plugin_metadata(cls, PruningMethod, "bench.PruningMethod")
    _require(bool((cls.__doc__ or "").strip()), "needs a docstring (the paper, its equations and departures)")
    _require(isinstance(cls.defaults, Mapping), "defaults must be a mapping of hyperparameters")
    _require(all(isinstance(getattr(cls, flag), bool) for flag in ("trains_weights", "prunes")),
             "trains_weights and prunes must be booleans")  # fmt: skip
    ramp = cls.min_ramp_steps
    _require(isinstance(ramp, int) and not isinstance(ramp, bool) and ramp >= 0, "min_ramp_steps must be an int >= 0")


def _search_space(cls: Any) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = cls.search_space(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask())
    _require(isinstance(space, dict), f"search_space must return a dict, got {type(space).__name__}")
    unknown = sorted(set(space) - set(cls.defaults))
    _require(not unknown, f"search_space samples {unknown}, which are not in defaults")
    _make(cls, 0.5, **space)


def _make(cls: Any, sparsity: float, **hparams: Any) -> Any:
    """An instance, with the cell's seed where the constructor takes one."""
    if "seed" in inspect.signature(cls).parameters:
        hparams["seed"] = 0
    return cls(sparsity, **hparams)


def _tiny_classifier():
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config()).eval()


def _prepared(cls: Any, target: float) -> tuple[Any, Any, dict[str, torch.Tensor]]:
    from bench.core.prunable import prunable_weights

    model = _tiny_classifier()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    method = _make(cls, target)
    method.prepare(model)
    if cls.prunes:
        _require(bool(method.masks), "a pruning method must attach masks in prepare()")
        bare = [pw.name for pw in prunable_weights(model)
                if not torch.nn.utils.parametrize.is_parametrized(pw.module, "weight")]  # fmt: skip
        _require(not bare, f"prepare() left prunable weights without a parametrization: {bare[:3]}")
    logits = model(input_ids=torch.tensor([[101, 2023, 102]])).logits  # a plain forward, no extra arguments
    _require(tuple(logits.shape) == (1, 3), f"the forward pass changed: logits of shape {tuple(logits.shape)}")
    return model, method, original


def _train(model: Any, method: Any, steps: int) -> None:
    """A plain loop that calls the hooks in the order bench's PruningTrainer does."""
    own = {id(p) for group in method.param_groups() for p in group["params"]}
    if not method.trains_weights:
        for p in model.bert.parameters():
            if id(p) not in own:
                p.requires_grad_(False)
    base = [p for p in model.parameters() if p.requires_grad and id(p) not in own]
    optimizer = torch.optim.AdamW([{"params": base}, *method.param_groups()], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    method.step(0, steps, 1e-3)
    for step in range(1, steps + 1):
        input_ids = torch.randint(0, 30522, (4, 16), generator=generator)
        labels = torch.randint(0, 3, (4,), generator=generator)
        loss = model(input_ids=input_ids, labels=labels).loss
        regularization = method.regularization_loss()
        if regularization is not None:
            _require(regularization.dim() == 0, "regularization_loss() must be a scalar")
            loss = loss + regularization
        _require(bool(torch.isfinite(loss.detach())), f"the loss became {float(loss.detach())} at step {step}")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        method.step(step, steps, 1e-3)
    model.eval()


def _hits_target(model: Any, target: float) -> None:
    from bench.core.sparsity import measure_sparsity

    report = measure_sparsity(model)
    _require(abs(report.encoder_sparsity - target) <= 0.005,
             f"measured sparsity {report.encoder_sparsity:.4f}, target {target}")  # fmt: skip
    _require(report.remaining_params == report.total_params - report.prunable_zeros, "inconsistent parameter count")


def _only_prunable(model: Any, original: dict[str, torch.Tensor]) -> None:
    from bench.core.prunable import prunable_weights

    after = dict(model.named_parameters())
    _require(set(after) == set(original), "finalize() must restore the original parameter names")
    left = [n for n, _ in model.named_modules() if ".parametrizations." in n or n.endswith(".parametrizations")]
    _require(not left, f"finalize() left parametrizations: {left[:3]}")
    prunable = {f"{pw.name}.weight" for pw in prunable_weights(model)}
    gained = [n for n, p in after.items() if n not in prunable and int((p == 0).sum()) > int((original[n] == 0).sum())]
    _require(not gained, f"{gained[:3]} gained zeros but are not prunable")


def _frozen(model: Any, original: dict[str, torch.Tensor]) -> None:
    from bench.core.prunable import prunable_weights

    for pw in prunable_weights(model):
        weight = pw.module.weight
        kept = weight != 0
        _require(torch.equal(weight[kept], original[f"{pw.name}.weight"][kept]), f"{pw.name}: kept weights changed")


def _round_trip(model: Any) -> None:
    from transformers import BertForSequenceClassification

    from bench.core.sparsity import measure_sparsity

    with tempfile.TemporaryDirectory(prefix="bench-conformance-") as folder:
        model.save_pretrained(folder)
        loaded = BertForSequenceClassification.from_pretrained(folder)
    saved, reloaded = dict(model.named_parameters()), dict(loaded.named_parameters())
    _require(set(saved) == set(reloaded), "the reloaded model has other parameters")
    changed = [key for key, param in saved.items() if not torch.equal(param, reloaded[key])]
    _require(not changed, f"{changed[:3]} changed in a save/load round trip")
    _require(measure_sparsity(loaded) == measure_sparsity(model), "the reloaded model has another sparsity")


def _deterministic(cls: Any, target: float, steps: int, first: Any) -> None:
    model, method, _ = _prepared(cls, target)
    _train(model, method, steps)
    method.finalize(model)
    again = dict(model.named_parameters())
    differ = [n for n, p in first.named_parameters() if not torch.equal(p, again[n])]
    _require(not differ, f"two runs with the same seed differ in {differ[:3]}")


# ---- tasks ------------------------------------------------------------------------------------------------------
def check_task(cls: Any, examples: Any = None, *, max_length: int = 64, doc_stride: int = 16) -> list[str]:
    """Check a :class:`bench.Task` subclass (or a registered task name) offline, on a few examples.

    Properties: its metadata (one-line description, head, metrics with the primary one); the constructor takes split
    overrides and refuses a bad ``dev_fraction``; ``describe()`` is JSON with the task's name and splits (it enters
    cell ids); ``build_model`` puts the task's head on a tiny random BERT saved to a temporary folder and
    ``check_model`` accepts it; ``featurize`` gives model inputs of at most ``max_length`` tokens, with the head's
    labels when ``train``, on which the model's loss is finite; ``evaluate`` (and ``evaluate_per_example``) return
    every metric as a finite number, with per-example values whose mean is the metric; ``trivial_baseline`` is None
    or scores the task's metrics.

    Args:
        examples: raw eval examples in the task's dataset format (a ``datasets.Dataset`` or a dict of columns, a few
            rows). None makes synthetic ones for GLUE-shaped tasks (``text_keys`` and ``num_labels``) and SQuAD-shaped
            ones (question answering with ``id``/``question``/``context``/``answers``); other tasks must pass them.

    Returns:
        The names of the properties checked.

    Raises:
        ConformanceError: the first property that fails, naming the task and the property.
    """
    from bench.testing.tasks import run_task_checks

    cls = _plugin("task", cls)
    check = _Checker("task", cls)
    run_task_checks(check, cls, examples, max_length, doc_stride)
    return check.passed
