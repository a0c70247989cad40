"""The speed Pareto view of ``bench plot`` (issue 17 item 4): metric against measured batch-1 speed-up, one point per
cell, from synthetic records (no model is trained)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.results import records
from bench.results.deployment import speed_interval
from bench.results.plots import write_plots
from bench.results.speed_plot import engines_of, pareto_front, speed_figure, speed_points
from tests.speed_records import record, speed, timings

SKIPPED = {"skipped": "onnxruntime is not installed"}


def matrix(onnx: bool = False) -> list[dict]:
    """sst2: dense at 80; movement 0.5 (1.25×, 78) and 0.9 (2×, 74), movement +structured (2.5×, 70) on the front;
    l0 (1.67×, 72) behind movement 0.9; magnitude 0.9 the fastest (4×) but a chance cell; magnitude 0.5 not timed."""
    onnx_block = timings((10.0, 9.0, 11.0), (4.0, 3.8, 4.4)) if onnx else None
    return [
        record("dense", 0.0, 80.0, speed_block=speed(compacted=(20.0, 19.0, 22.0))),
        record("movement", 0.5, 78.0, speed_block=speed(compacted=(16.0, 15.0, 17.0))),
        record("movement", 0.9, 74.0, speed_block=speed(compacted=(10.0, 9.0, 12.5), onnx=onnx_block)),
        record("movement", 0.9, 70.0, speed_block=speed(compacted=(8.0, 7.5, 9.0)), granularity="structured"),
        record("l0", 0.9, 72.0, speed_block=speed(compacted=(12.0, 11.0, 13.0), onnx=SKIPPED if onnx else None)),
        record("magnitude", 0.9, 51.0, speed_block=speed(compacted=(5.0, 4.5, 6.0)), chance=True),
        record("magnitude", 0.5, 77.0),
    ]


def cells(ax) -> list[tuple[float, float]]:
    """The plotted cell points of ``ax`` (every marker line with gid ``cells``), rounded and sorted."""
    lines = [line for line in ax.lines if line.get_gid() == "cells"]
    return sorted((round(float(x), 4), round(float(y), 4)) for line in lines for x, y in line.get_xydata())


def segments(ax) -> list[list[tuple[float, float]]]:
    """Every error-bar segment of ``ax`` as [(x0, y0), (x1, y1)], rounded."""
    return [[(round(x, 4), round(y, 4)) for x, y in seg] for c in ax.collections for seg in c.get_segments()]


def test_the_interval_is_the_ratio_of_the_latency_quartiles():
    point, low, high = speed_interval(speed(dense=(20.0, 19.0, 22.0), compacted=(10.0, 9.0, 12.5)))
    assert (point, low, high) == pytest.approx((2.0, 19.0 / 12.5, 22.0 / 9.0))  # 2.0 [1.52, 2.44]
    onnx = speed(onnx=timings((10.0, 9.0, 11.0), (4.0, 3.8, 4.4)))
    assert speed_interval(onnx, engine="onnx") == pytest.approx((2.5, 9.0 / 4.4, 11.0 / 3.8))
    for missing in (None, {}, speed(onnx=SKIPPED), {"latency_ms": "garbage"}):
        assert speed_interval(missing, engine="onnx") == (None, None, None), missing
    only_medians = {"latency_ms": {"batch_1": {"dense": {"median_ms": 30.0}, "compacted": {"median_ms": 20.0}}}}
    assert speed_interval(only_medians) == (pytest.approx(1.5), None, None)


def test_pareto_front_of_a_hand_example():
    x = [1.0, 2.0, 1.5, 3.0, 2.5, 3.0]
    y = [80.0, 76.0, 70.0, 60.0, 60.0, 60.0]
    assert pareto_front(x, y).tolist() == [True, True, False, True, False, True], "(1.5, 70) and (2.5, 60) dominated"
    lower = pareto_front([1.0, 2.0, 1.5, 1.8], [5.0, 9.0, 6.0, 9.5], greater_is_better=False).tolist()
    assert lower == [True, True, True, False], "a loss: (1.8, 9.5) is slower and worse than (2.0, 9.0)"


def test_one_point_per_timed_cell_dense_at_one_intervals_and_the_front():
    points = speed_points(matrix())
    assert len(points) == 7 and engines_of(points, "sst2") == ["torch"]
    figure = speed_figure(points, "sst2", "tiny · preset quick · 1 seed")
    (ax,) = figure.axes
    expected = [(1.0, 80.0), (1.25, 78.0), (2.0, 74.0), (2.5, 70.0), (1.6667, 72.0), (4.0, 51.0)]
    assert cells(ax) == sorted(expected), "one point per cell with a speed; the untimed one is left out"
    front = next(line for line in ax.lines if line.get_gid() == "front")
    assert front.get_xydata().tolist() == [[1.0, 80.0], [1.25, 78.0], [2.0, 74.0], [2.5, 70.0]], (
        "l0 is behind movement 0.9; the chance cell is not on the front"
    )
    bars = segments(ax)
    assert [(1.52, 74.0), (2.4444, 74.0)] in bars, "movement 0.9: [dense q1 / compacted q3, dense q3 / compacted q1]"
    assert [(2.0, 70.0), (2.0, 78.0)] in bars, "its metric interval, 74 ± 4"
    assert [(1.0, 76.0), (1.0, 84.0)] in bars and not any(s[0][1] == s[1][1] == 80.0 for s in bars), (
        "dense has its metric interval and no timing interval"
    )
    labels = ax.get_legend_handles_labels()[1]
    assert {"movement", "movement +structured", "l0", "magnitude", "dense (1×, 80.0)"} <= set(labels)
    assert any(label.startswith("baseline: majority class (50.0)") for label in labels)
    hollow = [line for line in ax.lines if line.get_gid() == "cells" and line.get_markerfacecolor() == "none"]
    assert [tuple(line.get_xydata()[0]) for line in hollow] == [(4.0, 51.0)], "the chance cell is hollow"
    note = figure.texts[-1].get_text()
    assert "[dense q1 / compacted q3, dense q3 / compacted q1]" in note and "2 thread(s)" in note
    assert "1 pruned cell(s) without a speed measurement are not shown" in note
    assert figure._suptitle.get_text().splitlines() == ["sst2: accuracy against measured speed-up",
                                                        "tiny · preset quick · 1 seed"]  # fmt: skip


def test_an_onnx_panel_when_records_have_onnx_timings():
    figure = speed_figure(speed_points(matrix(onnx=True)), "sst2")
    torch_ax, onnx_ax = figure.axes[:2]
    assert [ax.get_title() for ax in (torch_ax, onnx_ax)] == ["PyTorch (eager), compacted model",
                                                              "ONNX Runtime, compacted model"]  # fmt: skip
    assert len(cells(torch_ax)) == 6
    assert cells(onnx_ax) == [(1.0, 80.0), (2.5, 74.0)], "dense and the one cell with ONNX timings"
    assert [(round(9 / 4.4, 4), 74.0), (round(11 / 3.8, 4), 74.0)] in segments(onnx_ax)


def test_the_file_is_written_only_for_tasks_with_timed_cells_and_left_alone_when_unchanged(tmp_path):
    untimed = [record("dense", 0.0, 80.0, task="rte"), record("movement", 0.9, 60.0, task="rte")]
    for rec in [*matrix(onnx=True), *untimed]:
        records.write_record(tmp_path, rec)
    recs = records.read_records(tmp_path)
    names = [p.name for p in write_plots(tmp_path, recs)]
    assert names[:3] == ["pareto-rte.png", "pareto-sst2.png", "pareto-speed-sst2.png"], names
    assert not (tmp_path / "plots" / "pareto-speed-rte.png").exists()
    path = tmp_path / "plots" / "pareto-speed-sst2.png"
    before = path.stat().st_mtime_ns
    write_plots(tmp_path, records.read_records(tmp_path))
    assert path.stat().st_mtime_ns == before, "same inputs: the figure is not redrawn"

    from bench.results.report import build_report

    page = build_report(tmp_path, tmp_path / "elsewhere" / "page.html").read_text()
    assert 'alt="pareto-speed-sst2"' in page and 'alt="pareto-speed-rte"' not in page


def test_old_records_without_speed_give_no_speed_figure(tmp_path):
    for rec in (record("dense", 0.0, 80.0), record("movement", 0.9, 70.0)):
        records.write_record(tmp_path, rec)
    names = [p.name for p in write_plots(tmp_path, records.read_records(tmp_path))]
    assert names == ["pareto-sst2.png"]
    points = speed_points(records.read_records(tmp_path))
    assert engines_of(points, "sst2") == [] and np.isnan(points.loc[1, "torch_x"])
