"""``bench report``: one self-contained HTML page, rendered by headless Chromium (Debian's chromium package)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from PIL import Image, ImageStat

from bench.results.report import build_report
from bench.run.runner import run_matrix
from tests.conftest import needs_minilm
from tests.test_runner import tiny_matrix

pytestmark = needs_minilm
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from bench.methods.magnitude import Magnitude

    tmp_path = tmp_path_factory.mktemp("report")
    original = Magnitude.step

    def explode(self, step, total_steps, lr=None):
        raise RuntimeError("boom for the report")

    Magnitude.step = explode
    try:
        run_matrix(tiny_matrix(tmp_path, _tiny_model(tmp_path), sparsities=[0.5, 0.9]), log=lambda line: None)
    finally:
        Magnitude.step = original
    return build_report(tmp_path / "out")


def _tiny_model(tmp_path):
    from transformers import AutoTokenizer, BertModel

    from tests.conftest import MINILM, tiny_config

    path = tmp_path / "tiny"
    BertModel(tiny_config()).save_pretrained(path)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(path)
    return str(path)


def test_report_is_one_self_contained_page_with_table_plots_cells_and_failures(report):
    page = report.read_text()
    assert report.name == "report.html"
    for heading in ("Leaderboard", "Plots", "Cells", "Failures"):
        assert f"<h2>{heading}</h2>" in page
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert images[0] == "pareto-sst2" and sum(i.startswith("heatmap-movement") for i in images) == 1
    assert not re.search(r'(src|href)="(?!data:)', page), "no external files"
    assert "accuracy ↑" in page, "direction arrow"
    assert "<td>baseline (majority class" in page and "Paired sign-flip permutation test" in page, "baseline, legend"
    assert "critical-difference diagram skipped: 2 task@sparsity column(s)" in page
    assert "<th>verdicts</th>" in page
    assert page.count("<b>failed</b>") == 2 and "boom for the report" in page and "Traceback" in page
    assert page.count("<tr>") >= 5


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install chromium (CI installs it)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "report.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--screenshot={shot}", "--window-size=1280,1600", report.resolve().as_uri()]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    with Image.open(shot) as image:
        assert image.size == (1280, 1600)
        spread = ImageStat.Stat(image.convert("L")).stddev[0]
    assert spread > 20, "the page rendered content, not a blank screen"


def test_a_report_without_mask_files_keeps_the_heatmaps_and_says_so(report, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(report.parent, copy)
    shutil.rmtree(copy / "masks")  # e.g. a committed results folder: masks are not committed
    page = build_report(copy).read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert sum(i.startswith("heatmap-movement") for i in images) == 1, "the earlier heatmap stays in the report"
    err = capsys.readouterr().err
    assert "heatmap(s) skipped" in err and "no mask files" in err
