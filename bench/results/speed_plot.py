"""The speed Pareto view of ``bench plot`` (issue 17): per task, the primary metric against the measured batch-1
speed-up of the compacted model over the dense one, one point per cell.

x: the recorded speed-up (dense median latency / compacted median latency, batch 1, 128 tokens; log scale) with the
spread of the repeated timings as a horizontal bar, ``[dense q1 / compacted q3, dense q3 / compacted q1]``
(:func:`bench.results.deployment.speed_interval`: a range of the timing noise, not a confidence interval). y: the
cell's primary metric with its 95% bootstrap interval over the eval examples (``metric_intervals``) as a vertical
bar, none where not recorded. The dense cells sit at 1.0× (the reference of the ratio), the task's trivial baseline
is a dotted line, chance cells are hollow, and the Pareto front of (speed-up, metric) over the cells that are not
chance is a staircase of ringed points. A second panel shows ONNX Runtime's speed-up where records have it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.core.registry import is_reference
from bench.results.annotate import is_true, known, percent
from bench.results.deployment import ENGINES, speed_interval
from bench.results.leaderboard import collect

ENGINE_TITLES = {"torch": "PyTorch (eager), compacted model", "onnx": "ONNX Runtime, compacted model"}
_POINT_COLUMNS = ["cell_id", "method", "task", "target_sparsity", "seed", "metric", "greater_is_better", "value",
                  "cell_low", "cell_high", "chance", "baseline_value", "baseline_description"]  # fmt: skip
_NICE = (0.1, 0.2, 0.25, 0.5, 0.75, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0,
         20.0, 30.0, 50.0, 100.0)  # fmt: skip


def speed_points(records: Sequence[Any]) -> pd.DataFrame:
    """One row per finished cell of ``records``: the :func:`bench.results.leaderboard.collect` columns the figure
    needs, ``dense`` (a reference cell), ``measured`` (the record has a ``speed`` block), ``threads``, and per engine
    (``torch``, ``onnx``) ``<engine>_x``, ``<engine>_low``, ``<engine>_high``: the batch-1 speed-up of the compacted
    model and its timing interval (NaN where not recorded; dense cells: 1.0 without an interval)."""
    cells = collect(list(records))
    speeds = {r["id"]: r.get("speed") for r in records if r.get("status") == "finished"}
    rows = []
    for cell in cells[_POINT_COLUMNS].to_dict("records"):
        speed, dense = speeds.get(cell["cell_id"]), bool(is_reference(cell["method"]))
        row = {**cell, "dense": dense, "measured": isinstance(speed, dict) and bool(speed)}
        row["threads"] = speed.get("threads") if isinstance(speed, dict) else None
        for engine in ENGINES:
            point, low, high = (1.0, None, None) if dense else speed_interval(speed, 1, engine)
            row |= {f"{engine}_x": point, f"{engine}_low": low, f"{engine}_high": high}
        rows.append(row)
    columns = [*_POINT_COLUMNS, "dense", "measured", "threads"]
    columns += [f"{e}_{part}" for e in ENGINES for part in ("x", "low", "high")]
    return pd.DataFrame(rows, columns=columns)


def engines_of(points: pd.DataFrame, task: str) -> list[str]:
    """The engines with a speed-up for at least one pruned cell of ``task`` (empty: no speed figure)."""
    rows = points[(points["task"] == task) & ~points["dense"].astype(bool)]
    return [e for e in ENGINES if rows[f"{e}_x"].notna().any()]


def pareto_front(x: Sequence[float], y: Sequence[float], greater_is_better: bool = True) -> np.ndarray:
    """Which of the points ``(x[i], y[i])`` are on the Pareto front of (speed-up: higher is better, metric: in its
    direction): no other point is at least as good in both and better in one. Equal points are all on it."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float) * (1.0 if greater_is_better else -1.0)
    on = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        at_least = (x >= x[i]) & (y >= y[i])
        better = (x > x[i]) | (y > y[i])
        on[i] = not np.any(at_least & better)
    return on


def _bars(values: pd.Series, low: pd.Series, high: pd.Series) -> np.ndarray:
    """Error bar lengths (2, n) below and above ``values``; 0 where the interval is unknown."""
    below = (values - pd.to_numeric(low, errors="coerce")).fillna(0.0).clip(lower=0.0)
    above = (pd.to_numeric(high, errors="coerce") - values).fillna(0.0).clip(lower=0.0)
    return np.vstack([below.to_numpy(dtype=float), above.to_numpy(dtype=float)])


