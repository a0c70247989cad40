"""``bench plot``: the Pareto views per task (metric against remaining weights; metric against the measured
speed-up, :mod:`bench.results.speed_plot`, where cells were timed), and per-layer sparsity heatmaps.

The Pareto plot is the view of Sanh, Wolf & Rush (2020), Figure 2: the primary metric against the fraction of
encoder weights remaining (log x-axis), one line per method with 95% interval bars, the dense model as a dashed and
the task's trivial baseline as a dotted horizontal line; chance rows are hollow markers. The heatmap is layer ×
matrix type (Q, K, V, O, FFN in, FFN out) of one cell's saved masks: the "topology" comparison of Gao, Colombo &
Wang (2021). The critical-difference diagram (Demšar 2006) ranks the pruned methods over all task@sparsity columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core.errors import BenchError
from bench.core.hub import short_model_name
from bench.results.annotate import is_true
from bench.results.cell_record import CellRecord
from bench.results.deployment import DEPLOYMENT_EXTRA
from bench.results.figure_files import inputs_digest, save_figure
from bench.results.figure_files import pyplot as _pyplot
from bench.results.folder import ResultsFolder
from bench.results.leaderboard import collect, summarize
from bench.results.records import find_cell
from bench.results.saved_masks import layer_sparsity, load_masks
from bench.results.speed_plot import engines_of, speed_figure, speed_points

ROLE_LABELS = {"q": "Q", "k": "K", "v": "V", "o": "O", "ffn_in": "FFN in", "ffn_out": "FFN out"}


def protocol_line(records: list[CellRecord], task: str) -> str:
    """``MiniLM-L6-v2 · preset quick · 3 seeds``: what the figure of ``task`` was measured with, from its finished
    records (cells from before the preset was recorded say so)."""
    done = [r for r in records if r.finished and r.cell["task"]["name"] == task]
    models = sorted({short_model_name(r.cell["model"]) for r in done})
    presets = sorted({str(r.get("preset")) for r in done if r.get("preset")})
    seeds = len({r.cell["seed"] for r in done})
    preset = f"preset {', '.join(presets)}" if presets else "preset not recorded"
    return f"{', '.join(models)} · {preset} · {seeds} seed{'s' if seeds != 1 else ''}"


def pareto_figure(summary: pd.DataFrame, task: str, protocol: str = ""):
    """The Pareto figure of ``task`` from :func:`bench.results.leaderboard.summarize` rows (x: remaining fraction of the
    encoder's prunable weights, measured; y: mean primary metric with its 95% interval as bars, none where not
    recorded; hollow markers: chance rows; dashed: dense; dotted: the trivial baseline). ``protocol``
    (:func:`protocol_line`) is the title's second line; the legend sits outside the axes, off the data."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    plt = _pyplot()
    rows = summary[summary["task"] == task]
    fig, ax = plt.subplots(figsize=(9.0, 4.4), dpi=120)
    metric = rows["metric"].iloc[0]
    pruned = rows[rows["role"] == "pruned"]
    for method, group in pruned.groupby("method"):
        group = group.assign(remaining=1.0 - group["encoder_sparsity"]).sort_values("remaining")
        low = (group["mean"] - group["ci_low"]).fillna(0.0).clip(lower=0.0)
        high = (group["ci_high"] - group["mean"]).fillna(0.0).clip(lower=0.0)
        line = ax.errorbar(group["remaining"], group["mean"], yerr=[low, high], capsize=3, label=method)[0]
        chance = np.array([is_true(v) for v in group["chance"]], dtype=bool)
        for hollow in (False, True):
            part = group[chance == hollow]
            ax.plot(part["remaining"], part["mean"], "o", linestyle="none", color=line.get_color(),
                    markerfacecolor="none" if hollow else line.get_color())  # fmt: skip
    for _, dense in rows[rows["role"] == "dense"].iterrows():
        ax.axhline(dense["mean"], color="black", linestyle="--", linewidth=1, label=f"dense ({dense['mean']:.1f})")
    for _, base in rows[rows["role"] == "baseline"].iterrows():
        ax.axhline(base["mean"], color="gray", linestyle=":", linewidth=1.5,
                   label=f"baseline: {base['description']} ({base['mean']:.1f})")  # fmt: skip
    remaining = sorted(set(1.0 - pruned["encoder_sparsity"]))
    if len(remaining) == 1 and remaining[0] > 0:  # one x only: a log axis needs a range around it
        ax.set_xlim(remaining[0] / 1.5, min(1.0, remaining[0] * 1.5))
    handles, _ = ax.get_legend_handles_labels()
    if any(is_true(v) for v in pruned["chance"]):
        handles.append(Line2D([], [], marker="o", linestyle="none", color="gray", markerfacecolor="none",
                              label="hollow: chance (within the baseline's interval)"))  # fmt: skip
    ax.set_xscale("log")
    percent = FuncFormatter(lambda value, _: f"{value:.0%}" if value >= 0.01 else f"{value:.1%}")
    ax.xaxis.set_major_formatter(percent)
    ax.xaxis.set_minor_formatter(percent)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("encoder weights remaining (measured, log scale)")
    ax.set_ylabel(f"{metric} (%), 95% intervals")
    ax.set_title(f"{task}: {metric} against remaining weights" + (f"\n{protocol}" if protocol else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def critical_difference_figure(result: dict):
    """The critical-difference diagram of a :func:`bench.results.significance.critical_difference` result: mean ranks of
    the pruned methods over the columns (rank 1 = best), bars joining methods the Nemenyi test cannot tell apart."""
    from bench.results.ranks import critical_difference_plot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 0.35 * len(result["mean_ranks"]) + 2.0), dpi=120)
    critical_difference_plot(result, ax)
    from bench.results.significance import friedman_text

    friedman = friedman_text(result["friedman_p"])
    fig.suptitle(
        f"mean rank of the pruned methods over {result['n_blocks']} task@sparsity columns (1 = best)\n"
        f"Friedman p = {friedman}; Nemenyi critical difference {result['critical_difference']:.2f} "
        f"(α = {result['alpha']}): methods joined by a bar do not differ significantly",
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def heatmap_figure(frame: pd.DataFrame, title: str):
    """A layer × role heatmap of :func:`bench.results.saved_masks.layer_sparsity` (values: fraction pruned, 0–1)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(frame) + 1.6), dpi=120)
    image = ax.imshow(frame.to_numpy(), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(frame.columns)), [ROLE_LABELS.get(c, c) for c in frame.columns])
    ax.set_yticks(range(len(frame.index)), [f"layer {i}" for i in frame.index])
    for (i, j), value in pd.DataFrame(frame.to_numpy()).stack().items():
        ax.text(j, i, f"{value:.0%}", ha="center", va="center", color="white" if value < 0.6 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, label="fraction pruned")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def default_heatmap_cells(records: list[CellRecord]) -> list[CellRecord]:
    """One finished cell per pruning method (target sparsity above 0): its highest target sparsity, lowest seed;
    sorted by method name."""
    chosen: dict[str, CellRecord] = {}
    for rec in records:
        if not rec.finished or rec.cell["sparsity"] == 0:
            continue
        key = (-rec.cell["sparsity"], rec.cell["seed"])
        method = rec.cell["method"]
        if method not in chosen or key < (-chosen[method].cell["sparsity"], chosen[method].cell["seed"]):
            chosen[method] = rec
    return [chosen[m] for m in sorted(chosen)]


CD_FILE = "critical-difference.png"


def file_part(name: str) -> str:
    """``name`` (a method or task name from a record) as a safe part of a file name: letters, digits, ``._+-``;
    anything else (a ``/``, ``..``, markup) becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", str(name)).strip(".") or "_"


def write_plots(
    output: Path,
    records: list[CellRecord],
    cells: list[str] | None = None,
    log: Callable[[str], None] = lambda line: None,
    to: Path | None = None,
) -> list[Path]:
    """Write, from ``records`` (:func:`bench.results.records.read_records` of ``output``),
    ``OUTPUT/plots/pareto-<task>.png`` per task, ``pareto-speed-<task>.png`` per task with cells timed with
    ``--measure-speed`` (:func:`bench.results.speed_plot.speed_figure`), :data:`CD_FILE` (the critical-difference
    diagram, only with at least 3 task@sparsity columns; else ``log`` gets one line saying why it was skipped) and
    ``heatmap-<method>-<cell id>.png`` for the chosen cells (``cells``: id prefixes; default
    :func:`default_heatmap_cells` that have saved masks). A default cell whose mask file is corrupt is skipped and
    ``log`` gets one line naming the file. File names take method and task names through :func:`file_part`.
    Returns the paths. ``to``: write into this folder instead of ``OUTPUT/plots``. A file drawn from the same
    inputs as before is left untouched (:mod:`bench.results.figure_files`).

    Raises:
        BenchError: no finished cells; a chosen (``cells``) cell without saved masks (cells run before masks were
            saved), or with a corrupt mask file.
    """
    plt = _pyplot()
    summary = summarize(collect(records))
    if summary.empty:
        raise BenchError(f"no finished cells in {output}: nothing to plot")
    folder = Path(to) if to is not None else ResultsFolder(output).plots
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    points = speed_points(records)
    for task in sorted(summary["task"].unique()):
        protocol = protocol_line(records, task)
        rows = summary[summary["task"] == task].drop(columns=DEPLOYMENT_EXTRA, errors="ignore")  # digest as before
        draw = partial(pareto_figure, summary, task, protocol)
        written.append(save_figure(plt, draw, folder / f"pareto-{file_part(task)}.png",
                                   inputs_digest("pareto", rows.to_dict("records"), protocol)))  # fmt: skip
        if engines_of(points, task):  # cells timed with --measure-speed
            digest = inputs_digest("pareto-speed", points[points["task"] == task].to_dict("records"), protocol)
            draw = partial(speed_figure, points, task, protocol)
            written.append(save_figure(plt, draw, folder / f"pareto-speed-{file_part(task)}.png", digest))
    from bench.results.significance import critical_difference

    result, reason = critical_difference(summary)
    (folder / CD_FILE).unlink(missing_ok=True)  # never leave a stale diagram of an earlier, larger matrix
    if result is None:
        log(reason)
    else:
        written.append(save_figure(plt, partial(critical_difference_figure, result), folder / CD_FILE,
                             inputs_digest("critical-difference", result)))  # fmt: skip
    if cells:
        chosen = [find_cell(records, prefix) for prefix in cells]
    else:
        candidates = default_heatmap_cells(records)
        chosen = [r for r in candidates if ResultsFolder(output).masks(r.id).exists()]
        if len(chosen) < len(candidates):
            missing = ", ".join(r.cell["method"] for r in candidates if r not in chosen)
            log(
                f"warning: {len(candidates) - len(chosen)} heatmap(s) skipped ({missing}): no mask files in "
                f"{ResultsFolder(output).masks('x').parent}; earlier heatmap files are kept"
            )
    for rec in chosen:
        path = ResultsFolder(output).masks(rec.id)
        if not path.exists():
            raise BenchError(f"cell {rec.id[:12]} has no saved masks at {path} (run before masks were saved?)")
        cell, measured = rec.cell, rec.sparsity["encoder_sparsity"]
        title = (
            f"{cell['method']} on {cell['task']['name']}, target {cell['sparsity']:.0%} (measured {measured:.1%}), "
            f"seed {cell['seed']}, cell {rec.id[:12]}"
        )
        try:
            masks = load_masks(path)
        except BenchError as err:
            if cells:
                raise
            log(f"warning: skipped the heatmap of cell {rec.id[:12]}: {err}")
            continue
        frame = layer_sparsity(masks)
        name = f"heatmap-{file_part(cell['method'])}-{file_part(rec.id[:12])}.png"
        digest = inputs_digest("heatmap", frame.to_dict(), title)
        written.append(save_figure(plt, partial(heatmap_figure, frame, title), folder / name, digest))
    return written
