"""The leaderboard's deployment columns (issue 17 items 4 and 5): measured speed-ups (PyTorch at batch 1 and 32,
ONNX Runtime at batch 1) and the encoder's stored bytes against its dense bytes beside the whole file, shown only
when some record has them; records from before them read as before."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.results import leaderboard, records
from bench.results.deployment import DEPLOYMENT_EXTRA, deployment
from bench.results.leaderboard import board, collect, pivot
from bench.results.render import render_board
from tests.speed_records import record, speed, timings

ONNX = timings((10.0, 9.0, 11.0), (4.0, 3.8, 4.4))  # 2.5× at batch 1


def new_records() -> list[dict]:
    return [
        record("dense", 0.0, 80.0, speed_block=speed(compacted=(20.0, 19.0, 22.0)), encoder=(42_500_000, 42_500_000)),
        record("movement", 0.9, 74.0, speed_block=speed(onnx=ONNX), encoder=(4_250_000, 42_500_000)),
        record("l0", 0.9, 72.0, speed_block=speed(onnx={"skipped": "onnxruntime is not installed"})),
    ]


def old_records() -> list[dict]:
    """As records were before issue 17: export without the encoder's bytes, speed without ONNX (or none at all)."""
    return [record("dense", 0.0, 80.0), record("movement", 0.9, 74.0, speed_block=speed())]


def table_of(recs: list[dict]) -> str:
    return render_board(board(collect(recs)), "md").split("\n\n")[0]


def test_deployment_reads_the_new_keys_and_none_where_a_record_lacks_them():
    moved, l0 = (deployment(r) for r in new_records()[1:])
    assert moved["encoder_mb"] == 4.25 and moved["encoder_dense_mb"] == 42.5 and moved["encoder_ratio"] == 0.1
    assert moved["onnx_speed_up_b1_compacted"] == 2.5 and moved["onnx_speed_up_b32_compacted"] == pytest.approx(2.25)
    assert moved["speed_up_b1_compacted"] == 2.0 and moved["speed_up_b32_compacted"] == pytest.approx(1.8)
    assert {k: l0[k] for k in DEPLOYMENT_EXTRA} == dict.fromkeys(DEPLOYMENT_EXTRA), "skipped ONNX, no encoder bytes"
    bare = deployment({"export": {"sparse_bytes": 1, "encoder_bytes": "n/a"}, "speed": {"onnx": "garbage"}})
    assert {k: bare[k] for k in DEPLOYMENT_EXTRA} == dict.fromkeys(DEPLOYMENT_EXTRA), "never a crash on odd values"


def test_long_board_has_encoder_and_onnx_columns_only_when_recorded():
    new = table_of(new_records())
    header = [h.strip() for h in new.splitlines()[0].strip("|").split("|")]
    assert header[header.index("file") :] == ["file", "encoder file", "structure", "speed-up b1", "speed-up b32",
                                              "ONNX b1"]  # fmt: skip
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in new.splitlines()[2:]]
    rows = {row[header.index("method")]: row for row in cells}
    movement = rows["movement"]
    assert movement[header.index("encoder file")] == "4.2 of 42.5 MB (10%)"
    assert movement[header.index("file")] == "50.0 MB (56%)"
    assert movement[header.index("speed-up b1")] == "2.00× (csr 0.50×)"
    assert movement[header.index("speed-up b32")] == "1.80×"
    assert movement[header.index("ONNX b1")] == "2.50×"
    assert rows["l0"][header.index("encoder file")] == "—" and rows["l0"][header.index("ONNX b1")] == "—"
    baseline = rows["baseline (majority class)"]
    assert baseline[header.index("encoder file")] == baseline[header.index("ONNX b1")] == "", "like its other cells"
    old = table_of(old_records())
    assert "encoder file" not in old and "ONNX b1" not in old, "empty in every row: dropped"
    assert "speed-up b1" in old and "file" in old
    latex = render_board(board(collect(old_records())), "latex")
    assert "encoder file" not in latex and "ONNX b1" not in latex, "LaTeX's escaped dash counts as empty too"
    assert "encoder file" in render_board(board(collect(new_records())), "latex")


def test_the_leaderboard_table_names_encoder_bytes_and_onnx_beside_file_and_speed():
    table = pivot(board(collect(new_records())))
    text = table.loc["movement"].iloc[0]
    assert "50 MB (encoder 4.2 of 42.5 MB), 2.00× b1 (ONNX 2.50×))" in text, text
    assert table.loc["l0"].iloc[0].endswith("50 MB, 2.00× b1)"), "no encoder bytes, ONNX skipped: as before"
    old = pivot(board(collect(old_records())))
    assert old.loc["movement"].iloc[0].endswith("(sp 90.0%, 2.0M, 50 MB, 2.00× b1)")


def test_legend_explains_the_new_columns_only_when_they_are_shown():
    from bench.results.annotate import ENCODER, ONNX, legend_lines

    assert {ENCODER, ONNX} <= set(legend_lines(board(collect(new_records()))))
    assert not {ENCODER, ONNX} & set(legend_lines(board(collect(old_records()))))


@pytest.mark.parametrize("new", [True, False])
def test_csv_gets_the_new_columns_only_when_recorded(tmp_path, new):
    for rec in new_records() if new else old_records():
        records.write_record(tmp_path, rec)
    leaderboard.write(tmp_path)
    frame = pd.read_csv(tmp_path / "leaderboard.csv")
    assert set(DEPLOYMENT_EXTRA) <= set(frame.columns) if new else not set(DEPLOYMENT_EXTRA) & set(frame.columns)
    if new:
        assert frame.set_index("method").loc["movement", "encoder_ratio"] == pytest.approx(0.1)
    else:
        assert list(frame.columns) == [c for c in leaderboard.COLUMNS if c not in DEPLOYMENT_EXTRA], "as before"
