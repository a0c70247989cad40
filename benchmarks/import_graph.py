"""The house as its import graph: modules, lines, import cycles and the longest import chain of a package.

Counts every ``import``/``from ... import`` of the package's own modules, at module level and inside functions
(a lazy import still couples two modules), from the source with ``ast`` (nothing is imported). Used for issue 15's
before/after numbers::

    python benchmarks/import_graph.py bench            # summary
    python benchmarks/import_graph.py bench --edges    # and every edge
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import networkx as nx


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, package: str, here: str, is_package: bool) -> set[str]:
    """Names of ``package``'s modules that the module ``here`` imports (absolute and relative imports)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".") if is_package else here.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != package:
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def graph(root: Path) -> tuple[nx.DiGraph, dict[str, int]]:
    """The import graph of the package at ``root`` and the line count of each module."""
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    lines = {name: len(p.read_text().splitlines()) for name, p in files.items()}
    g = nx.DiGraph()
    g.add_nodes_from(files)
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        for target in imported(tree, root.name, name, path.name == "__init__.py"):
            if target in files and target != name:
                g.add_edge(name, target)
    return g, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="the package's folder, e.g. bench")
    parser.add_argument("--edges", action="store_true", help="also print every import edge")
    parser.add_argument("--max-lines", type=int, default=300)
    args = parser.parse_args(argv)
    g, lines = graph(args.package.resolve())
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    condensed = nx.condensation(g)
    chain = nx.dag_longest_path_length(condensed)
    big = sorted((n for n in lines if lines[n] > args.max_lines), key=lambda n: -lines[n])
    print(f"modules: {g.number_of_nodes()} ({sum(lines.values())} lines); import edges: {g.number_of_edges()}")
    print(f"import cycles (strongly connected groups): {len(cycles)}" + "".join(f"\n  {c}" for c in cycles))
    print(f"longest import chain (between cycle groups): {chain} edges")
    print(f"modules over {args.max_lines} lines: {len(big)}" + "".join(f"\n  {n}: {lines[n]}" for n in big))
    if args.edges:
        for a, b in sorted(g.edges):
            print(f"  {a} -> {b}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
