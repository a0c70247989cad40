"""The plugin registries: a name two distributions register is refused unless BENCH_PLUGIN_PREFER picks one; the
``bench.architectures`` group adds prunable-weight tables (the built-ins register there too, loaded lazily); an
outside plugin's distribution and version enter the ids of the cells that use it, built-in cells keep theirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench.core import registry
from bench.core.errors import BenchError
from bench.core.registry import PREFER_ENV, Registry

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SRC = REPO / "tests" / "example_plugin" / "src"
SST2_RECORDS = REPO / "results" / "readme-sst2-seeds" / "cells"


def fake_distribution(root: Path, name: str, version: str, entry_points: str) -> Path:
    """An installed distribution as importlib.metadata finds it: ``root/<name>-<version>.dist-info`` with METADATA and
    entry_points.txt (the modules it points at may live anywhere on sys.path)."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


def two_randoms(tmp_path: Path) -> list[Path]:
    return [
        fake_distribution(tmp_path / "a", "alpha-prune", "1.0", "[bench.methods]\nrandom = alpha_mod:Random\n"),
        fake_distribution(tmp_path / "b", "beta_prune", "2.5", "[bench.methods]\nrandom = beta_mod:Random\n"),
    ]


# ---- duplicate names ------------------------------------------------------------------------------------------------
def test_a_name_two_distributions_register_is_refused_naming_both(tmp_path, monkeypatch):
    for path in two_randoms(tmp_path):
        monkeypatch.syspath_prepend(str(path))
    monkeypatch.delenv(PREFER_ENV, raising=False)
    with pytest.raises(BenchError) as caught:
        Registry("bench.methods", "method").names()
    message = str(caught.value)
    assert "\n" not in message
    assert "method name 'random' is registered by 2 distributions" in message
    assert "alpha-prune 1.0 (alpha_mod:Random)" in message and "beta_prune 2.5 (beta_mod:Random)" in message
    assert f"{PREFER_ENV}=random=" in message


def test_prefer_picks_one_distribution(tmp_path, monkeypatch):
    for path in two_randoms(tmp_path):
        monkeypatch.syspath_prepend(str(path))
    monkeypatch.setenv(PREFER_ENV, " random = Beta.Prune , other=x")  # names compare as PEP 503 does
    entry = Registry("bench.methods", "method").entry("random")
    assert (entry.package, entry.version, entry.entry_point.value) == ("beta_prune", "2.5", "beta_mod:Random")
    assert "magnitude" in Registry("bench.methods", "method").names()  # uncontested names are untouched


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("random", "expected name=distribution[,name=distribution...], got 'random'"),
        ("random=", "expected name=distribution"),
        ("random=gamma-prune", "picks 'gamma-prune' for method 'random', but 'random' is registered by alpha-prune"),
        ("random=alpha-prune,random=beta_prune", "'random' is given twice"),
    ],
)
def test_bad_prefer_is_refused(tmp_path, monkeypatch, value, words):
    for path in two_randoms(tmp_path):
        monkeypatch.syspath_prepend(str(path))
    monkeypatch.setenv(PREFER_ENV, value)
    with pytest.raises(BenchError, match="^" + PREFER_ENV) as caught:
        Registry("bench.methods", "method").names()
    assert words in str(caught.value)


def test_shadowing_a_builtin_is_refused_and_one_install_seen_twice_is_not(tmp_path, monkeypatch):
    monkeypatch.delenv(PREFER_ENV, raising=False)
    entry = "[bench.methods]\nmagnitude = mine:Magnitude\n"
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path / "a", "my-prune", "0.3", entry)))
    with pytest.raises(BenchError, match="'magnitude' is registered by 2 distributions: .*my-prune 0.3 .*prune-bench"):
        Registry("bench.methods", "method").names()
    monkeypatch.setenv(PREFER_ENV, "magnitude=prune-bench")
    assert Registry("bench.methods", "method").entry("magnitude").builtin


def test_one_distribution_on_two_paths_is_one_registration(tmp_path, monkeypatch):
    entry = "[bench.methods]\nrandom = alpha_mod:Random\n"
    for where in ("a", "b"):
        monkeypatch.syspath_prepend(str(fake_distribution(tmp_path / where, "alpha-prune", "1.0", entry)))
    assert Registry("bench.methods", "method").entry("random").package == "alpha-prune"


def test_cli_refuses_a_duplicate_in_one_line_with_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, two_randoms(tmp_path)))}
    env.pop(PREFER_ENV, None)
    out = subprocess.run([sys.executable, "-m", "bench", "ls", "methods"], capture_output=True, text=True, env=env,
                         cwd=tmp_path)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("bench: error: method name 'random' is registered")
    assert "alpha-prune" in out.stderr and "beta_prune" in out.stderr