def _panel(ax: Any, rows: pd.DataFrame, engine: str, colors: dict[str, str]) -> None:
    """One engine's scatter on ``ax``: the cells (gid ``cells``), the front (gid ``front``), dense, baseline."""
    x, lo, hi = f"{engine}_x", f"{engine}_low", f"{engine}_high"
    shown = rows[rows[x].notna()].astype({x: float, "value": float})
    chance = np.array([is_true(v) for v in shown["chance"]], dtype=bool)
    for method, group in shown[~shown["dense"].astype(bool)].groupby("method", sort=True):
        color, hollow = colors[method], chance[shown.index.get_indexer(group.index)]
        ax.errorbar(group[x], group["value"], xerr=_bars(group[x], group[lo], group[hi]),
                    yerr=_bars(group["value"], group["cell_low"], group["cell_high"]), fmt="none", ecolor=color,
                    elinewidth=1, capsize=2, alpha=0.8)  # fmt: skip
        label = method
        for face, part in ((color, group[~hollow]), ("none", group[hollow])):  # hollow: chance cells
            if not part.empty:
                ax.plot(part[x], part["value"], "o", linestyle="none", color=color, markerfacecolor=face,
                        gid="cells", label=label)  # fmt: skip
                label = "_nolegend_"
        for row in group.itertuples():  # which cell: its target sparsity
            ax.annotate(percent(row.target_sparsity), (getattr(row, x), row.value), xytext=(3, 3), fontsize=6,
                        textcoords="offset points", color=color)  # fmt: skip
    dense = shown[shown["dense"].astype(bool)]
    if not dense.empty:
        ax.errorbar(dense[x], dense["value"], yerr=_bars(dense["value"], dense["cell_low"], dense["cell_high"]),
                    fmt="none", ecolor="black", elinewidth=1, capsize=2)  # fmt: skip
        ax.plot(dense[x], dense["value"], "*", linestyle="none", color="black", markersize=11, gid="cells",
                label=f"dense (1×, {dense['value'].mean():.1f})")  # fmt: skip
    front = shown[~chance]
    if not front.empty:
        on = pareto_front(front[x], front["value"], bool(front["greater_is_better"].iloc[0]))
        line = front[on].sort_values([x, "value"])
        ax.plot(
            line[x],
            line["value"],
            "-o",
            drawstyle="steps-pre",
            color="black",
            linewidth=0.9,
            alpha=0.6,
            markersize=13,
            markerfacecolor="none",
            gid="front",
            label="Pareto front (speed-up, metric)",
        )
    ax.axvline(1.0, color="black", linestyle="--", linewidth=0.8, alpha=0.5)
    base = rows[rows["baseline_value"].notna()]
    if not base.empty:
        first = base.iloc[0]
        ax.axhline(
            float(first["baseline_value"]),
            color="gray",
            linestyle=":",
            linewidth=1.5,
            label=f"baseline: {first['baseline_description']} ({float(first['baseline_value']):.1f})",
        )
    _speed_axis(ax, pd.concat([shown[x], shown[lo], shown[hi]]).dropna().astype(float).tolist() + [1.0])
    ax.set_title(ENGINE_TITLES[engine], fontsize=9)
    ax.grid(True, which="major", alpha=0.3)


def _speed_axis(ax: Any, values: list[float]) -> None:
    """A log x-axis around ``values`` with ticks at round speed-ups (``1.25×``)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    positive = [v for v in values if v > 0]
    low, high = min(positive) / 1.08, max(positive) * 1.08
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ticks: list[float] = []
    for tick in (t for t in _NICE if low <= t <= high):  # at least 12% of the axis apart, so labels do not overlap
        if not ticks or np.log(tick / ticks[-1]) >= 0.12 * np.log(high / low):
            ticks.append(tick)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}×"))


def speed_figure(points: pd.DataFrame, task: str, protocol: str = ""):
    """The speed Pareto figure of ``task`` from :func:`speed_points` (one panel per engine in
    :func:`engines_of`; call only when that is not empty). ``protocol``
    (:func:`bench.results.plots.protocol_line`) is the title's second line; the note under the axes says what the
    bars are and how many cells have no speed measurement."""
    from bench.results.figure_files import pyplot

    plt = pyplot()
    rows = points[points["task"] == task]
    engines = engines_of(points, task)
    pruned = sorted(set(rows.loc[~rows["dense"].astype(bool), "method"]))
    colors = {method: f"C{i % 10}" for i, method in enumerate(pruned)}
    fig, axes = plt.subplots(1, len(engines), figsize=(4.6 * len(engines) + 3.0, 4.8), dpi=120, sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, engine in zip(axes[0], engines, strict=True):
        _panel(ax, rows, engine, colors)
        ax.set_xlabel("speed-up over dense, batch 1 (log scale)")
    metric = rows["metric"].iloc[0]
    intervals = rows["cell_low"].map(known).any()
    axes[0][0].set_ylabel(f"{metric}" + (" (95% intervals)" if intervals else ""))
    fig.suptitle(f"{task}: {metric} against measured speed-up" + (f"\n{protocol}" if protocol else ""), fontsize=10)
    missing = int((~rows["dense"].astype(bool) & rows["torch_x"].isna()).sum())
    threads = sorted({int(t) for t in rows["threads"] if known(t)})
    note = ("x: dense median / compacted median latency, batch 1, 128 tokens"
            + (f", {', '.join(map(str, threads))} thread(s)" if threads else "")
            + "; bars: [dense q1 / compacted q3, dense q3 / compacted q1] of the timed runs (timing spread, not a "
            "confidence interval); dense at 1× (the reference). y bars: the cell's 95% bootstrap interval where "
            "recorded. Labels: target sparsity. Hollow: chance cells (not on the front)."
            + (f" {missing} pruned cell(s) without a speed measurement are not shown." if missing else ""))  # fmt: skip
    fig.text(0.01, 0.01, note, fontsize=6.5, ha="left", va="bottom", wrap=True)
    entries: dict[str, Any] = {}  # every panel's entries, once each (a method may have no ONNX timing)
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    axes[0][-1].legend(list(entries.values()), list(entries), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       borderaxespad=0.0)  # fmt: skip
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
