"""Matrix config files (YAML) with the same fields as ``bench run``'s flags.

Example::

    methods: [dense, magnitude, movement]    # or "all"
    tasks: [mnli, squad]
    sparsities: [0.5, 0.9]
    seeds: [0, 1]
    preset: quick
    model: sentence-transformers/all-MiniLM-L6-v2
    output: results/my-matrix
    budget: {epochs: 2}
    splits: {mnli: {train_split: "train[:4000]"}, "*": {eval_split: ...}}
    method_hparams: {movement: {mask_lr: 0.02}}
    distill: true
    trials: 8                      # HP-search trials per cell (0: off)
    search_space: {learning_rate: {low: 1.0e-5, high: 1.0e-4}, warmup_ratio: 0.1, mask_lr: {low: 0.005}}
    storage: postgresql://bench@db-host/bench   # default: sqlite:///OUTPUT/bench.db
    distillation: {temperature: 2.0, alpha_distil: 0.9, alpha_ce: 0.1}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import BenchError

KEYS = (
    "methods", "tasks", "sparsities", "seeds", "preset", "model", "output", "budget", "splits",
    "method_hparams", "tracking_uri", "save_models", "distill", "distillation", "trials", "timeout",
    "search_space", "storage", "lease_seconds",
)  # fmt: skip


def load_config(path: Path) -> dict[str, Any]:
    """Parse a matrix config file.

    Raises:
        BenchError: unreadable file, YAML syntax error (with its line), a top level that is not a mapping,
            an unknown key (with its line), or non-numeric sparsities/seeds.
    """
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as err:
        raise BenchError(f"cannot read config {path}: {err.strerror}") from err
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BenchError(f"malformed config {path}{where}: {getattr(err, 'problem', err)}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BenchError(f"config {path} must be a mapping of matrix fields, got {type(data).__name__}")
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    for key in data:
        if key not in KEYS:
            line = lines.get(key, "?")
            raise BenchError(f"unknown key {key!r} in config {path} at line {line}; valid: {', '.join(KEYS)}")
    if "sparsities" in data:
        data["sparsities"] = parse_list(data["sparsities"], float, "sparsities")
    if "seeds" in data:
        data["seeds"] = parse_list(data["seeds"], int, "seeds")
    return data


def parse_list(value: Any, kind: type, what: str) -> list:
    """``"0.5,0.9"`` or ``[0.5, 0.9]`` → ``[0.5, 0.9]`` of ``kind``.

    Raises:
        BenchError: an element that is not a ``kind`` (booleans refused).
    """
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, list):
        items = [items]
    out = []
    for item in items:
        try:
            if isinstance(item, bool) or (kind is int and isinstance(item, float) and not item.is_integer()):
                raise ValueError
            out.append(kind(item))
        except (TypeError, ValueError):
            raise BenchError(f"{what}: {item!r} is not a {kind.__name__}") from None
    return out
