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
    export.add_argument("where", nargs="+", metavar="RESULTS CELL", help="the results folder (run with "
                        "--save-models), then the cell id or a unique prefix of it (as bench leaderboard/report show "
                        "them)")  # fmt: skip
    export.add_argument("--to", required=True, help="new or empty folder to write the export to (outside the "
                        "results folder)")  # fmt: skip
    export.add_argument("--results", help="deprecated: the results folder, for 'bench export CELL --results DIR'")
    export.add_argument("--no-check", action="store_true", help="skip reloading and evaluating the export")
    export.add_argument("--overwrite", action="store_true", help="replace an earlier export in --to")
    export.add_argument("--onnx", action="store_true", help="also write model.onnx (the compacted model) and check "
                        "its ONNX Runtime outputs against the export (1e-4); needs pip install "
                        "'prune-bench[onnx]'")  # fmt: skip
    export.set_defaults(func=cmd_export)

    forget = sub.add_parser("forget", help="remove cells (record, queue row, study, saved model, masks, predictions) "
                            "so that the next bench run runs them again")  # fmt: skip
    forget.add_argument("where", nargs="+", metavar="RESULTS CELL", help="the results folder, then cell ids or "
                        "unique prefixes (comma lists too), as bench leaderboard/report and error messages show "
                        "them")  # fmt: skip
    forget.add_argument("--results", help="deprecated: the results folder, for 'bench forget CELL --results DIR'")
    forget.add_argument("--storage", help="the queue's database URL when it is not RESULTS/bench.db")
    forget.set_defaults(func=cmd_forget)


def cmd_export(args: argparse.Namespace) -> int:
    from bench.deploy.export import export_cell, summary_lines

    folder, (cell,) = folder_and_cells(args, "export", at_most=1)
    results, to = path_arg("RESULTS", folder), path_arg("--to", args.to)
    args.results_folder, args.cell = results, cell
    info = export_cell(results, args.cell, to, check=not args.no_check, overwrite=args.overwrite, onnx=args.onnx)
    print("\n".join(summary_lines(info, to)))
    passed = info.get("parity", {}).get("passed", True) and info.get("onnx", {}).get("parity", {}).get("passed", True)
    return 0 if passed else EXIT_FAILED_CHECK


def cmd_forget(args: argparse.Namespace) -> int:
    from bench.config.model import check_flag
    from bench.run.forget import forget

    folder, cells = folder_and_cells(args, "forget")
    results = path_arg("RESULTS", folder)
    args.results_folder = results
    refs = [ref.strip() for item in cells for ref in item.split(",") if ref.strip()]
    if not refs:
        raise BenchError("forget: no cell id given")
    storage = check_flag("storage", args.storage) if args.storage is not None else None
    done = forget(results, refs, storage)
    print(f"{len(done)} cell(s) forgotten; the next bench run of a matrix that has them runs them again "
          "(their MLflow runs are kept)")  # fmt: skip
    return 0


def folder_and_cells(args: argparse.Namespace, command: str, at_most: int | None = None) -> tuple[str, list[str]]:
    """(results folder, cell refs) from ``bench COMMAND RESULTS CELL...``, or from the deprecated
    ``bench COMMAND CELL... --results RESULTS`` (which says so on stderr).

    Raises:
        BenchError: no cell given, more than ``at_most``, or a folder given both ways.
    """
    import sys

    where = list(args.where)
    if args.results is not None:
        print(f"bench: note: --results is deprecated; write the folder first: bench {command} RESULTS CELL",
              file=sys.stderr)  # fmt: skip
        folder, cells = args.results, where
    else:
        folder, cells = where[0], where[1:]
    if not cells:
        raise BenchError(f"{command}: expected the results folder, then a cell id: bench {command} RESULTS CELL")
    if at_most is not None and len(cells) > at_most:
        raise BenchError(f"{command}: one cell at a time, got {len(cells)}: {' '.join(cells)} (the results folder "
                         f"comes first: bench {command} RESULTS CELL)")  # fmt: skip
    return folder, cells


def path_arg(flag: str, value: str) -> Path:
    """A path flag's value; an empty one is refused (it would silently mean the current folder).

    Raises:
        BenchError: ``flag: expected a path, got ''``.
    """
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise BenchError(f"{flag}: expected a path, got {value!r}")
    return Path(value)
