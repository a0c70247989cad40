"""Latency where people deploy: the dense and the compacted model exported to ONNX and timed in ONNX Runtime.

Optional: needs the extra ``pip install 'prune-bench[onnx]'`` (onnx, onnxruntime, onnxscript). Without it,
:func:`missing` names what is absent and callers record ``{"skipped": reason}`` instead of failing.

* **Export** (:func:`export_onnx`): ``torch.onnx.export(..., dynamo=True)``, the ``torch.export``-based exporter
  (it needs onnxscript), with dynamic batch and sequence axes on ``input_ids``, ``attention_mask`` and, when the
  model's ``forward`` takes it, ``token_type_ids``; the outputs are the model output's tensors (``logits``;
  ``start_logits``, ``end_logits`` for QA). Not the TorchScript exporter: on transformers 5 it traces the attention
  mask's shape arithmetic into constants, so the graph is wrong (|diff| ~1e-2) at any other batch or length than the
  traced one. A compacted model exports as it is: its Linears simply have fewer rows or columns.
* **Parity** (:func:`max_abs_diff`): ONNX Runtime outputs against PyTorch on a seeded batch with a padded row;
  :data:`PARITY_TOLERANCE` (1e-4, absolute, on the logits) is what exports are held to.
* **Sessions** (:func:`open_session`): the CPU execution provider, graph optimization ``ORT_ENABLE_ALL`` (ONNX
  Runtime's default, and what a deployment uses: constant folding, fused attention/GELU/LayerNorm kernels),
  ``intra_op_num_threads = torch.get_num_threads()`` so that ONNX Runtime and the PyTorch timings use the same
  number of cores, one inter-op thread, and thread spinning off: the sessions are timed interleaved, and a pool
  that spins after its run would steal cores from the session timed next.
* **Timing** (:func:`onnx_report`): dense ONNX against compacted ONNX in one process, interleaved, with the same
  loop, input and statistics as the PyTorch timings (:func:`bench.deploy.speed.measure_callables`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.deploy import speed

PARITY_TOLERANCE = 1e-4
INSTALL = "pip install 'prune-bench[onnx]'"
EXPORTER = "torch.onnx.export(dynamo=True)"
_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
MIN_TORCH = (2, 6)  # torch.onnx.export(dynamo=True, dynamic_shapes=..., external_data=...) and ONNXProgram.save


def missing() -> str | None:
    """Why the ONNX path cannot run here (``"onnxruntime is not installed (pip install 'prune-bench[onnx]')"``),
    or None when it can."""
    absent = [name for name in _PACKAGES if importlib.util.find_spec(name) is None]
    if absent:
        return f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not installed ({INSTALL})"
    for name in _PACKAGES:  # installed, but a broken install (a missing shared library) fails only on import
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - any import failure means: not usable here
            return f"{name} is installed but cannot be imported: {type(err).__name__}: {err} (reinstall: {INSTALL})"
    if tuple(int(part) for part in torch.__version__.split(".")[:2]) < MIN_TORCH:
        return f"torch {torch.__version__} predates the dynamo ONNX exporter this uses (torch >= 2.6)"
    return None


def input_names(model: nn.Module) -> list[str]:
    """The inputs the graph takes: input_ids, attention_mask, and token_type_ids when ``forward`` names it."""
    names = ["input_ids", "attention_mask"]
    return [*names, "token_type_ids"] if speed.takes_token_type_ids(model) else names


class _Outputs(nn.Module):
    """``model`` called with named inputs, returning the tensors of its output (a ModelOutput) as a tuple."""

    def __init__(self, model: nn.Module, names: list[str], outputs: list[str]):
        super().__init__()
        self.model, self.names, self.outputs = model, names, outputs

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.names, inputs, strict=True)))
        return tuple(out[name] for name in self.outputs)


def sample_inputs(model: nn.Module, batch: int = 2, seq_length: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded batch for the model's inputs; the first row has its last quarter padded (attention mask 0)."""
    vocab = min(int(getattr(model.config, "vocab_size", 1000)), 1000)
    inputs = speed.draw_inputs(vocab, batch, seq_length, seed)
    inputs["attention_mask"][0, seq_length - seq_length // 4 :] = 0
    return {name: inputs[name] for name in input_names(model)}


def _torch_outputs(model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        out = model(**inputs)
    return {name: value for name, value in out.items() if isinstance(value, torch.Tensor)}


def export_onnx(model: nn.Module, path: Path) -> dict[str, Any]:
    """Write ``model`` (eval mode; dense or compacted) to ``path`` as ONNX with dynamic batch and sequence axes.

    Returns:
        ``{"opset": int, "bytes": file size, "inputs": [names], "outputs": [names]}``.
    """
    model = model.eval()
    names = input_names(model)
    example = sample_inputs(model)
    outputs = list(_torch_outputs(model, example))
    axes = (tuple({0: "batch", 1: "sequence"} for _ in names),)  # one entry: forward's *inputs tuple
    path = Path(path)
    quiet = logging.getLogger("torch.onnx")  # its registry logs "torchvision is not installed" once per export
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on unused axis names, deprecations in its stack
            program = torch.onnx.export(
                _Outputs(model, names, outputs), tuple(example[n] for n in names), dynamo=True, verbose=False,
                input_names=names, output_names=outputs, dynamic_shapes=axes, report=False, external_data=False,
            )  # fmt: skip
    finally:
        quiet.setLevel(level)
    program.save(str(path), external_data=False)
    opset = program.model.opset_imports.get("", None)
    return {"opset": opset, "bytes": path.stat().st_size, "inputs": names, "outputs": outputs}


def open_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session of ``path`` with the options of the module docstring."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _feed(session, inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
    return {i.name: inputs[i.name].numpy() for i in session.get_inputs()}


def max_abs_diff(model: nn.Module, session, inputs: dict[str, torch.Tensor] | None = None) -> float:
    """Largest absolute difference between the session's outputs and the PyTorch ``model``'s on ``inputs``
    (default :func:`sample_inputs`), over every output tensor."""
    inputs = sample_inputs(model) if inputs is None else inputs
    expected = _torch_outputs(model.eval(), inputs)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, _feed(session, inputs)), strict=True))
    return max(float((torch.from_numpy(got[name]) - expected[name]).abs().max()) for name in names)


