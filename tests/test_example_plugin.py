"""The example outside package (tests/example_plugin: a method, a task and an architecture table behind entry points)
really installed, into a temporary folder and never into the project's venv, then used as a user would: ``bench ls``
lists it, the installed conformance suites pass on it, its version enters its cells' ids, and a second distribution
that registers the same name is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core.registry import PREFER_ENV
from tests.test_plugin_registry import fake_distribution

EXAMPLE = Path(__file__).resolve().parent / "example_plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --target`` of a copy of the example (pip's build folder stays out of the source tree)."""
    root = tmp_path_factory.mktemp("example-plugin")
    source, target = root / "source", root / "site"
    shutil.copytree(EXAMPLE, source)
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
           "--disable-pip-version-check", "--target", str(target), str(source)]  # fmt: skip
    out = subprocess.run(pip, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"pip cannot build the example plugin offline: {(out.stderr or out.stdout).strip()[-500:]}")
    return target


def run(*args: str, path: list[Path], env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess:
    """A fresh Python process with ``path`` on PYTHONPATH (as if installed there), outside the repository."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, path)), **(env or {})}
    if env is None or PREFER_ENV not in env:
        environ.pop(PREFER_ENV, None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=environ, cwd=cwd)


def listed(out: subprocess.CompletedProcess) -> dict[str, str]:
    assert out.returncode == 0, out.stderr
    return {line.split()[0]: line for line in out.stdout.splitlines()[2:]}


def test_bench_ls_lists_its_method_and_task(installed, tmp_path):
    methods = listed(run("-m", "bench", "ls", "methods", path=[installed], cwd=tmp_path))
    assert "example-prune-plugin" in methods["random"] and "random pruning on the cubic schedule" in methods["random"]
    assert "prune-bench" in methods["magnitude"]
    tasks = listed(run("-m", "bench", "ls", "tasks", path=[installed], cwd=tmp_path))
    assert "example-prune-plugin" in tasks["boolq"] and "prune-bench" in tasks["sst2"]


def test_the_installed_conformance_suites_pass_on_it(installed, tmp_path):
    code = """if True:
        from transformers import ElectraConfig, ElectraForQuestionAnswering

        from bench.core.prunable import prunable_weights
        from bench.testing import check_method, check_task

        print(len(check_method("random")), len(check_task("boolq")))
        model = ElectraForQuestionAnswering(ElectraConfig(vocab_size=99, embedding_size=16, hidden_size=32,
                                            num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
        print(len(prunable_weights(model)))
    """
    out = run("-c", code, path=[installed], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["9", "7", "12"]  # the checks of a method that trains its weights; of a task; Linears


def test_its_version_enters_its_cells_ids(installed, tmp_path):
    from transformers import ElectraConfig

    ElectraConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2).save_pretrained(tmp_path)
    code = """if True:
        import json, sys
        from bench.config.matrix import Matrix, expand

        cells = expand(Matrix(methods=["random", "magnitude"], tasks=["boolq", "sst2"], sparsities=[0.5]))
        cells += expand(Matrix(methods=["magnitude"], tasks=["sst2"], sparsities=[0.5], model=sys.argv[1]))
        model = lambda c: "electra" if c.model == sys.argv[1] else "minilm"
        print(json.dumps({f"{c.method}/{c.task_name}/{model(c)}": c.to_dict().get("plugins") for c in cells}))
    """
    out = run("-c", code, str(tmp_path), path=[installed], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    origin = {"distribution": "example-prune-plugin", "version": "0.1.0"}
    assert json.loads(out.stdout) == {
        "magnitude/boolq/minilm": {"task": {"name": "boolq", **origin}},
        "magnitude/sst2/minilm": None,  # built-in plugins only: no 'plugins', the id of the same cell without it
        "random/boolq/minilm": {"method": {"name": "random", **origin}, "task": {"name": "boolq", **origin}},
        "random/sst2/minilm": {"method": {"name": "random", **origin}},
        "magnitude/sst2/electra": {"architecture": {"name": "electra", **origin}},  # an ELECTRA model's cells
    }


def test_a_second_distribution_with_the_same_name_is_refused(installed, tmp_path):
    other = fake_distribution(tmp_path / "other", "other-prune", "2.0", "[bench.methods]\nrandom = other:Random\n")
    out = run("-m", "bench", "ls", "methods", path=[installed, other], cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "bench: error: method name 'random' is registered by 2 distributions: example-prune-plugin 0.1.0 "
        "(example_prune_plugin.random_pruning:RandomPruning) and other-prune 2.0 (other:Random); uninstall one, or "
        f"choose one with the environment variable {PREFER_ENV}, e.g. {PREFER_ENV}=random=example-prune-plugin"
    )
    chosen = run("-m", "bench", "ls", "methods", path=[installed, other], cwd=tmp_path,
                 env={PREFER_ENV: "random=example-prune-plugin"})  # fmt: skip
    assert "example-prune-plugin" in listed(chosen)["random"]


@pytest.mark.parametrize("module", ["random_pruning", "boolq", "electra"])
def test_the_readme_shows_the_example_as_it_is(module):
    """The README's "Adding a method / a task / an architecture" code is the tested example's code, verbatim."""
    import re
    import textwrap

    readme = (EXAMPLE.parent.parent / "README.md").read_text()
    blocks = [textwrap.dedent(block).strip() for block in re.findall(r"```python\n(.*?)```", readme, re.S)]
    source = (EXAMPLE / "src" / "example_prune_plugin" / f"{module}.py").read_text()
    body = source.split('"""', 2)[2].strip()  # without the module docstring
    assert body in blocks
