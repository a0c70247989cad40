"""The ``bench`` command line: the parser, assembled from one module per command group (``run``, ``worker``,
``ls``: :mod:`bench.cli.run`; ``export``, ``forget``: :mod:`bench.cli.manage`; ``leaderboard``, ``plot``, ``report``,
``compare``: :mod:`bench.cli.reading`; ``regress``: :mod:`bench.cli.regress`), and :func:`main`.

Exit codes: 0 all cells finished; 1 some cells failed or diverged (a summary line each), the disk filled up or a
database broke during the run (one line naming the file), or an unexpected error (a bug: one line naming the log
file that holds its traceback); 2 bad input (one clear line, nothing written); 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from bench.core.errors import BenchError

EXIT_BAD_INPUT = 2
EXIT_FAILED_CELLS = 1
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Run one ``bench`` command. Nothing the user does prints a traceback: bad input is one line and exit 2; a full
    disk or broken database met while working is one line naming the file and exit 1; anything else unexpected is
    one line naming a log file with the full traceback (under the results folder's ``logs/`` when there is one, else
    the temp folder) and exit 1."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except BenchError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - the one place that turns the unexpected into one line
        from bench.run.failures import environment_problem, write_crash_log

        problem = environment_problem(err, args)
        if problem is not None:
            print(f"bench: error: {problem}", file=sys.stderr)
            return EXIT_FAILED_CELLS
        log = write_crash_log(err, args, argv)
        where = f"the full traceback is in {log}" if log else "no log file could be written"
        print(f"bench: internal error (a bug, not your input): {type(err).__name__}: {_first_line(err)}; {where}. "
              "Please report it with that file.", file=sys.stderr)  # fmt: skip
        return EXIT_FAILED_CELLS


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else ""


def build_parser() -> argparse.ArgumentParser:
    """The ``bench`` parser: one sub-command per command, added by its group's module. Imports no torch."""
    import bench
    from bench.cli.manage import add_parsers as add_manage_commands
    from bench.cli.reading import add_parsers as add_reading_commands
    from bench.cli.run import add_parsers as add_run_commands

    parser = argparse.ArgumentParser(prog="bench", description="Benchmark pruning methods for transformers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {bench.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_commands(sub)
    add_manage_commands(sub)
    add_reading_commands(sub)

    from bench.cli.regress import add_parser as add_regress

    add_regress(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
