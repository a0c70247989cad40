"""``bench regress``: the regression gate on a tiny model, as a command.

Runs a fixed small matrix (every registered method, or ``--methods``, × sst2 and squad × sparsities 0.5 and 0.9,
seed 0, a few hundred examples) on a tiny random BERT (:mod:`bench.run.regress_run`) into a fresh folder, then
compares every cell's metrics, measured encoder sparsity and training loss with the committed baseline
(``results/baselines/regression.json``) within the per-metric tolerances stored in that file
(:mod:`bench.results.regress`), prints a table and exits 1 on any regression. ``--update-baseline`` rewrites the
file instead (:mod:`bench.results.regress_baseline`); with a methods subset it merges those methods' cells into the
file and keeps the others.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError
from bench.results.cell_record import FINISHED
from bench.results.regress import cell_key, compare, render
from bench.results.regress_baseline import (
    DEFAULT_BASELINE,
    check_settings,
    current_settings,
    load_baseline,
    updated_baseline,
    write_baseline,
)

EXIT_REGRESSION = 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``regress`` subcommand to the ``bench`` parser."""
    regress = sub.add_parser(
        "regress",
        help="regression gate: a fixed tiny-model matrix compared with a committed baseline",
        description="Run every method (or --methods) × sst2, squad × sparsities 0.5, 0.9 on a tiny random BERT "
        "and compare with the baseline within its tolerances. Exit 0: green; 1: a regression or a failed "
        "cell; 2: bad input.",
    )
    regress.add_argument("--methods", default="all", help="comma list of methods, or 'all' (default)")
    regress.add_argument(
        "--baseline", type=Path, default=DEFAULT_BASELINE, help=f"baseline JSON file (default {DEFAULT_BASELINE})"
    )
    regress.add_argument(
        "--update-baseline",
        action="store_true",
        help="write the results into the baseline file (merged: other methods' cells are kept) instead of comparing",
    )
    regress.add_argument(
        "--output", type=Path, help="keep the run in this new or empty folder (default: a temporary folder)"
    )
    regress.set_defaults(func=cmd_regress)


def cmd_regress(args: argparse.Namespace) -> int:
    """``bench regress``. Returns 0 (green or baseline written), 1 (regression or failed cell).

    Raises:
        BenchError: unknown methods, a non-empty ``--output``, a missing or malformed baseline, a baseline made
            with other settings (or merging a subset into one).
    """
    from bench.core import registry
    from bench.run import regress_run  # here, not on top: building the parser must not import torch and the runner

    methods = registry.methods.resolve(args.methods)
    settings = current_settings()
    baseline = load_baseline(args.baseline)
    if baseline is None and not args.update_baseline:
        raise BenchError(
            f"no baseline at {args.baseline} (a relative path starts in the current folder; the default is the "
            "repository's): create it with bench regress --update-baseline"
        )
    if baseline is not None and (not args.update_baseline or set(methods) != set(registry.methods.names())):
        check_settings(baseline, settings, args.baseline)
    regress_run.check_output(args.output)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    results = regress_run.run_in_folder(methods, settings, args.output, log)
    if args.update_baseline:
        return write_update(args.baseline, baseline, results, methods, settings)
    verdict = compare(results, baseline, methods)
    print(render(verdict, baseline_versions=baseline.get("versions")))
    return 0 if verdict.ok else EXIT_REGRESSION


def write_update(
    path: Path, baseline: dict[str, Any] | None, results: list[dict[str, Any]], methods: list[str], settings: dict
) -> int:
    """Write the updated baseline; refuse (write nothing, return 1) when a cell did not finish."""
    failed = [r for r in results if r.get("status") != FINISHED]
    for rec in failed:
        print(f"{cell_key(rec)}: {rec.get('status')}: {rec.get('error')}", file=sys.stderr)
    if failed:
        print(f"baseline not written: {len(failed)} cell(s) did not finish", file=sys.stderr)
        return EXIT_REGRESSION
    data = updated_baseline(baseline, results, methods, settings)
    write_baseline(path, data)
    print(f"baseline written: {path} ({len(data['cells'])} cells; {len(results)} from this run)")
    return 0
