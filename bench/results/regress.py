"""The comparison of the regression gate (``bench regress``): a run's cell records against the baseline data.

Every cell's metrics, measured encoder sparsity and training loss are compared with the committed baseline
(``results/baselines/regression.json``; its settings, tolerances and file: :mod:`bench.results.regress_baseline`)
within the per-metric tolerances stored in that file, and :func:`render` prints the table. Everything here is a
pure function of records and baseline data; the gate's run is :mod:`bench.run.regress_run`, its command
:mod:`bench.cli.regress`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.results.cell_record import FINISHED

# Verdicts of a table row; every one but OK is a regression.
OK, WORSE, BETTER, FAILED, MISSING, NOT_RUN = "ok", "WORSE", "BETTER", "FAILED", "MISSING", "NOT RUN"
LOWER_IS_BETTER = {"train_loss"}
NO_DIRECTION = {"encoder_sparsity"}  # any move away from the baseline is a change, not an improvement


@dataclass(frozen=True)
class Row:
    """One line of the comparison table: a metric of a cell (or the cell's status)."""

    cell: str
    metric: str
    baseline: float | str | None
    now: float | str | None
    tolerance: float | None
    verdict: str
    note: str = ""

    @property
    def delta(self) -> float | None:
        numbers = isinstance(self.baseline, (int, float)) and isinstance(self.now, (int, float))
        return self.now - self.baseline if numbers else None


@dataclass
class Verdict:
    """Rows of the comparison plus notes; :attr:`ok` is False when any row is a regression."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.verdict != OK]

    @property
    def ok(self) -> bool:
        return not self.regressions


# ---- comparison (pure) -------------------------------------------------------------------------------------
def cell_key(record: dict[str, Any]) -> str:
    """``method/task/sparsity`` of a record, e.g. ``movement/squad/0.9`` (dense: ``dense/sst2/0``)."""
    cell = record["cell"]
    return f"{cell['method']}/{cell['task']['name']}/{float(cell['sparsity']):g}"


def key_method(key: str) -> str:
    """The method of a :func:`cell_key` (``movement/squad/0.9`` -> ``movement``)."""
    return key.split("/", 1)[0]


def record_values(record: dict[str, Any]) -> dict[str, float]:
    """What the gate watches in a finished record, rounded to 6 decimals (as the baseline stores them): the task
    metrics (in %), the measured encoder sparsity (fraction) and the Trainer's average training loss."""
    values = {name: float(value) for name, value in record["metrics"].items()}
    values["encoder_sparsity"] = float(record["sparsity"]["encoder_sparsity"])
    values["train_loss"] = float(record["train_loss"])
    return {name: round(value, 6) for name, value in values.items()}


def compare(records: list[dict[str, Any]], baseline: dict[str, Any], methods: list[str] | None = None) -> Verdict:
    """Compare the records of a run with ``baseline`` (the file's data). Pure.

    A regression is: a cell that did not finish, a metric beyond its tolerance (in either direction: BETTER
    fails too, so that an intended change is recorded with --update-baseline), a cell or metric the baseline
    lacks or that the run lacks, or a baseline cell of a run method that was not run. A metric without a
    tolerance in the file must match exactly.

    Args:
        records: cell records as :func:`bench.run.runner.run_matrix` returns them.
        baseline: ``{"tolerances": {metric: absolute tolerance}, "cells": {key: {metric: value}}, ...}``.
        methods: the methods run (default: those of ``records``); baseline cells of other methods are ignored.
    """
    tolerances, cells = baseline["tolerances"], baseline["cells"]
    methods = methods if methods is not None else sorted({r["cell"]["method"] for r in records})
    verdict = Verdict()
    seen = set()
    for record in records:
        key = cell_key(record)
        seen.add(key)
        if record.get("status") != FINISHED:
            note = str(record.get("error") or "")[:120]
            verdict.rows.append(Row(key, "status", FINISHED, record.get("status"), None, FAILED, note))
        elif key not in cells:
            verdict.rows.append(Row(key, "(cell)", None, "finished", None, MISSING, "run with --update-baseline"))
        else:
            verdict.rows += compare_cell(key, record_values(record), cells[key], tolerances)
    others = 0
    for key in sorted(set(cells) - seen):
        if key_method(key) in methods:
            verdict.rows.append(Row(key, "(cell)", "in baseline", None, None, NOT_RUN, "the matrix lost this cell"))
        else:
            others += 1
    if others:
        verdict.notes.append(f"{others} baseline cell(s) of methods not run here were not compared")
    return verdict


def compare_cell(key: str, now: dict[str, float], then: dict[str, float], tolerances: dict[str, float]) -> list[Row]:
    """Rows of one finished cell, metric by metric (sorted by name)."""
    rows = []
    for metric in sorted(set(now) | set(then)):
        tolerance = tolerances.get(metric)
        if metric not in then or metric not in now:
            note = "not in the baseline: run with --update-baseline" if metric not in then else "no longer measured"
            rows.append(Row(key, metric, then.get(metric), now.get(metric), tolerance, MISSING, note))
            continue
        rows.append(Row(key, metric, then[metric], now[metric], tolerance, judge(metric, then[metric], now[metric],
                                                                                 tolerance or 0.0)))  # fmt: skip
    return rows


def judge(metric: str, baseline: float, now: float, tolerance: float) -> str:
    """OK within ``tolerance`` (absolute, inclusive); else WORSE or BETTER by the metric's direction (a NaN is
    WORSE; encoder sparsity has no better direction: any move beyond tolerance is WORSE)."""
    if math.isnan(now) and not math.isnan(baseline):
        return WORSE
    if now == baseline or abs(now - baseline) <= tolerance:
        return OK
    if metric in NO_DIRECTION:
        return WORSE
    improved = now < baseline if metric in LOWER_IS_BETTER else now > baseline
    return BETTER if improved else WORSE


# ---- report ------------------------------------------------------------------------------------------------
def render(verdict: Verdict, baseline_versions: dict[str, str] | None = None) -> str:
    """The comparison table (cell, metric, baseline, now, delta, tolerance, verdict, note) and a summary line."""
    from tabulate import tabulate

    from bench.config.cell import package_versions

    table = [
        (r.cell, r.metric, fmt(r.baseline), fmt(r.now), fmt(r.delta, "+.4f"), fmt(r.tolerance), r.verdict, r.note)
        for r in verdict.rows
    ]
    headers = ["cell", "metric", "baseline", "now", "delta", "tolerance", "verdict", "note"]
    lines = [tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)]
    changed = {k: (v, baseline_versions[k]) for k, v in package_versions().items()
               if baseline_versions and k in baseline_versions and baseline_versions[k] != v}  # fmt: skip
    if changed:
        lines.append("note: versions differ from the baseline's: "
                     + ", ".join(f"{k} {old} -> {new}" for k, (new, old) in sorted(changed.items())))  # fmt: skip
    lines.extend(f"note: {note}" for note in verdict.notes)
    cells = len({r.cell for r in verdict.rows})
    bad = verdict.regressions
    if bad:
        lines.append(f"REGRESSION: {len(bad)} of {len(verdict.rows)} checks failed in "
                     f"{len({r.cell for r in bad})} of {cells} cells; an intended change? "
                     "bench regress --update-baseline")  # fmt: skip
    else:
        lines.append(f"green: {len(verdict.rows)} checks in {cells} cells within tolerance")
    return "\n".join(lines)


def fmt(value: Any, spec: str = ".4f") -> str:
    """A table value: a float with ``spec``, None as empty, anything else as ``str``."""
    if value is None:
        return ""
    return format(value, spec) if isinstance(value, float) else str(value)
