"""``bench plot``: the Pareto view (metric against remaining weights) per task, and per-layer sparsity heatmaps.

The Pareto plot is the view of Sanh, Wolf & Rush (2020), Figure 2: the primary metric against the fraction of
encoder weights remaining (log x-axis), one line per method with error bars over seeds, the dense model as a
horizontal line. The heatmap is layer × matrix type (Q, K, V, O, FFN in, FFN out) of one cell's saved masks: the
"topology" comparison of Gao, Colombo & Wang (2021).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.leaderboard import collect, summarize
from bench.records import find_cell
from bench.saved_masks import layer_sparsity, load_masks, masks_path

ROLE_LABELS = {"q": "Q", "k": "K", "v": "V", "o": "O", "ffn_in": "FFN in", "ffn_out": "FFN out"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_figure(summary: pd.DataFrame, task: str):
    """The Pareto figure of ``task`` from :func:`bench.leaderboard.summarize` rows (x: remaining fraction of the
    encoder's prunable weights, measured; y: mean primary metric with ± std bars)."""
    from matplotlib.ticker import FuncFormatter

    plt = _pyplot()
    rows = summary[summary["task"] == task]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    metric = rows["metric"].iloc[0]
    for method, group in rows[rows["method"] != "dense"].groupby("method"):
        group = group.assign(remaining=1.0 - group["encoder_sparsity"]).sort_values("remaining")
        ax.errorbar(group["remaining"], group["mean"], yerr=group["std"], marker="o", capsize=3, label=method)
    for _, dense in rows[rows["method"] == "dense"].iterrows():
        ax.axhline(dense["mean"], color="black", linestyle="--", linewidth=1, label=f"dense ({dense['mean']:.1f})")
    ax.set_xscale("log")
    percent = FuncFormatter(lambda value, _: f"{value:.0%}" if value >= 0.01 else f"{value:.1%}")
    ax.xaxis.set_major_formatter(percent)
    ax.xaxis.set_minor_formatter(percent)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("encoder weights remaining (measured, log scale)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(f"{task}: {metric} against remaining weights")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def heatmap_figure(frame: pd.DataFrame, title: str):
    """A layer × role heatmap of :func:`bench.saved_masks.layer_sparsity` (values: fraction pruned, 0–1)."""
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


def default_heatmap_cells(records: list[dict]) -> list[dict]:
    """One finished cell per pruning method: its highest target sparsity, lowest seed."""
    chosen: dict[str, dict] = {}
    for rec in records:
        if rec.get("status") != "finished" or rec["cell"]["sparsity"] == 0:
            continue
        key = (-rec["cell"]["sparsity"], rec["cell"]["seed"])
        method = rec["cell"]["method"]
        if method not in chosen or key < (-chosen[method]["cell"]["sparsity"], chosen[method]["cell"]["seed"]):
            chosen[method] = rec
    return [chosen[m] for m in sorted(chosen)]


def write_plots(output: Path, records: list[dict], cells: list[str] | None = None) -> list[Path]:
    """Write ``OUTPUT/plots/pareto-<task>.png`` per task and ``heatmap-<method>-<cell id>.png`` for the chosen cells
    (``cells``: id prefixes; default :func:`default_heatmap_cells` that have saved masks). Returns the paths.

    Raises:
        BenchError: no finished cells; a chosen cell without saved masks (cells run before masks were saved).
    """
    plt = _pyplot()
    summary = summarize(collect(records))
    if summary.empty:
        raise BenchError(f"no finished cells in {output}: nothing to plot")
    folder = Path(output) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for task in sorted(summary["task"].unique()):
        written.append(_save(plt, pareto_figure(summary, task), folder / f"pareto-{task}.png"))
    if cells:
        chosen = [find_cell(records, prefix) for prefix in cells]
    else:
        chosen = [r for r in default_heatmap_cells(records) if masks_path(output, r["id"]).exists()]
    for rec in chosen:
        path = masks_path(output, rec["id"])
        if not path.exists():
            raise BenchError(f"cell {rec['id'][:12]} has no saved masks at {path} (run before masks were saved?)")
        cell, measured = rec["cell"], rec["sparsity"]["encoder_sparsity"]
        title = (
            f"{cell['method']} on {cell['task']['name']}, target {cell['sparsity']:.0%} (measured {measured:.1%}), "
            f"seed {cell['seed']}, cell {rec['id'][:12]}"
        )
        figure = heatmap_figure(layer_sparsity(load_masks(path)), title)
        written.append(_save(plt, figure, folder / f"heatmap-{cell['method']}-{rec['id'][:12]}.png"))
    return written


def _save(plt, fig, path: Path) -> Path:
    fig.savefig(path)
    plt.close(fig)
    return path
