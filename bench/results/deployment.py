"""What a cell's sparsity buys, read from its record: the export file's size (whole file and the encoder's prunable
matrices alone) and the measured speed-ups, with the interval of a speed-up from the repeated timings.

Records are read defensively: a key that an older writer did not record (ONNX Runtime timings, the encoder's bytes)
or a block that says ``{"skipped": reason}`` reads as None, never as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SPEED_VARIANTS = ("finalized", "compacted", "sparse_csr")  # timed against dense (bench.deploy.inference)
DEPLOYMENT_COLUMNS = ["file_mb", "file_ratio", "structured"] + [
    f"speed_up_b{batch}_{variant}" for batch in (1, 32) for variant in SPEED_VARIANTS
]
# Newer keys (issue 17): the encoder's stored and dense bytes, the compacted model's speed-up under ONNX Runtime.
# Kept apart from DEPLOYMENT_COLUMNS so that tables and figure digests of folders without them stay as they were.
DEPLOYMENT_EXTRA = ["encoder_mb", "encoder_dense_mb", "encoder_ratio", "onnx_speed_up_b1_compacted",
                    "onnx_speed_up_b32_compacted"]  # fmt: skip
ENGINES = ("torch", "onnx")  # PyTorch eager (speed.latency_ms) and ONNX Runtime (speed.onnx.latency_ms)


def number(value: Any) -> float | None:
    """``value`` as a float when it is a real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def at(tree: Any, *keys: str) -> Any:
    """``tree[k1][k2]...``, or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(tree, Mapping):
            return None
        tree = tree.get(key)
    return tree


def engine_block(speed: Any, engine: str) -> Mapping | None:
    """The timings of ``engine`` in a record's ``speed``: the block itself for ``torch``, ``speed["onnx"]`` for
    ``onnx``; None when absent or skipped."""
    block = speed if engine == "torch" else at(speed, "onnx")
    return block if isinstance(block, Mapping) and "skipped" not in block else None


def speed_up(speed: Any, batch: int = 1, engine: str = "torch", variant: str = "compacted") -> float | None:
    """The recorded speed-up of ``variant`` over dense (dense median latency / variant median latency) at ``batch``;
    None when not recorded."""
    return number(at(engine_block(speed, engine), "speed_up", f"batch_{batch}", variant))


Interval = tuple[float | None, float | None, float | None]


def speed_interval(speed: Any, batch: int = 1, engine: str = "torch") -> Interval:
    """``(speed-up, low, high)`` of the compacted model over dense at ``batch`` under ``engine``.

    The speed-up is the recorded one (dense median / compacted median; computed from the medians when only they are
    recorded). The interval is the spread of the repeated timings: ``[dense q1 / compacted q3, dense q3 / compacted
    q1]``, the ratio of the two latencies' quartiles taken at their most unfavourable and most favourable. It is a
    range of the timing noise, not a confidence interval. None where not recorded.
    """
    block = engine_block(speed, engine)
    latency = at(block, "latency_ms", f"batch_{batch}")
    dense, compacted = at(latency, "dense"), at(latency, "compacted")

    def ratio(num: Any, den: Any) -> float | None:
        num, den = number(num), number(den)
        return num / den if num is not None and den is not None and num > 0 and den > 0 else None

    point = speed_up(speed, batch, engine)
    if point is None:
        point = ratio(at(dense, "median_ms"), at(compacted, "median_ms"))
    low = ratio(at(dense, "q1_ms"), at(compacted, "q3_ms"))
    high = ratio(at(dense, "q3_ms"), at(compacted, "q1_ms"))
    return point, low, high


def deployment(rec: Mapping[str, Any]) -> dict[str, float | None]:
    """The :data:`DEPLOYMENT_COLUMNS` and :data:`DEPLOYMENT_EXTRA` of a record: size of the sparse export file (MB,
    and as a fraction of the dense file), the encoder's stored prunable matrices (MB, their dense fp32 size, and the
    fraction), the fraction of the pruned weights compaction removed as structure, and the measured speed-ups (dense
    median latency / variant median latency) at batch 1 and 32, PyTorch and ONNX Runtime; None where not recorded
    (speed needs ``--measure-speed``)."""
    export = rec.get("export") or {}
    speed = rec.get("speed") or {}
    encoder, encoder_dense = number(export.get("encoder_bytes")), number(export.get("encoder_dense_bytes"))
    ratio = number(export.get("encoder_ratio"))
    if ratio is None and encoder is not None and encoder_dense:
        ratio = encoder / encoder_dense
    out = {
        "file_mb": export["sparse_bytes"] / 1e6 if "sparse_bytes" in export else None,
        "file_ratio": export.get("file_ratio"),
        "structured": (export.get("compaction") or {}).get("structured_fraction"),
    }
    for batch in (1, 32):
        for variant in SPEED_VARIANTS:
            out[f"speed_up_b{batch}_{variant}"] = at(speed, "speed_up", f"batch_{batch}", variant)
    out |= {
        "encoder_mb": None if encoder is None else encoder / 1e6,
        "encoder_dense_mb": None if encoder_dense is None else encoder_dense / 1e6,
        "encoder_ratio": ratio,
        "onnx_speed_up_b1_compacted": speed_up(speed, 1, "onnx"),
        "onnx_speed_up_b32_compacted": speed_up(speed, 32, "onnx"),
    }
    return out
