"""Leaderboards: collect cell records into a DataFrame (pure), then render it (pure).

A row is a method, the dense reference and the task's trivial baseline on top; a column is task × target sparsity;
a value is the task's primary metric, the mean over seeds with its 95% confidence interval and the number of seeds,
with the measured encoder sparsity, the verdicts (:mod:`bench.results.verdicts`) and the significance marks
(:mod:`bench.results.significance`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.core.registry import is_reference
from bench.results import records
from bench.results.deployment import DEPLOYMENT_COLUMNS, DEPLOYMENT_EXTRA, SPEED_VARIANTS, deployment  # noqa: F401
from bench.results.folder import ResultsFolder

COLUMNS = [
    "cell_id", "model", "method", "task", "target_sparsity", "seed", "metric", "value", "greater_is_better",
    "encoder_sparsity", "sparsity_before_projection", "remaining_params", "total_params", "trials", "wall_seconds",
]  # fmt: skip
# Per cell: its bootstrap interval of the primary metric, its verdicts (None: unknown, a record from before
# verdicts), and the task's trivial baseline on the same eval split (None for tasks without one, old records).
VERDICT_COLUMNS = ["cell_low", "cell_high", "chance", "constant_predictions", "projection", "reached_fraction",
                   "short_schedule", "ramp_steps", "min_ramp_steps"]  # fmt: skip
BASELINE_COLUMNS = ["baseline_description", "baseline_value", "baseline_low", "baseline_high"]
COLUMNS += DEPLOYMENT_COLUMNS + VERDICT_COLUMNS + BASELINE_COLUMNS + DEPLOYMENT_EXTRA  # newest last: stable CSVs
KEYS = ["method", "task", "target_sparsity", "metric", "greater_is_better"]
BASELINE = "baseline"  # the method name of the trivial-baseline rows


def judged(rec: dict[str, Any]) -> dict[str, Any]:
    """The :data:`VERDICT_COLUMNS` and :data:`BASELINE_COLUMNS` of a finished record (None where not recorded).

    Verdicts are read through :func:`bench.results.verdicts.of_record`; intervals are in the metric's units."""
    from bench.results.verdicts import of_record

    primary = rec["primary_metric"]
    found = of_record(rec)
    ci = (rec.get("metric_intervals") or {}).get(primary) or {}
    base = rec.get("baseline") or {}
    base_ci = (base.get("intervals") or {}).get(primary) or {}
    return {
        "cell_low": ci.get("low"), "cell_high": ci.get("high"),
        **{k: found.get(k) for k in VERDICT_COLUMNS[2:]},
        "baseline_description": base.get("description"), "baseline_value": (base.get("metrics") or {}).get(primary),
        "baseline_low": base_ci.get("low"), "baseline_high": base_ci.get("high"),
    }  # fmt: skip


def method_label(cell: dict[str, Any]) -> str:
    """A leaderboard row's method: the name, `` +structured`` or `` +block32`` for a granularity other than
    unstructured (bench.core.granularity), `` +distill`` when distilled; cells of different variants never share a
    row."""
    hparams = cell.get("method_hparams") or {}
    granularity = hparams.get("granularity")
    label = cell["method"]
    if granularity == "block":
        label += f" +block{hparams.get('block_size', 32)}"
    elif granularity not in (None, "unstructured"):
        label += f" +{granularity}"
    return label + (" +distill" if cell.get("distillation") else "")


