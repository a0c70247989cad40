"""Synthetic finished records with and without the deployment keys of issue 17 (speed with its latency quartiles,
ONNX Runtime timings or their skip, the encoder's stored and dense bytes), shared by the speed-figure and leaderboard
tests. No model is trained."""

from __future__ import annotations

from typing import Any

BASELINE = {"description": "majority class", "metrics": {"accuracy": 50.0},
            "intervals": {"accuracy": {"low": 46.0, "high": 54.0}}}  # fmt: skip


def latency(median: float, q1: float, q3: float) -> dict[str, float]:
    return {"median_ms": median, "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1, "runs": 20}


def timings(dense: tuple[float, float, float], compacted: tuple[float, float, float]) -> dict[str, Any]:
    """An engine's block: batch-1 latencies (median, q1, q3) of dense and compacted; batch 32 twice as slow."""
    slow = tuple(32 * v for v in compacted)
    return {
        "latency_ms": {"batch_1": {"dense": latency(*dense), "compacted": latency(*compacted)},
                       "batch_32": {"dense": latency(*(32 * v for v in dense)), "compacted": latency(*slow)}},
        "speed_up": {"batch_1": {"compacted": dense[0] / compacted[0]},
                     "batch_32": {"compacted": dense[0] / compacted[0] * 0.9}},
    }  # fmt: skip


def speed(dense=(20.0, 19.0, 22.0), compacted=(10.0, 9.0, 12.5), onnx: Any = None) -> dict[str, Any]:
    """A ``--measure-speed`` block (PyTorch timings; ``onnx``: an ONNX block, ``{"skipped": ...}`` or None)."""
    block = timings(dense, compacted) | {"seq_length": 128, "threads": 2}
    block["speed_up"]["batch_1"] |= {"finalized": 1.0, "sparse_csr": 0.5}
    return block | ({"onnx": onnx} if onnx is not None else {})


def record(method: str, sparsity: float, value: float, seed: int = 0, task: str = "sst2", interval: float = 4.0,
           speed_block: Any = None, encoder: tuple[int, int] | None = None, chance: bool = False,
           granularity: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A finished record; ``encoder``: (stored bytes, dense bytes) of the encoder's matrices in the export."""
    export = {"sparse_bytes": 50_000_000, "dense_bytes": 90_000_000, "file_ratio": 50 / 90,
              "compaction": {"structured_fraction": 0.25}}  # fmt: skip
    if encoder is not None:
        stored, dense = encoder
        export |= {"encoder_bytes": stored, "encoder_dense_bytes": dense, "encoder_ratio": stored / dense}
    hparams = {"granularity": granularity} if granularity else {}
    rec = {
        "id": f"{method}-{granularity}-{task}-{sparsity}-{seed}", "status": "finished", "primary_metric": "accuracy",
        "greater_is_better": True, "metrics": {"accuracy": value}, "method_info": {},
        "cell": {"model": "tiny", "method": method, "task": {"name": task}, "budget": {}, "sparsity": sparsity,
                 "seed": seed, "method_hparams": hparams},
        "sparsity": {"encoder_sparsity": sparsity, "remaining_params": 2e6, "total_params": 4e6},
        "metric_intervals": {"accuracy": {"low": value - interval, "high": value + interval}},
        "baseline": BASELINE, "wall_seconds": 1.0, "export": export,
        "verdicts": {"chance": chance, "constant_predictions": False, "projection": False, "short_schedule": False},
    }  # fmt: skip
    if speed_block is not None:
        rec["speed"] = speed_block
    return rec
