"""The per-cell details table under the leaderboard (``leaderboard.md``'s "Cells" section): one row per record,
finished or not, with its measured sparsity, verdicts, search effort and best parameters, wall time and MLflow run.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.results.cell_record import DIVERGED, FINISHED
from bench.results.verdicts import labels, of_record


def details(cell_records: list[dict[str, Any]]) -> pd.DataFrame:
    """Per-cell details of ``cell_records`` (:func:`bench.results.records.read_records`, or dicts of the same keys),
    one row per record in their order: ``cell`` (the id's first 12 characters), method, task, target ``sparsity``,
    seed, ``status`` (diverged: with the step), ``measured`` encoder sparsity (%), ``verdicts``
    (:func:`bench.results.verdicts.labels`; finished cells), search ``trials`` and ``best params``, ``wall s``
    (seconds), ``mlflow run``."""
    rows = []
    for rec in cell_records:
        cell, search = rec["cell"], rec.get("search") or {}
        finished = rec.get("status") == FINISHED
        rows.append(
            {
                "cell": rec["id"][:12],
                "method": cell["method"],
                "task": cell["task"]["name"],
                "sparsity": cell["sparsity"],
                "seed": cell["seed"],
                "status": _status(rec),
                "measured": f"{rec['sparsity']['encoder_sparsity']:.2%}" if "sparsity" in rec else "",
                "verdicts": "; ".join(labels(of_record(rec))) if finished else "",
                "trials": search.get("n_trials", 0),
                "best params": _params(search.get("best_params")),
                "wall s": f"{rec.get('wall_seconds', 0):.0f}",
                "mlflow run": rec.get("mlflow_run_id") or "",
            }
        )
    return pd.DataFrame(rows)


def _status(rec: dict[str, Any]) -> str:
    """The record's status; a diverged one with the optimizer step of its bad loss."""
    if rec["status"] == DIVERGED:
        return f"diverged at step {rec.get('diverged_step')}"
    return rec["status"]


def _params(params: dict[str, Any] | None) -> str:
    """``name=value`` pairs sorted by name, floats to 3 significant digits; ``""`` for none."""
    if not params:
        return ""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))