def collect(cell_records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished cell record, with the columns in :data:`COLUMNS`."""
    rows = []
    for rec in cell_records:
        if rec.get("status") != records.FINISHED:
            continue
        cell = rec["cell"]
        rows.append(
            {
                "cell_id": rec["id"],
                "model": cell.get("model"),
                "method": method_label(cell),
                "task": cell["task"]["name"],
                "target_sparsity": cell["sparsity"],
                "seed": cell["seed"],
                "metric": rec["primary_metric"],
                "value": rec["metrics"][rec["primary_metric"]],
                "greater_is_better": rec.get("greater_is_better", True),
                "encoder_sparsity": rec["sparsity"]["encoder_sparsity"],
                "sparsity_before_projection": rec.get("method_info", {}).get("sparsity_before_projection"),
                "remaining_params": rec["sparsity"]["remaining_params"],
                "total_params": rec["sparsity"]["total_params"],
                "trials": (rec.get("search") or {}).get("n_trials", 0),
                "wall_seconds": rec.get("wall_seconds"),
                **deployment(rec),
                **judged(rec),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, task, target sparsity) of :func:`collect`'s cells, then one ``baseline`` row per task.

    Columns: the :data:`KEYS`; ``role`` ("dense", "pruned" or "baseline"); ``mean``, ``std`` (over seeds, metric
    units), ``seeds`` (n); ``ci_low``/``ci_high``: the 95% interval of the mean (Student t over the seeds for
    n >= 2, else the single cell's bootstrap interval over eval examples; NaN where not recorded); the mean
    measured ``encoder_sparsity``, ``reached`` (sparsity before the projection, a fraction), parameters, trials,
    wall time, :data:`DEPLOYMENT_COLUMNS` and :data:`DEPLOYMENT_EXTRA`; the verdicts over seeds:
    ``chance_seeds`` of ``chance_known`` seeds are chance cells, ``chance`` (at least half are; None when no seed
    has the verdict), ``projection`` and ``short_schedule`` (at least half of the seeds; None: unknown),
    ``reached_fraction`` (mean, of the target), ``ramp_steps`` and ``min_ramp_steps``; ``description`` (baseline
    rows: what the baseline predicts). Baseline rows have ``target_sparsity`` 0 and ``seeds`` 0.
    """
    from bench.results.stats import t_interval

    if df.empty:
        return pd.DataFrame(columns=[*KEYS, "role", "mean", "std", "seeds", "ci_low", "ci_high"])
    grouped = df.groupby(KEYS, sort=False)
    out = grouped.agg(
        mean=("value", "mean"),
        std=("value", "std"),
        seeds=("seed", "nunique"),
        encoder_sparsity=("encoder_sparsity", "mean"),
        reached=("sparsity_before_projection", "mean"),
        remaining_params=("remaining_params", "mean"),
        total_params=("total_params", "mean"),
        trials=("trials", "mean"),
        wall_seconds=("wall_seconds", "mean"),
        **{column: (column, "mean") for column in DEPLOYMENT_COLUMNS + DEPLOYMENT_EXTRA},
    ).reset_index()
    out["std"] = out["std"].fillna(0.0)
    extra = []
    for key, group in grouped:
        values = group["value"].to_numpy(dtype=float)
        interval = t_interval(values) if len(values) >= 2 else (group["cell_low"].iloc[0], group["cell_high"].iloc[0])
        extra.append({**dict(zip(KEYS, key, strict=True)), "ci_low": _float(interval[0]),
                      "ci_high": _float(interval[1]), **_verdicts_over_seeds(group)})  # fmt: skip
    out = out.merge(pd.DataFrame(extra), on=KEYS, how="left")
    reference = out["method"].map(is_reference).astype(bool)
    out.insert(len(KEYS), "role", np.where(reference, "dense", "pruned"))
    return pd.concat([out, _baseline_rows(df)], ignore_index=True) if df["baseline_value"].notna().any() else out


def _float(value: Any) -> float:
    return float(value) if value is not None and pd.notna(value) else float("nan")


def _majority(column: pd.Series) -> bool | None:
    known = [bool(v) for v in column if v is not None and pd.notna(v)]
    return None if not known else 2 * sum(known) >= len(known)


def _verdicts_over_seeds(group: pd.DataFrame) -> dict[str, Any]:
    known = [bool(v) for v in group["chance"] if v is not None and pd.notna(v)]
    return {
        "chance_seeds": sum(known), "chance_known": len(known),
        "chance": None if not known else (sum(known) > 0 and 2 * sum(known) >= len(known)),
        "projection": _majority(group["projection"]),
        "reached_fraction": group["reached_fraction"].astype(float).mean(),
        "short_schedule": _majority(group["short_schedule"]),
        "ramp_steps": group["ramp_steps"].dropna().max() if group["ramp_steps"].notna().any() else None,
        "min_ramp_steps": group["min_ramp_steps"].dropna().max() if group["min_ramp_steps"].notna().any() else None,
    }  # fmt: skip


def _baseline_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per task whose cells recorded the trivial baseline (the first such cell's: one eval split)."""
    rows = []
    for task, group in df[df["baseline_value"].notna()].groupby("task", sort=False):
        first = group.iloc[0]
        rows.append({
            "method": BASELINE, "task": task, "target_sparsity": 0.0, "metric": first["metric"],
            "greater_is_better": first["greater_is_better"], "role": "baseline", "mean": float(first["baseline_value"]),
            "std": float("nan"), "seeds": 0, "ci_low": _float(first["baseline_low"]),
            "ci_high": _float(first["baseline_high"]), "description": first["baseline_description"],
        })  # fmt: skip
    return pd.DataFrame(rows)


def table(df: pd.DataFrame, arrays: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The leaderboard of :func:`collect`'s cells: :func:`pivot` of :func:`board`, whose marks
    are tested on ``arrays`` (``{cell id: per-example values, shape (n_examples,)}``; without them no column is
    tested and nothing is marked)."""
    if df.empty:
        return pd.DataFrame()

    return pivot(board(df, arrays))


def board(cells: pd.DataFrame, arrays: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The long leaderboard of :func:`collect`'s ``cells``: :func:`bench.results.render.long_board` of
    their summary with the :func:`bench.results.significance.column_marks` tested on ``arrays`` (``{cell id:
    (n_examples,)
    values}``, e.g. :func:`bench.results.significance.load_arrays`; None: nothing tested)."""
    from bench.results.render import long_board
    from bench.results.significance import column_marks

    summary = summarize(cells)
    if summary.empty:
        return long_board(summary)
    return long_board(summary, column_marks(summary, cells, arrays))


def pivot(board: pd.DataFrame) -> pd.DataFrame:
    """Rows are methods (dense, then the trivial baseline, first), columns are ``task metric @ sparsity``, values
    are :func:`bench.results.annotate.cell_text` strings of ``board`` (from :func:`board`).

    Columns are keyed by the exact target (task, metric, arrow, target) and labelled with
    :func:`bench.results.annotate.percent`, so targets that round to the same percent (0.975, 0.98) stay two columns.
    Dense and the baseline run once per task; their value stands in every sparsity column of their task.
    """
    from bench.results.annotate import cell_text, percent

    if board.empty:
        return pd.DataFrame()
    pruned = board[board["role"] == "pruned"]
    targets = {task: sorted(set(group["target_sparsity"])) for task, group in pruned.groupby("task")}
    cells: dict[str, dict[tuple, str]] = {}
    for row in board.itertuples():
        arrow = "↑" if row.greater_is_better else "↓"
        for target in targets.get(row.task, [0.0]) if row.role != "pruned" else [row.target_sparsity]:
            cells.setdefault(row.method, {})[(row.task, row.metric, arrow, float(target))] = cell_text(row)
    methods = sorted(cells, key=lambda m: (not is_reference(m), m != BASELINE, m))
    keys = sorted({k for v in cells.values() for k in v})  # by task, metric, then target
    labels = [f"{task} {metric}{arrow} @ {percent(target)}" for task, metric, arrow, target in keys]
    return pd.DataFrame([[cells[m].get(k, "") for k in keys] for m in methods], index=methods, columns=labels)


def render(board: pd.DataFrame, fmt: str = "github") -> str:
    """Render :func:`table` output with tabulate (``github`` for Markdown)."""
    if board.empty:
        return "(no finished cells)"
    return tabulate(board, headers=["method", *board.columns], tablefmt=fmt, disable_numparse=True)


def write(output: Path, to: Path | None = None) -> str:
    """Collect ``output/cells``, test the marks on ``output/predictions``, write the Markdown file ``to`` (table,
    legend, cell details; default ``output/leaderboard.md``, what ``bench run`` writes) and a ``.csv`` beside it (one
    row per finished cell); return the table's Markdown.

    Raises:
        BenchError: a corrupt record or predictions file, naming it.
    """
    from bench.results.annotate import legend
    from bench.results.details import details
    from bench.results.significance import load_arrays

    cell_records = records.read_records(output)
    df = collect(cell_records)
    ranked = board(df, load_arrays(output, df))
    markdown = render(pivot(ranked))
    cells = details(cell_records)
    cell_table = tabulate(cells, headers="keys", tablefmt="github", showindex=False) if not cells.empty else ""
    text = f"{markdown}\n\n{legend(ranked, 'md')}\n\n## Cells\n\n{cell_table}\n"
    md = Path(to) if to is not None else ResultsFolder(output).leaderboard_md
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    empty = [c for c in DEPLOYMENT_EXTRA if df[c].isna().all()]  # a folder without the newer keys: CSV as before
    df.drop(columns=empty).to_csv(md.with_suffix(".csv"), index=False)
    return markdown


def markdown_table(output: Path) -> str:
    """The leaderboard table (Markdown) of ``output``, as :func:`write` renders it, writing nothing.

    Raises:
        BenchError: a corrupt record or predictions file, naming it.
    """
    from bench.results.significance import load_arrays

    df = collect(records.read_records(output))
    return render(table(df, load_arrays(output, df)))
