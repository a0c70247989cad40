"""prune-bench: a fair, reproducible benchmark harness for pruning pretrained transformers."""

from bench.errors import BenchError
from bench.method import PruningMethod
from bench.task import Featurization, Task

__all__ = ["BenchError", "Featurization", "PruningMethod", "Task"]
__version__ = "0.1.0"
