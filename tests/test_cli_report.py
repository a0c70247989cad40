"""The reading commands end to end through ``bench.cli.app.main``: leaderboard formats, filters, reference rows,
plot, report and compare on a folder of synthetic records."""

from __future__ import annotations

import pytest

from bench.cli.app import main
from bench.results import records
from tests.test_leaderboard import RECORDS


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "res"
    for rec in RECORDS:
        rec = {**rec, "cell": {**rec["cell"], "model": "bert-base-uncased", "budget": {}}, "wall_seconds": 5.0}
        records.write_record(out, rec)
    return out


def test_leaderboard_formats_and_filters(folder, capsys):
    assert main(["leaderboard", str(folder), "--format", "csv", "--methods", "l0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("method,task,target_sparsity") and len(lines) == 3
    assert [line.split(",")[0] for line in lines[1:]] == ["dense", "l0"]
    assert main(["leaderboard", str(folder), "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("| task   | sparsity   | method"), "an explicit format: the long board"
    assert main(["leaderboard", str(folder)]) == 0
    assert capsys.readouterr().out.startswith("| method "), "no option: the leaderboard.md table"
    assert not (folder / "leaderboard.md").exists(), "a reading command writes nothing into the results folder"
    assert main(["leaderboard", str(folder), "--out", str(folder.parent / "lb")]) == 0
    printed = capsys.readouterr().out
    written = (folder.parent / "lb").read_text()
    assert written.startswith(printed.strip()) and "## Cells" in written
    assert (folder.parent / "lb.csv").read_text().startswith("cell_id,model,method,")
    assert main(["leaderboard", str(folder), "--format", "latex"]) == 0
    out = capsys.readouterr().out
    assert "71.00 [58.3, 83.7]" in out and "\\textbf" not in out, "old records, no predictions: nothing is bold"
    assert "Not tested, so nothing is marked: mnli @ 90\\% (no per-example predictions" in out
    assert main(["leaderboard", str(folder), "--sparsity", "0.5"]) == 2
    assert "no cells at sparsity 0.5; present: 0.9" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["leaderboard", str(folder), "--format", "pdf"])
    assert exit_info.value.code == 2


def test_leaderboard_reference_adds_the_papers_rows_for_the_same_model_task_and_sparsity(folder, capsys):
    assert main(["leaderboard", str(folder), "--reference"]) == 0
    out = capsys.readouterr().out
    assert "[paper] movement (Sanh, Wolf & Rush 2020 (arXiv 2005.07683), Table 2)" in out
    assert "79.30" in out, "movement, 10% remaining, MNLI matched, Table 2"
    assert "[paper] dense" in out and "84.50" in out
    assert "squad" not in out, "only the tasks measured"


def test_plot_report_and_compare_commands(folder, tmp_path, capsys):
    assert main(["plot", str(folder)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("pareto-mnli.png")
    first, second = captured.err.strip().splitlines()
    assert first == ("bench: critical-difference diagram skipped: 1 task@sparsity column(s), and the "
                     "Friedman/Nemenyi comparison needs at least 3")  # fmt: skip
    assert second.startswith("bench: warning: 2 heatmap(s) skipped (l0, movement): no mask files"), second
    assert main(["report", str(folder)]) == 0
    assert (folder / "report.html").exists()
    assert main(["compare", str(folder), str(folder)]) == 0
    assert "5 cells in both; 0 only in" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_a_full_disk_is_one_clear_line_and_exit_1(folder, monkeypatch, capsys):
    import errno

    def full(output, to):
        raise OSError(errno.ENOSPC, "No space left on device", str(output / "leaderboard.md"))

    monkeypatch.setattr("bench.results.leaderboard.write", full)
    assert main(["leaderboard", str(folder), "--out", str(folder / "leaderboard.md")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bench: error: disk full ({folder / 'leaderboard.md'})") and "rerun" in err
