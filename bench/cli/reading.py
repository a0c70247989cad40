"""The reading side of the command line: ``leaderboard``, ``plot``, ``report`` and ``compare``.

None of them trains anything; they read ``OUTPUT/cells`` (and ``OUTPUT/masks``) and write tables, PNGs and HTML.
Bad input (a folder without results, a filter that matches nothing, an unknown format) raises BenchError, which
the CLI turns into one line and exit code 2. A record that cannot be read (hand-edited, foreign, a NaN or string
metric, a corrupt predictions or mask file) does not stop them: it is skipped, named on stderr with its field, and
counted (:func:`bench.results.records.read_records`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``leaderboard``, ``plot``, ``report`` and ``compare`` to the ``bench`` parser."""
    from bench.results.render import FORMATS

    board = sub.add_parser("leaderboard", help="render the leaderboard of a results folder")
    board.add_argument("output", type=folder_arg, help="the results folder (bench run --output)")
    board.add_argument("--format", choices=FORMATS, help="the long board as md, csv, latex or html (default: the "
                       "method × task/sparsity table of leaderboard.md, rewritten)")  # fmt: skip
    board.add_argument("--task", help="comma list of tasks to show")
    board.add_argument("--methods", help="comma list of methods to show (dense, the reference, always stays)")
    board.add_argument("--sparsity", help="comma list of target sparsities to show, e.g. 0.9,0.97")
    board.add_argument("--reference", action="store_true", help="add the papers' rows where model/task/sparsity match")
    board.add_argument("--out", type=Path, help="also write the table, legend and cell details to this Markdown file "
                       "(and a .csv beside it); without it nothing is written")  # fmt: skip
    board.set_defaults(func=cmd_leaderboard)

    plot = sub.add_parser("plot", help="Pareto PNGs per task (metric against remaining weights, and against the "
                          "measured speed-up where cells were timed), the critical-difference diagram and per-layer "
                          "sparsity heatmaps into OUTPUT/plots (or --out)")  # fmt: skip
    plot.add_argument("output", type=folder_arg, help="the results folder (bench run --output)")
    plot.add_argument("--out", type=folder_arg, help="write the PNGs into this folder instead of OUTPUT/plots; "
                      "either way a file whose data did not change is left as it is")  # fmt: skip
    plot.add_argument("--cell", action="append", help="heatmap of this cell (id prefix; repeatable); default: one "
                      "per method at its highest sparsity")  # fmt: skip
    plot.set_defaults(func=cmd_plot)

    report = sub.add_parser("report", help="write OUTPUT/report.html (or --out): leaderboard, plots, cells, failures")
    report.add_argument("output", type=folder_arg, help="the results folder (bench run --output)")
    report.add_argument("--out", type=folder_arg, help="write the page to this file (a folder: FOLDER/report.html) "
                        "and nothing into the results folder; a page that would not change is left as it "
                        "is")  # fmt: skip
    report.set_defaults(func=cmd_report)

    compare = sub.add_parser("compare", help="the cells two results folders share, with B − A deltas")
    compare.add_argument("folder_a", type=folder_arg, help="results folder A (the reference)")
    compare.add_argument("folder_b", type=folder_arg, help="results folder B (deltas are B − A)")
    compare.add_argument("--force", action="store_true", help="also pair cells run under different protocols "
                         "(budget, splits, search settings); each such pair then says what differs")  # fmt: skip
    compare.set_defaults(func=cmd_compare)


def folder_arg(value: str) -> Path:
    """A results folder argument; an empty one is refused (it would silently mean the current folder)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a results folder, got ''")
    return Path(value)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Without options: print the table (as ``bench run`` shows it); ``--out FILE`` also writes it with its legend and
    cell details, and a CSV beside it. A reading command never writes into the results folder unless told to.
    With ``--format``/filters/``--reference``: print the long board in that format."""
    from bench.results import leaderboard, records

    records.require_results(args.output)
    if not (args.format or args.task or args.methods or args.sparsity or args.reference):
        from bench.results.folder import ResultsFolder

        out = ResultsFolder(args.out).leaderboard_md if args.out is not None and args.out.is_dir() else args.out
        print(leaderboard.write(args.output, out) if out is not None else leaderboard.markdown_table(args.output))
        return 0
    print(long_board_text(records.read_records(args.output, on_bad="warn"), args))
    return 0


def long_board_text(recs: list[dict], args: argparse.Namespace) -> str:
    """The long board of ``recs`` (filtered by ``args.task``/``methods``/``sparsity``, with ``--reference`` rows)
    in ``args.format`` (default md); marks are tested on the predictions in ``args.output``."""
    from bench.config.types import parse_list
    from bench.results import reference
    from bench.results.leaderboard import board as ranked
    from bench.results.leaderboard import collect
    from bench.results.render import filter_cells, render_board, with_reference
    from bench.results.significance import load_arrays

    tasks, methods, sparsities = (
        parse_list(value, kind, flag) if value else None
        for value, kind, flag in ((args.task, str, "--task"), (args.methods, str, "--methods"),
                                  (args.sparsity, float, "--sparsity"))
    )  # fmt: skip
    cells = filter_cells(collect(recs), tasks=tasks, methods=methods, sparsities=sparsities)
    board = ranked(cells, load_arrays(args.output, cells))
    if args.reference:
        matched = reference.matching(reference.load(), cells)
        if matched.empty:
            models = ", ".join(sorted(set(cells["model"].dropna())))
            print(f"bench: no paper rows match model {models} at these tasks and sparsities", file=sys.stderr)
        board = with_reference(board, matched)
    return render_board(board, args.format or "md")


def cmd_plot(args: argparse.Namespace) -> int:
    from bench.results import records
    from bench.results.plots import write_plots

    records.require_results(args.output)
    skipped: list[str] = []
    recs = records.read_records(args.output, on_bad="warn")
    for path in write_plots(args.output, recs, args.cell, log=skipped.append, to=args.out):
        print(path)
    for line in skipped:
        print(f"bench: {line}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.results.folder import ResultsFolder
    from bench.results.report import build_report

    to = ResultsFolder(args.out).report_html if args.out is not None and args.out.is_dir() else args.out
    print(build_report(args.output, to))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.results.compare import compare_folders

    print(compare_folders(args.folder_a, args.folder_b, force=args.force))
    return 0
