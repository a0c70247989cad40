"""``bench plot``: Pareto PNG per task and per-layer heatmaps from saved masks, on a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from bench.core.errors import BenchError
from bench.results import records
from bench.results.plots import default_heatmap_cells, write_plots
from bench.run.runner import run_matrix
from tests.conftest import needs_minilm
from tests.test_runner import tiny_matrix

pytestmark = needs_minilm


def test_plots_one_pareto_per_task_and_one_heatmap_per_method(tmp_path, tiny_model_dir):
    matrix = tiny_matrix(tmp_path, tiny_model_dir, sparsities=[0.5, 0.9])
    run_matrix(matrix, log=lambda line: None)
    recs = records.read_records(matrix.output)
    chosen = default_heatmap_cells(recs)
    assert [(r["cell"]["method"], r["cell"]["sparsity"]) for r in chosen] == [("magnitude", 0.9), ("movement", 0.9)]
    assert {r["preset"] for r in recs} == {"quick"}, "the preset is recorded beside the cell"

    # The Pareto title names the model, the preset and the seeds; the legend sits right of the axes, off the data.
    from bench.results.leaderboard import collect, summarize
    from bench.results.plots import pareto_figure, protocol_line

    figure = pareto_figure(summarize(collect(recs)), "sst2", protocol_line(recs, "sst2"))
    axes = figure.axes[0]
    assert axes.get_title().splitlines() == ["sst2: accuracy against remaining weights",
                                             f"{Path(tiny_model_dir).name} · preset quick · 1 seed"]  # fmt: skip
    figure.canvas.draw()
    legend = axes.get_legend().get_window_extent()
    assert legend.x0 >= axes.get_window_extent().x1, "the legend starts right of the plotting area"

    skipped: list[str] = []
    written = write_plots(matrix.output, recs, log=skipped.append)
    names = sorted(p.name for p in written)
    assert names[-1] == "pareto-sst2.png" and len(names) == 3
    assert skipped == ["critical-difference diagram skipped: 2 task@sparsity column(s), and the Friedman/Nemenyi "
                       "comparison needs at least 3"]  # fmt: skip
    assert not (matrix.output / "plots" / "critical-difference.png").exists()
    assert names[0].startswith("heatmap-magnitude-") and names[1].startswith("heatmap-movement-")
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] >= 600

    one = write_plots(matrix.output, recs, cells=[chosen[0]["id"][:8]])
    assert sum(p.name.startswith("heatmap") for p in one) == 1
    with pytest.raises(BenchError, match="no cell with id starting 'zzz'"):
        write_plots(matrix.output, recs, cells=["zzz"])
