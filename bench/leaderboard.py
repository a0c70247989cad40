"""Leaderboards: collect cell records into a DataFrame (pure), then render it (pure).

A row is a method, the dense reference on top; a column is task × target sparsity; a value is the task's
primary metric, mean ± std over seeds, with the measured encoder sparsity and the number of seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench import records

COLUMNS = [
    "cell_id", "model", "method", "task", "target_sparsity", "seed", "metric", "value", "greater_is_better",
    "encoder_sparsity", "sparsity_before_projection", "remaining_params", "total_params", "trials", "wall_seconds",
]  # fmt: skip
SPEED_VARIANTS = ("finalized", "compacted", "sparse_csr")  # timed against dense (bench.inference)
DEPLOYMENT_COLUMNS = ["file_mb", "file_ratio", "structured"] + [
    f"speed_up_b{batch}_{variant}" for batch in (1, 32) for variant in SPEED_VARIANTS
]
COLUMNS += DEPLOYMENT_COLUMNS


def deployment(rec: dict[str, Any]) -> dict[str, float | None]:
    """The :data:`DEPLOYMENT_COLUMNS` of a record: size of the sparse export file (MB, and as a fraction of the
    dense file), the fraction of the pruned weights compaction removed as structure, and the measured speed-ups
    (dense median latency / variant median latency) at batch 1 and 32; None where not recorded (speed needs
    ``--measure-speed``)."""
    export = rec.get("export") or {}
    speed_up = (rec.get("speed") or {}).get("speed_up", {})
    out = {
        "file_mb": export["sparse_bytes"] / 1e6 if "sparse_bytes" in export else None,
        "file_ratio": export.get("file_ratio"),
        "structured": (export.get("compaction") or {}).get("structured_fraction"),
    }
    for batch in (1, 32):
        for variant in SPEED_VARIANTS:
            out[f"speed_up_b{batch}_{variant}"] = speed_up.get(f"batch_{batch}", {}).get(variant)
    return out


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
                "method": cell["method"] + (" +distill" if cell.get("distillation") else ""),
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
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (method, task, target sparsity)."""
    keys = ["method", "task", "target_sparsity", "metric", "greater_is_better"]
    grouped = df.groupby(keys, sort=False)
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
        **{column: (column, "mean") for column in DEPLOYMENT_COLUMNS},
    ).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def table(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard: rows are methods (dense first), columns are ``task metric @ sparsity``.

    Dense runs once per task at sparsity 0; its value stands in every sparsity column of its task. The best
    pruned method of each column is in bold.
    """
    if df.empty:
        return pd.DataFrame()
    from bench.formats import long_board

    summary = long_board(summarize(df))
    pruned = summary[summary["method"] != "dense"]
    targets = sorted(set(pruned["target_sparsity"])) or [0.0]
    cells: dict[str, dict[str, str]] = {}
    for row in summary.itertuples():
        arrow = "↑" if row.greater_is_better else "↓"
        for target in targets if row.method == "dense" else [row.target_sparsity]:
            column = f"{row.task} {row.metric}{arrow} @ {target:.0%}"
            cells.setdefault(row.method, {})[column] = f"**{format_value(row)}**" if row.best else format_value(row)
    methods = sorted(cells, key=lambda m: (m != "dense", m))
    columns = sorted({c for v in cells.values() for c in v}, key=_column_order)
    return pd.DataFrame([[cells[m].get(c, "") for c in columns] for m in methods], index=methods, columns=columns)


def format_value(row: Any) -> str:
    spread = f" ± {row.std:.2f}" if row.seeds > 1 else ""
    reached = f", reached {row.reached:.1%}" if pd.notna(row.reached) else ""
    file = f", {row.file_mb:.0f} MB" if pd.notna(row.file_mb) else ""
    speed = f", {row.speed_up_b1_compacted:.2f}× b1" if pd.notna(row.speed_up_b1_compacted) else ""
    return (
        f"{row.mean:.2f}{spread} (n={row.seeds}, sp {row.encoder_sparsity:.1%}{reached}, "
        f"{row.remaining_params / 1e6:.1f}M{file}{speed})"
    )


def _column_order(column: str) -> tuple[str, float]:
    task, _, target = column.partition(" @ ")
    return task, float(target.rstrip("%"))


def render(board: pd.DataFrame, fmt: str = "github") -> str:
    """Render :func:`table` output with tabulate (``github`` for Markdown)."""
    if board.empty:
        return "(no finished cells)"
    return tabulate(board, headers=["method", *board.columns], tablefmt=fmt)


LEGEND = (
    "Values: primary metric, mean ± std over seeds (n = seeds), then the measured encoder sparsity "
    "(exact zeros in Q, K, V, O, FFN in/out), for methods that project onto the target the sparsity they "
    "reached on their own before the projection, and the total parameters remaining; then the size of the sparse "
    "export file (bench export) and, for cells run with --measure-speed, the compacted model's CPU speed-up over "
    "the dense one at batch 1 (median latency ratio, 128 tokens; see bench leaderboard --format csv for the rest)."
)


def details(cell_records: list[dict[str, Any]]) -> pd.DataFrame:
    """Per-cell details: id, status, measured sparsity, search effort and best parameters, MLflow run."""
    rows = []
    for rec in cell_records:
        cell, search = rec["cell"], rec.get("search") or {}
        rows.append(
            {
                "cell": rec["id"][:12],
                "method": cell["method"],
                "task": cell["task"]["name"],
                "sparsity": cell["sparsity"],
                "seed": cell["seed"],
                "status": _status(rec),
                "measured": f"{rec['sparsity']['encoder_sparsity']:.2%}" if "sparsity" in rec else "",
                "trials": search.get("n_trials", 0),
                "best params": _params(search.get("best_params")),
                "wall s": f"{rec.get('wall_seconds', 0):.0f}",
                "mlflow run": rec.get("mlflow_run_id") or "",
            }
        )
    return pd.DataFrame(rows)


def _status(rec: dict[str, Any]) -> str:
    if rec["status"] == records.DIVERGED:
        return f"diverged at step {rec.get('diverged_step')}"
    return rec["status"]


def _params(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def write(output: Path) -> str:
    """Collect ``output/cells``, write ``leaderboard.md`` (table, legend, cell details) and ``leaderboard.csv``;
    return the table's Markdown."""
    cell_records = records.read_records(output)
    df = collect(cell_records)
    markdown = render(table(df))
    cells = details(cell_records)
    cell_table = tabulate(cells, headers="keys", tablefmt="github", showindex=False) if not cells.empty else ""
    Path(output, "leaderboard.md").write_text(f"{markdown}\n\n{LEGEND}\n\n## Cells\n\n{cell_table}\n")
    df.to_csv(Path(output, "leaderboard.csv"), index=False)
    return markdown
