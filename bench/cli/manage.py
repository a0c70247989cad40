"""Commands that act on the cells of a results folder: ``bench export`` (a deployable model of one cell) and
``bench forget`` (remove cells so that the next ``bench run`` runs them again)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.core.errors import BenchError

EXIT_FAILED_CHECK = 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` and ``forget`` to the ``bench`` parser."""
    export = sub.add_parser("export", help="write a cell's model compacted and sparse; check it against the record")
    export.add_argument("cell", help="cell id, or a unique prefix of it (as bench leaderboard/report show them)")
    export.add_argument("--to", required=True, help="new or empty folder to write the export to (outside the "
                        "results folder)")  # fmt: skip
    export.add_argument("--results", default="results/quick",
                        help="results folder of the cell, run with --save-models (default results/quick)")  # fmt: skip
    export.add_argument("--no-check", action="store_true", help="skip reloading and evaluating the export")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in --to")
    export.set_defaults(func=cmd_export)

    forget = sub.add_parser("forget", help="remove cells (record, queue row, study, saved model, masks, predictions) "
                            "so that the next bench run runs them again")  # fmt: skip
    forget.add_argument("cells", nargs="+", help="cell ids or unique prefixes (comma lists too), as bench "
                        "leaderboard/report and error messages show them")  # fmt: skip
    forget.add_argument("--results", required=True, help="the results folder of the cells")
    forget.add_argument("--storage", help="the queue's database URL when it is not RESULTS/bench.db")
    forget.set_defaults(func=cmd_forget)


def cmd_export(args: argparse.Namespace) -> int:
    from bench.deploy.export import export_cell, summary_lines

    results, to = path_arg("--results", args.results), path_arg("--to", args.to)
    args.results_folder = results
    info = export_cell(results, args.cell, to, check=not args.no_check, overwrite=args.overwrite)
    print("\n".join(summary_lines(info, to)))
    return 0 if info.get("parity", {}).get("passed", True) else EXIT_FAILED_CHECK


def cmd_forget(args: argparse.Namespace) -> int:
    from bench.config.model import check_flag
    from bench.run.forget import forget

    results = path_arg("--results", args.results)
    args.results_folder = results
    refs = [ref.strip() for item in args.cells for ref in item.split(",") if ref.strip()]
    if not refs:
        raise BenchError("forget: no cell id given")
    storage = check_flag("storage", args.storage) if args.storage is not None else None
    done = forget(results, refs, storage)
    print(f"{len(done)} cell(s) forgotten; the next bench run of a matrix that has them runs them again "
          "(their MLflow runs are kept)")  # fmt: skip
    return 0


def path_arg(flag: str, value: str) -> Path:
    """A path flag's value; an empty one is refused (it would silently mean the current folder).

    Raises:
        BenchError: ``flag: expected a path, got ''``.
    """
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise BenchError(f"{flag}: expected a path, got {value!r}")
    return Path(value)
