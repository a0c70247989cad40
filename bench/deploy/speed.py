"""Measured CPU inference latency of models of one architecture, interleaved in one process.

Protocol of :func:`measure_latency`:

* All models are timed in the same process, on the same input, so that they share the machine state (thread
  pool, allocator, CPU frequency, whatever else runs on the host).
* Interleaved: each run times one forward pass of every model, and the order rotates by one model per run, so
  that no model is always first (or always right after a particular other model). Warm-up runs (untimed)
  rotate the same way.
* Input: ``input_ids`` of shape (batch, seq_length) drawn from [0, vocab_size) with a seeded
  ``torch.Generator``, ``attention_mask`` all ones, ``token_type_ids`` all zeros; batch sizes 1 and 32, sequence
  length 128 by default. Forward passes run in ``eval()`` mode under ``torch.inference_mode()``, timed with
  ``time.perf_counter``; the garbage collector is off while timing.
* Reported per batch size and model: the median and the interquartile range (Q1, Q3, IQR = Q3 - Q1) of the
  timed runs, in milliseconds. The median and IQR are robust to the occasional run that a busy host slows down.
* The loop itself is :func:`measure_callables`: it times any zero-argument call on that input, so that ONNX Runtime
  sessions (:mod:`bench.deploy.onnx_runtime`) are timed by the same protocol as PyTorch modules.

Why time at all instead of assuming that sparser is faster: Sanh, Wolf & Rush (2020), "Movement Pruning:
Adaptive Sparsity by Fine-Tuning", appendix A.3, report no inference speed-up from unstructured sparsity with
standard PyTorch. A masked (finalized) model keeps dense weight matrices that merely hold zeros, so it is timed
against the dense model rather than credited with a speed-up; :func:`bench.deploy.sparse_linear.sparse_csr_copy`
gives the same model with its sparse matrices stored as torch sparse CSR tensors, so that what a sparse kernel buys
on this machine is measured too. Structurally compacted copies (fewer heads, narrower FFN) can be timed alongside.
"""

from __future__ import annotations

import gc
import inspect
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial

import torch
from torch import nn

SEQ_LENGTH = 128
BATCH_SIZES = (1, 32)
RUNS = 20  # timed runs per model and batch size (the issue demands at least 20)
WARMUP = 3


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_models(models, vocab_size: int, seq_length: int) -> None:
    if not isinstance(models, Mapping) or not models:
        raise ValueError(f"models must be a non-empty dict of name -> nn.Module, got {models!r}")
    for name, model in models.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"model names must be non-empty strings, got {name!r}")
        if not isinstance(model, nn.Module):
            raise ValueError(f"models[{name!r}] must be an nn.Module, got {type(model).__name__}")
        devices = {t.device.type for t in (*model.parameters(), *model.buffers())}
        if devices - {"cpu"}:
            raise ValueError(f"models[{name!r}] has tensors on {sorted(devices)}: latency is measured on CPU")
        config = getattr(model, "config", None)
        model_vocab = getattr(config, "vocab_size", None)
        if isinstance(model_vocab, int) and vocab_size > model_vocab:
            raise ValueError(f"vocab_size {vocab_size} exceeds models[{name!r}].config.vocab_size {model_vocab}")
        max_positions = getattr(config, "max_position_embeddings", None)
        if isinstance(max_positions, int) and seq_length > max_positions:
            raise ValueError(
                f"seq_length {seq_length} exceeds models[{name!r}].config.max_position_embeddings {max_positions}"
            )


def _check_batch_sizes(batch_sizes) -> tuple[int, ...]:
    if isinstance(batch_sizes, (str, bytes)) or not isinstance(batch_sizes, Iterable):
        raise ValueError(f"batch_sizes must be a sequence of positive integers, got {batch_sizes!r}")
    sizes = tuple(batch_sizes)
    if not sizes:
        raise ValueError(f"batch_sizes must not be empty, got {batch_sizes!r}")
    for size in sizes:
        _check_int("every batch size", size, 1)
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"batch_sizes must not repeat a size, got {batch_sizes!r}")
    return sizes


