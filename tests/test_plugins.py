"""Third-party plugins are found through entry points, exactly like the built-ins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = textwrap.dedent(
    '''
    """A throwaway third-party pruning method."""
    import torch

    from bench.core.method import PruningMethod


    class Random(PruningMethod):
        """Prunes a random subset once, at the end (random scores from the cell's seed)."""

        name = "random_prune"
        description = "random pruning from a third-party package"

        def scores(self):
            generator = torch.Generator().manual_seed(self.seed)
            return {name: torch.rand(mask.mask.shape, generator=generator) for name, mask in self.masks.items()}
    '''
)


def make_plugin(root: Path) -> Path:
    """A minimal installed distribution: a module plus a .dist-info with entry_points.txt."""
    (root / "thirdparty_prune.py").write_text(PLUGIN)
    info = root / "thirdparty_prune-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-prune\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bench.methods]\nrandom_prune = thirdparty_prune:Random\n")
    return root


def bench_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli.app", *args], capture_output=True, text=True, env=env)


def test_third_party_method_is_listed_next_to_builtins(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(make_plugin(tmp_path))}
    out = bench_cli("ls", "methods", env=env)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[2:]}
    assert "random_prune" in rows and "thirdparty-prune" in rows["random_prune"]
    assert "random pruning from a third-party package" in rows["random_prune"]
    assert {"dense", "magnitude", "movement"} <= set(rows)
    assert "prune-bench" in rows["movement"]


def test_third_party_method_passes_the_lifecycle(tmp_path, tiny_bert, monkeypatch):
    monkeypatch.syspath_prepend(str(make_plugin(tmp_path)))
    from bench.core.registry import Registry
    from bench.core.sparsity import measure_sparsity

    method = Registry("bench.methods", "method").get("random_prune")(0.5)
    method.prepare(tiny_bert)
    method.finalize(tiny_bert)
    assert abs(measure_sparsity(tiny_bert).encoder_sparsity - 0.5) <= 0.005


def test_cli_unknown_method_exits_2_with_did_you_mean(tmp_path):
    out = bench_cli("run", "--methods", "magnitud", "--tasks", "mnli", "--sparsities", "0.5",
                    "--output", str(tmp_path / "r"), env=dict(os.environ))  # fmt: skip
    assert out.returncode == 2
    assert "unknown method 'magnitud'. Did you mean 'magnitude'" in out.stderr
    assert not (tmp_path / "r").exists()


def test_cli_bad_sparsity_exits_2(tmp_path):
    out = bench_cli("run", "--methods", "dense", "--tasks", "mnli", "--sparsities", "0.5,abc",
                    "--output", str(tmp_path / "r"), env=dict(os.environ))  # fmt: skip
    assert out.returncode == 2 and "sparsities: 'abc' is not a float" in out.stderr
