"""prune-bench: a fair, reproducible benchmark harness for pruning pretrained transformers.

The public API, imported lazily (PEP 562) so that ``bench --help`` and the reading commands do not pay for torch::

    from bench import PruningMethod, Task, Mask, StraightThroughMask, PrunableWeight, BenchError
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from bench.core.errors import BenchError

if TYPE_CHECKING:
    from bench.core.masking import Mask, StraightThroughMask
    from bench.core.method import PruningMethod
    from bench.core.prunable import PrunableWeight
    from bench.core.task import Evaluation, Featurization, Task

_LAZY = {
    "PruningMethod": "bench.core.method",
    "Task": "bench.core.task",
    "Evaluation": "bench.core.task",
    "Featurization": "bench.core.task",
    "Mask": "bench.core.masking",
    "StraightThroughMask": "bench.core.masking",
    "PrunableWeight": "bench.core.prunable",
}
__all__ = [
    "BenchError",
    "Evaluation",
    "Featurization",
    "Mask",
    "PrunableWeight",
    "PruningMethod",
    "StraightThroughMask",
    "Task",
]

try:
    __version__ = version("prune-bench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