# ---- architectures --------------------------------------------------------------------------------------------------
def test_builtin_architectures_register_through_entry_points_lazily():
    from bench.core import prunable

    fresh = Registry("bench.architectures", "architecture")
    assert fresh.names() == ["bert", "distilbert", "mpnet", "roberta"]
    assert all(entry.builtin for entry in fresh.entries.values())
    assert fresh.entry("mpnet").entry_point.value == "bench.core.prunable:MPNET"
    assert fresh._loaded == {}  # listing imports nothing
    assert fresh.get("mpnet") is prunable.MPNET and set(fresh._loaded) == {"mpnet"}
    assert list(prunable.ARCHITECTURES) == fresh.names()


def test_an_outside_architecture_table_makes_a_new_model_type_prunable(tmp_path, monkeypatch):
    from transformers import ElectraConfig, ElectraForSequenceClassification

    from bench.core.prunable import prunable_weights

    model = ElectraForSequenceClassification(ElectraConfig(vocab_size=100, embedding_size=16, hidden_size=32,
                                                           num_hidden_layers=2, num_attention_heads=2,
                                                           intermediate_size=64))  # fmt: skip
    with pytest.raises(BenchError, match="unsupported architecture 'electra': prunable weights are known for bert"):
        prunable_weights(model)
    entry = "[bench.architectures]\nelectra = example_prune_plugin.electra:ELECTRA\n"
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path, "example-prune-plugin", "0.1.0", entry)))
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    monkeypatch.setattr(registry, "architectures", Registry("bench.architectures", "architecture"))
    found = prunable_weights(model)
    assert len(found) == 12 and {pw.role for pw in found} == {"q", "k", "v", "o", "ffn_in", "ffn_out"}
    assert all(pw.name.startswith("electra.encoder.layer.") for pw in found)


def test_an_architecture_entry_that_is_not_a_table_is_refused(tmp_path, monkeypatch):
    from bench.core.prunable import architecture_for

    entry = "[bench.architectures]\nelectra = example_prune_plugin.electra:Architecture\n"
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path, "bad-arch", "0.1", entry)))
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    monkeypatch.setattr(registry, "architectures", Registry("bench.architectures", "architecture"))
    with pytest.raises(BenchError, match="entry point 'electra' of bad-arch 0.1 .* must be a bench.core.prunable.Arch"):
        architecture_for("electra")


# ---- cell ids -------------------------------------------------------------------------------------------------------
def quick_cells(methods: list[str], **fields):
    from bench.config.matrix import Matrix, expand

    return expand(Matrix(methods=methods, tasks=["sst2"], sparsities=[0.9], preset="quick", **fields))


def test_builtin_cells_keep_the_ids_of_committed_records():
    records = [json.loads(path.read_text()) for path in sorted(SST2_RECORDS.glob("*.json"))]
    assert len(records) >= 10
    for record in records:
        assert "plugins" not in record["cell"]
        from bench.config.cell import Cell

        assert Cell.from_dict(record["cell"]).id == record["id"]
    # a cell made today for the same point gets the id of its committed record (package versions aside)
    record = next(r for r in records if r["cell"]["method"] == "magnitude" and r["cell"]["seed"] == 0
                  and r["cell"]["sparsity"] == 0.9)  # fmt: skip
    (cell,) = [c for c in quick_cells(["magnitude"]) if c.method == "magnitude"]
    assert cell.plugins is None and "plugins" not in cell.to_dict()
    assert replace(cell, versions=record["cell"]["versions"]).id == record["id"]


def test_an_outside_plugins_distribution_and_version_enter_the_cell_id(tmp_path, monkeypatch):
    entry = "[bench.methods]\nrandom = example_prune_plugin.random_pruning:RandomPruning\n"
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    ids = {}
    for version in ("0.1.0", "0.2.0"):
        path = fake_distribution(tmp_path / version, "example-prune-plugin", version, entry)
        monkeypatch.syspath_prepend(str(path))
        monkeypatch.setattr(registry, "methods", Registry("bench.methods", "method"))
        (cell,) = [c for c in quick_cells(["random"]) if c.method == "random"]
        assert cell.plugins == {"method": {"name": "random", "distribution": "example-prune-plugin",
                                           "version": version}}  # fmt: skip
        assert cell.to_dict()["plugins"] == cell.plugins
        ids[version] = cell.id
        sys.path.remove(str(path))  # the next version replaces this one
    assert ids["0.1.0"] != ids["0.2.0"]
    from bench.config.cell import Cell

    assert Cell.from_dict(json.loads(json.dumps(cell.to_dict()))).id == cell.id  # records keep it
