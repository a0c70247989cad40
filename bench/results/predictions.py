"""Per-example eval results of every finished cell: ``OUTPUT/predictions/<cell id>.npz``.

Each file holds, for the cell's eval examples in the split's order, what the model predicted and each example's
contribution to every metric, and the same for the task's trivial baseline, compressed (``numpy.savez_compressed``;
about 2 KB for SST-2's 872 sentences). Every interval and every test between methods (:mod:`bench.results.stats`) is
recomputed from these files, without any model. Arrays (n = eval examples):

* ``prediction``: (n,) label ids (int64) or answer texts (unicode);
* ``per_example/<metric>``: (n,) float64, whose mean is the metric;
* ``baseline/<metric>``: (n,) float64, the trivial baseline's contributions (absent when the task has none).

Strings are stored as fixed-width unicode, so loading needs no pickle.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from bench.core.task import Evaluation
from bench.results.folder import ResultsFolder


def save_predictions(path: Path, evaluation: Evaluation, baseline: Evaluation | None) -> Path:
    """Write ``evaluation`` (and ``baseline``'s per-example values) to ``path`` atomically; returns ``path``."""
    arrays = {f"per_example/{k}": np.asarray(v, dtype=np.float64) for k, v in evaluation.per_example.items()}
    if evaluation.predictions is not None:
        arrays["prediction"] = np.asarray(evaluation.predictions)
    if baseline is not None:
        arrays.update({f"baseline/{k}": np.asarray(v, dtype=np.float64) for k, v in baseline.per_example.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    """The arrays of :func:`save_predictions`'s file, by name (``per_example/accuracy``, ``prediction`` ...).

    Raises:
        BenchError: the file is missing or unreadable, naming it.
    """
    from bench.core.errors import BenchError

    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise BenchError(f"cannot read predictions file {path}: {err}") from err


def per_example(output: Path, cell_id: str, metric: str) -> np.ndarray | None:
    """The per-example values of ``metric`` for a cell, or None when the cell saved none (older records, tasks
    without per-example metrics) or the file is gone."""
    path = ResultsFolder(output).predictions(cell_id)
    if not path.exists():
        return None
    return load_predictions(path).get(f"per_example/{metric}")
