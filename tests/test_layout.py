"""The house: bench/ reads as its wings, without import cycles, in small modules (issue 15).

The wings, lowest first: core < config < results < deploy < run < cli. A module imports only from its own wing and
the wings below it (``bench.testing`` sits beside ``run``: it builds on core and config only). Counted from the
source with ``ast`` by benchmarks/import_graph.py, at module level and inside functions (a lazy import still couples
two modules).
"""

from __future__ import annotations

import ast
import importlib.util
import io
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
ORDER = ["core", "config", "results", "deploy", "run", "cli"]
ALLOWED = {wing: set(ORDER[: i + 1]) for i, wing in enumerate(ORDER)} | {"testing": {"core", "config", "testing"}}
MAX_LINES = 300


def _import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "benchmarks" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.graph(ROOT / "bench")


GRAPH, LINES = _import_graph()


def wing(module: str) -> str | None:
    """``bench.run.worker`` → ``run``; the package's own ``__init__`` and ``__main__`` have no wing."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_bench_has_no_import_cycle():
    import networkx as nx

    cycles = [sorted(group) for group in nx.strongly_connected_components(GRAPH) if len(group) > 1]
    assert not cycles, cycles


def test_every_module_sits_in_a_wing():
    loose = [m for m in GRAPH if m.count(".") == 1 and m not in ("bench.__main__",) and wing(m) is None]
    assert not loose, f"modules outside the wings: {loose}"


def test_imports_go_only_to_the_same_wing_or_lower():
    wrong = []
    for source, target in GRAPH.edges:
        here, there = wing(source), wing(target)
        if here is None or there is None or there in ALLOWED[here]:
            continue
        wrong.append(f"{source} -> {target}")
    assert not wrong, wrong


def test_deploy_never_imports_run():
    assert not [(s, t) for s, t in GRAPH.edges if wing(s) == "deploy" and wing(t) == "run"]


def test_no_module_is_over_300_lines():
    long = {name: n for name, n in LINES.items() if n > MAX_LINES}
    assert not long, long


def code_lines(path: Path) -> int:
    """Lines that hold code: not blank, not a comment, not part of a docstring."""
    source = path.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    code = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER) and tok.start[0] not in docstrings:  # fmt: skip
            code.add(tok.start[0])
    return len(code)


@pytest.mark.parametrize("method", ["magnitude", "movement"])
def test_score_based_methods_are_a_few_lines(method):
    """The method interface does the top-k, the schedule and the projection: a score-based method is its scores."""
    assert code_lines(ROOT / "methods" / f"{method}.py") < 30


def test_code_lines_counts_code_only(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('"""Doc\nstring."""\n\n# comment\nx = 1\n\n\ndef f():\n    """Doc."""\n    return x  # why\n')
    assert code_lines(path) == 3
