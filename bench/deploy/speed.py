"""Measured CPU inference latency of models of one architecture, and a torch sparse-CSR inference path.

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

Why time at all instead of assuming that sparser is faster: Sanh, Wolf & Rush (2020), "Movement Pruning:
Adaptive Sparsity by Fine-Tuning", appendix A.3, report no inference speed-up from unstructured sparsity with
standard PyTorch. A masked (finalized) model keeps dense weight matrices that merely hold zeros, so it is timed
against the dense model rather than credited with a speed-up; :func:`sparse_csr_copy` gives the same model with
its sparse matrices stored as torch sparse CSR tensors, so that what a sparse kernel buys on this machine is
measured too. Structurally compacted copies (fewer heads, narrower FFN) can be timed alongside.
"""

from __future__ import annotations

import copy
import gc
import inspect
import statistics
import time
import warnings
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from bench.core.prunable import prunable_weights

SEQ_LENGTH = 128
BATCH_SIZES = (1, 32)
RUNS = 20  # timed runs per model and batch size (the issue demands at least 20)
WARMUP = 3


class CSRLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` a ``torch.sparse_csr`` tensor of shape (out_features, in_features).

    Input (..., in_features) -> output (..., out_features), the same function as the ``nn.Linear`` it was made
    from. Inference only: ``weight`` and ``bias`` are buffers, not parameters.

    Formulation: ``torch.addmm(bias[:, None], W, x2d.T).T`` (sparse CSR times dense, bias fused), with ``x2d`` the
    input flattened to (rows, in_features). Of the formulations measured (2-core CPU, torch 2.13 with MKL; weights
    384x1536, 1536x384 and 384x384 at 90/97/99 % zeros; 128 and 4096 rows; per layer and in a whole 6-layer BERT) it
    was the fastest in nearly every case. Slower: ``torch.sparse.mm(W, x2d.T).T + b`` and ``(W @ x2d.T).T + b``
    (3-80 %); making the result contiguous (up to 3.5x at 4096 rows); ``torch.addmm(b, x2d, W_T)`` with ``W_T`` the
    CSR transpose (6-11x at 128 rows; it won only for a 1536-wide row-major input of 4096 rows at >= 97 %
    zeros). ``F.linear(x, W, b)`` and ``torch.addmm(b, x2d, W.t())`` fail under ``torch.inference_mode()`` unless
    ``W`` is itself an inference tensor ("Cannot set version_counter for inference tensor"), and were 2-4x slower
    where they ran.

    Layout: the output is a transposed (column-major) view of the (out_features, rows) product: equal values, other
    strides; ``reshape``/``view`` as BERT's layers use them work on it, ``.contiguous()`` gives a row-major copy. A
    row-major input is copied to (in_features, rows) first, and on the machine above that transposing copy was
    most of the cost at 4096 rows; a column-major input (the output of another CSRLinear, also after an
    elementwise op such as GELU) needs no copy.

    Whether this beats the dense ``nn.Linear`` depends on sparsity, rows and input layout. Measured on the machine
    above (median speed-up over ``nn.Linear``): 384->1536 with row-major input, 128 rows: 1.3x / 2.2x / 2.3x at
    90 / 97 / 99 % zeros; 4096 rows: 0.96x / 2.2x / 2.6x. 1536->384, 4096 rows: 0.4x / 0.7x / 0.9x with row-major
    input, 0.6x / 3.8x / 7x with column-major input. A whole 6-layer BERT (hidden 384, FFN 1536, sequence 128),
    all prunable layers CSR: batch 1: 1.1x / 1.4x / 1.6x; batch 32: 0.6x / 0.95x / 0.99x.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        """
        Args:
            weight: (out_features, in_features), dense or sparse CSR; stored as a sparse CSR copy.
            bias: (out_features,) or None.

        Raises:
            ValueError: ``weight`` is not 2-D, or ``bias`` is not of shape (out_features,).
        """
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
        out_features, in_features = weight.shape
        if bias is not None and tuple(bias.shape) != (out_features,):
            raise ValueError(f"bias must have shape ({out_features},), got {tuple(bias.shape)}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        weight = weight.detach()
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state", once per process
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
            csr = weight.clone() if weight.layout == torch.sparse_csr else weight.to_sparse_csr()
        self.register_buffer("weight", csr)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> CSRLinear:
        """A CSRLinear computing ``linear``'s function; ``linear`` is not changed and shares no memory with it.

        A parametrized ``linear`` (e.g. a mask from ``bench.core.masking``) contributes its effective (masked) weight.

        Raises:
            ValueError: ``linear`` is not an ``nn.Linear``.
        """
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        return cls(linear.weight, linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_features) -> (..., out_features).

        Raises:
            ValueError: the last dimension of ``x`` is not ``in_features``.
        """
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"CSRLinear expects input (..., {self.in_features}), got shape {tuple(x.shape)}")
        x2d = x.reshape(-1, self.in_features)
        if self.bias is None:
            y = torch.sparse.mm(self.weight, x2d.t()).t()
        else:
            y = torch.addmm(self.bias.unsqueeze(1), self.weight, x2d.t()).t()
        return y.reshape(*x.shape[:-1], self.out_features)

    def __deepcopy__(self, memo: dict) -> CSRLinear:
        """An independent copy (``copy.deepcopy`` of a sparse CSR tensor is not supported by torch); hooks are not
        copied."""
        clone = type(self)(self.weight, self.bias)
        clone.train(self.training)
        memo[id(self)] = clone
        return clone

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        density = nnz / max(self.in_features * self.out_features, 1)
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"density={density:.4f}"
        )


def sparse_csr_copy(model: nn.Module, min_sparsity: float = 0.0) -> nn.Module:
    """A deep copy of ``model``, in eval mode, with its sparse prunable linear layers stored as CSR.

    Every prunable ``nn.Linear`` (``bench.core.prunable.prunable_weights``) whose weight has a fraction of exact zeros
    >= ``min_sparsity`` is replaced by a :class:`CSRLinear` computing the same function; the others stay
    ``nn.Linear``. ``model`` itself is not changed (its training flag included).

    Raises:
        ValueError: ``min_sparsity`` is not a number in [0, 1].
        bench.core.errors.BenchError: unknown architecture, or no prunable nn.Linear found (e.g. all are CSR already).
    """
    if isinstance(min_sparsity, bool) or not isinstance(min_sparsity, (int, float)) or not 0 <= min_sparsity <= 1:
        raise ValueError(f"min_sparsity must be a number in [0, 1], got {min_sparsity!r}")
    clone = copy.deepcopy(model).eval()
    for pw in prunable_weights(clone):
        with torch.no_grad():
            weight = pw.module.weight
            sparsity = (weight == 0).sum().item() / max(weight.numel(), 1)
        if sparsity < min_sparsity:
            continue
        parent_name, _, attr = pw.name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, attr, CSRLinear.from_linear(pw.module))
    return clone


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


def _takes_token_type_ids(model: nn.Module) -> bool:
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
    _check_int("runs", runs, 1)
    _check_int("warmup", warmup, 0)
    _check_int("vocab_size", vocab_size, 1)
    _check_int("seq_length", seq_length, 1)
    _check_int("seed", seed, 0)
    sizes = _check_batch_sizes(batch_sizes)
    _check_models(models, vocab_size, seq_length)

    names = list(models)
    token_types = {name: _takes_token_type_ids(models[name]) for name in names}
    training = {name: [(module, module.training) for module in models[name].modules()] for name in names}
    result: dict[str, dict[str, dict[str, float]]] = {}
    gc_was_enabled = gc.isenabled()
    try:
        for model in models.values():
            model.eval()
        for batch in sizes:
            generator = torch.Generator().manual_seed(seed)
            input_ids = torch.randint(0, vocab_size, (batch, seq_length), generator=generator, dtype=torch.long)
            inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
            with_types = {**inputs, "token_type_ids": torch.zeros_like(input_ids)}
            times: dict[str, list[float]] = {name: [] for name in names}
            gc.collect()
            gc.disable()
            with torch.inference_mode():
                for step in range(warmup + runs):
                    shift = step % len(names)
                    for name in names[shift:] + names[:shift]:
                        kwargs = with_types if token_types[name] else inputs
                        start = time.perf_counter()
                        models[name](**kwargs)
                        elapsed_ms = (time.perf_counter() - start) * 1e3
                        if step >= warmup:
                            times[name].append(elapsed_ms)
            if gc_was_enabled:
                gc.enable()
            result[f"batch_{batch}"] = {name: _summary(times[name]) for name in names}
    finally:
        if gc_was_enabled:
            gc.enable()
        for states in training.values():
            for module, flag in states:
                module.training = flag
    return result


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
