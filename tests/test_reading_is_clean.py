"""Reading never damages committed results (issue 16, item 3): every reading command, in any order, on the committed
results folders leaves ``git status`` clean.

The committed folders are copied as a fresh clone has them (``git ls-files``: no masks, models or databases) into a
new git repository with the project's .gitignore, committed, and read with every reading command; a figure whose
data did not change is left untouched (bench/results/figure_files.py) and a new one is ignored. This also checks
that the committed figures are current: after a change to the drawing code, regenerate them (``bench plot`` and
``bench report`` on the folder) and bump ``DRAWING_VERSION``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def bench(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The committed results folders with records, as a fresh clone has them, in a new git repository."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a checkout of prune-bench")
    repo = tmp_path_factory.mktemp("clone")
    for name in git(ROOT, "ls-files", "results").splitlines():
        if Path(name).parts[1].startswith("readme-"):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    shutil.copy2(ROOT / ".gitignore", repo / ".gitignore")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "committed results")
    return repo


def folders(repo: Path) -> list[str]:
    return sorted(str(p.parent.relative_to(repo)) for p in (repo / "results").glob("readme-*/cells"))


def test_every_reading_command_leaves_git_status_clean(clone):
    assert len(folders(clone)) >= 5, folders(clone)
    for folder in folders(clone):
        commands = [["leaderboard", folder], ["leaderboard", folder, "--format", "latex"], ["plot", folder],
                    ["report", folder], ["plot", folder]]  # fmt: skip
        for command in commands:
            proc = bench(clone, *command)
            assert proc.returncode == 0, (command, proc.stderr[-2000:])
            assert git(clone, "status", "--porcelain") == "", (command, git(clone, "status", "--porcelain"))
    proc = bench(clone, "compare", "results/readme-quick", "results/readme-pareto", "--force")
    assert proc.returncode in (0, 2), proc.stderr[-2000:]
    assert git(clone, "status", "--porcelain") == ""


def test_out_writes_elsewhere_and_nothing_into_the_folder(clone, tmp_path):
    before = git(clone, "status", "--porcelain", "--ignored")
    proc = bench(clone, "report", "results/readme-pareto", "--out", str(tmp_path / "page.html"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = bench(clone, "plot", "results/readme-quick", "--out", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "page.html").read_text().startswith("<!doctype html>")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert git(clone, "status", "--porcelain", "--ignored") == before, "nothing new in the results folders"
