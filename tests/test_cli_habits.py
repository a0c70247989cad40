"""CLI habits (issue 16): --version, a fast --help that does not import torch, help for every positional."""

from __future__ import annotations

import subprocess
import sys

import bench
from bench.cli.app import build_parser


def test_version():
    out = subprocess.run([sys.executable, "-m", "bench", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"bench {bench.__version__}"
    assert bench.__version__[0].isdigit()


def test_help_does_not_import_torch():
    code = "import sys; from bench.cli.app import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_public_api_loads_on_first_use():
    from bench.core.method import PruningMethod

    assert bench.PruningMethod is PruningMethod
    public = {"PruningMethod", "Task", "Mask", "StraightThroughMask", "PrunableWeight", "BenchError"}
    assert public <= set(bench.__all__)


def test_every_positional_argument_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    missing = [f"{name} {action.dest}" for name, sub in commands.items() for action in sub._actions
               if not action.option_strings and not action.help]  # fmt: skip
    assert missing == []


def test_ls_reads_descriptions_without_importing_torch():
    """``bench ls methods`` reads each class's literal ``description`` from its source (under 1 s: no torch); a
    plugin whose description is not a literal (the GLUE tasks built from YAML) is imported and still listed."""
    code = ("import sys; from bench.cli.app import main; main(['ls', 'methods']); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "movement pruning: local top-k of learned scores" in out and out.split()[-1] == "False"
    from bench.core import registry
    from bench.core.plugin_entries import static_description

    assert static_description(registry.tasks.entry("sst2").entry_point) is None  # built from YAML on first use
    assert "SST-2" in registry.tasks.entry("sst2").describe()