def takes_token_type_ids(model: nn.Module) -> bool:
    try:
        return "token_type_ids" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _quartile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of an ascending list."""
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _summary(times_ms: list[float]) -> dict[str, float]:
    ordered = sorted(times_ms)
    q1, q3 = _quartile(ordered, 0.25), _quartile(ordered, 0.75)
    return {
        "median_ms": statistics.median(ordered),
        "iqr_ms": q3 - q1,
        "q1_ms": q1,
        "q3_ms": q3,
        "runs": len(ordered),
    }


def draw_inputs(vocab_size: int, batch: int, seq_length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The timing input of one batch size: ``input_ids`` (batch, seq_length) drawn from [0, vocab_size) with a
    ``torch.Generator`` seeded with ``seed``, ``attention_mask`` all ones, ``token_type_ids`` all zeros."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab_size, (batch, seq_length), generator=generator, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "token_type_ids": torch.zeros_like(input_ids)}  # fmt: skip


def measure_callables(
    prepare: Mapping[str, Callable[[dict[str, torch.Tensor]], Callable[[], object]]],
    vocab_size: int,
    batch_sizes=BATCH_SIZES,
    seq_length=SEQ_LENGTH,
    runs=RUNS,
    warmup=WARMUP,
    seed=0,
) -> dict[str, dict[str, dict[str, float]]]:
    """The timing loop of :func:`measure_latency` (the protocol of the module docstring) for any runtime.

    Args:
        prepare: {name: prepare}; per batch size, ``prepare(inputs)`` gets the :func:`draw_inputs` tensors (the same
            ones for every name) and returns the zero-argument call to time, e.g. a model's forward pass on them or
            an ONNX Runtime session's ``run`` on their numpy views. Preparing is not timed.
        vocab_size, batch_sizes, seq_length, runs, warmup, seed: as for :func:`measure_latency`.

    Returns:
        The :func:`measure_latency` result shape, names in the order of ``prepare``.

    Raises:
        ValueError: empty ``prepare``, a name that is not a non-empty string or a value that is not callable, and
            the bad numbers :func:`measure_latency` refuses.
    """
    _check_int("runs", runs, 1)
    _check_int("warmup", warmup, 0)
    _check_int("vocab_size", vocab_size, 1)
    _check_int("seq_length", seq_length, 1)
    _check_int("seed", seed, 0)
    sizes = _check_batch_sizes(batch_sizes)
    if not isinstance(prepare, Mapping) or not prepare:
        raise ValueError(f"prepare must be a non-empty dict of name -> callable, got {prepare!r}")
    for name, value in prepare.items():
        if not isinstance(name, str) or not name or not callable(value):
            raise ValueError(f"prepare[{name!r}] must be a callable under a non-empty string name, got {value!r}")
    names = list(prepare)
    result: dict[str, dict[str, dict[str, float]]] = {}
    gc_was_enabled = gc.isenabled()
    try:
        for batch in sizes:
            inputs = draw_inputs(vocab_size, batch, seq_length, seed)
            calls = {name: prepare[name](inputs) for name in names}
            times: dict[str, list[float]] = {name: [] for name in names}
            gc.collect()
            gc.disable()
            with torch.inference_mode():
                for step in range(warmup + runs):
                    shift = step % len(names)
                    for name in names[shift:] + names[:shift]:
                        start = time.perf_counter()
                        calls[name]()
                        elapsed_ms = (time.perf_counter() - start) * 1e3
                        if step >= warmup:
                            times[name].append(elapsed_ms)
            if gc_was_enabled:
                gc.enable()
            result[f"batch_{batch}"] = {name: _summary(times[name]) for name in names}
    finally:
        if gc_was_enabled:
            gc.enable()
    return result


def measure_latency(
    models: dict[str, nn.Module],
    vocab_size: int,
    batch_sizes=BATCH_SIZES,
    seq_length=SEQ_LENGTH,
    runs=RUNS,
    warmup=WARMUP,
    seed=0,
) -> dict[str, dict[str, dict[str, float]]]:
    """Forward-pass latency of every model, interleaved, on the same random input (see the module docstring).

    Args:
        models: {name: model}; each is called as ``model(input_ids=..., attention_mask=..., token_type_ids=...)``,
            ``token_type_ids`` only when its ``forward`` names that argument (BERT, RoBERTa do; DistilBERT, MPNet
            do not). Models are put in eval mode for the measurement; their training flags are restored after.
        vocab_size: token ids are drawn from [0, vocab_size).
        batch_sizes: batch sizes to time, each in turn; input shape (batch, seq_length).
        seq_length: tokens per sequence.
        runs: timed forward passes per model and batch size.
        warmup: untimed forward passes per model and batch size before the timed ones.
        seed: seed of the ``torch.Generator`` drawing the input ids (the same input for every model; one draw per
            batch size, each from a generator seeded with ``seed``).

    Returns:
        ``{"batch_<b>": {name: {"median_ms", "iqr_ms", "q1_ms", "q3_ms": milliseconds (float), "runs": int}}}``
        for each batch size b, names in the order of ``models``. Quartiles interpolate linearly between ranks;
        ``iqr_ms == q3_ms - q1_ms`` and ``q1_ms <= median_ms <= q3_ms``.

    Raises:
        ValueError: empty or non-dict ``models``, a value that is not an ``nn.Module`` or has tensors off the CPU;
            ``runs`` < 1, ``warmup`` < 0, ``vocab_size``/``seq_length``/a batch size < 1 or not an integer, empty or
            repeated batch sizes; ``vocab_size`` or ``seq_length`` beyond a model's ``config.vocab_size`` or
            ``config.max_position_embeddings``. The message names the bad value.
    """
    _check_int("vocab_size", vocab_size, 1)  # _check_models compares them; measure_callables checks the rest
    _check_int("seq_length", seq_length, 1)
    _check_models(models, vocab_size, seq_length)

    def forward(model: nn.Module) -> Callable[[dict[str, torch.Tensor]], Callable[[], object]]:
        keep = None if takes_token_type_ids(model) else {"input_ids", "attention_mask"}
        return lambda inputs: partial(model, **{k: v for k, v in inputs.items() if keep is None or k in keep})

    training = [(module, module.training) for model in models.values() for module in model.modules()]
    try:
        for model in models.values():
            model.eval()
        prepare = {name: forward(model) for name, model in models.items()}
        return measure_callables(prepare, vocab_size, batch_sizes, seq_length, runs, warmup, seed)
    finally:
        for module, flag in training:
            module.training = flag


def speed_ups(latency: dict, reference: str = "dense") -> dict[str, dict[str, float]]:
    """Median speed-up of every model over ``reference``, per batch size.

    Args:
        latency: a :func:`measure_latency` result.
        reference: the model name to compare against.

    Returns:
        ``{"batch_<b>": {name: reference median_ms / name median_ms}}`` for every name other than ``reference``;
        > 1 means faster than the reference, < 1 slower.

    Raises:
        ValueError: ``latency`` is empty or not shaped like a :func:`measure_latency` result, ``reference`` is
            missing from a batch size, or a median is not positive.
    """
    if not isinstance(latency, Mapping) or not latency:
        raise ValueError(f"latency must be a non-empty measure_latency result, got {latency!r}")
    out: dict[str, dict[str, float]] = {}
    for batch_key, per_model in latency.items():
        if not isinstance(per_model, Mapping):
            raise ValueError(f"latency[{batch_key!r}] must be a dict of name -> statistics, got {per_model!r}")
        if reference not in per_model:
            raise ValueError(
                f"reference {reference!r} not in latency[{batch_key!r}]; models there: {', '.join(map(str, per_model))}"
            )
        medians = {}
        for name, stats in per_model.items():
            median = stats.get("median_ms") if isinstance(stats, Mapping) else None
            if isinstance(median, bool) or not isinstance(median, (int, float)) or not median > 0:
                raise ValueError(f"latency[{batch_key!r}][{name!r}]['median_ms'] must be > 0, got {median!r}")
            medians[name] = float(median)
        out[batch_key] = {name: medians[reference] / m for name, m in medians.items() if name != reference}
    return out