def onnx_report(models: dict[str, nn.Module], vocab_size: int, reference: str = "dense", **timing) -> dict[str, Any]:
    """Export every model to ONNX, check parity, and time the ONNX Runtime sessions interleaved.

    Args:
        models: {name: PyTorch model}, e.g. ``{"dense": ..., "compacted": ...}``.
        vocab_size: token ids of the timing input are drawn from [0, vocab_size).
        reference: the name the speed-ups are relative to.
        timing: ``batch_sizes``, ``seq_length``, ``runs``, ``warmup``, ``seed`` of
            :func:`bench.deploy.speed.measure_callables` (defaults: batch 1 and 32, 128 tokens, 20 runs).

    Returns:
        ``{"latency_ms": {"batch_<b>": {name: {median_ms, iqr_ms, q1_ms, q3_ms, runs}}}, "speed_up": {"batch_<b>":
        {name: reference median / name median}}, "parity_max_abs_diff": {name: float}, "parity_passed": bool,
        "tolerance", "opset", "onnx_bytes": {name: int}, "exporter", "runtime": "onnxruntime <version>",
        "graph_optimization": "ORT_ENABLE_ALL", "threads"}``; or ``{"skipped": reason}`` without the extra.
    """
    reason = missing()
    if reason is not None:
        return {"skipped": reason}
    sessions, diffs, files, opsets = {}, {}, {}, set()
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for name, model in models.items():
            info = export_onnx(model, Path(tmp) / f"{name}.onnx")
            opsets.add(info["opset"])
            files[name] = info["bytes"]
            sessions[name] = open_session(Path(tmp) / f"{name}.onnx")
            diffs[name] = max_abs_diff(model, sessions[name])

    def run(session):
        def prepare(inputs):
            feed = _feed(session, inputs)  # numpy views of the shared input, made before the clock starts
            return lambda: session.run(None, feed)

        return prepare

    latency = speed.measure_callables({name: run(s) for name, s in sessions.items()}, vocab_size, **timing)
    import onnxruntime as ort

    return {
        "latency_ms": latency,
        "speed_up": speed.speed_ups(latency, reference=reference),
        "parity_max_abs_diff": diffs,
        "parity_passed": all(diff <= PARITY_TOLERANCE for diff in diffs.values()),
        "tolerance": PARITY_TOLERANCE,
        "opset": opsets.pop() if len(opsets) == 1 else sorted(opsets),
        "onnx_bytes": files,
        "exporter": EXPORTER,
        "runtime": f"onnxruntime {ort.__version__}",
        "graph_optimization": "ORT_ENABLE_ALL",
        "threads": torch.get_num_threads(),
    }
