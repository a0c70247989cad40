"""The ``bench`` command line: ``run``, ``worker``, ``ls``, ``regress``, and the reading commands ``leaderboard``,
``plot``, ``report``, ``compare`` (:mod:`bench.cli_report`).

Exit codes: 0 all cells finished; 1 some cells failed or diverged (a summary line each), or the disk filled up
during the run; 2 bad input (one clear line, nothing written).
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Any

from bench.errors import BenchError

EXIT_BAD_INPUT = 2
EXIT_FAILED_CELLS = 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BenchError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        where = err.filename or "writing results"
        print(f"bench: error: disk full ({where}). Finished cells are kept (their records are in the study database "
              "too); free some space and rerun the same command.", file=sys.stderr)  # fmt: skip
        return EXIT_FAILED_CELLS


TRACKING_HELP = "MLflow tracking URI (default sqlite:///OUTPUT/mlflow.db); 'none': no MLflow runs"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Benchmark pruning methods for transformers.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a method × task × sparsity × seed matrix")
    run.add_argument("--config", type=Path, help="YAML file with any of the fields below (flags win)")
    run.add_argument("--methods", help="comma list of methods, or 'all'")
    run.add_argument("--tasks", help="comma list of tasks, or 'all'")
    run.add_argument("--sparsities", help="comma list of target sparsities in [0, 1), e.g. 0.5,0.9")
    run.add_argument("--seeds", help="comma list of integer seeds (default 0)")
    run.add_argument("--model", help="Hub model id or local path (default: the preset's)")
    run.add_argument("--preset", help="budget preset: quick or paper (default quick)")
    run.add_argument("--output", type=Path, help="results folder (default results/<preset>)")
    run.add_argument("--train-split", help="train split for every task, slicing allowed: 'train[:2000]'")
    run.add_argument("--eval-split", help="eval split for every task, e.g. 'validation_matched[:1000]'")
    run.add_argument("--epochs", type=float, help="override the preset's epochs")
    run.add_argument("--batch-size", type=int, help="override the preset's train batch size")
    run.add_argument("--max-length", type=int, help="override the preset's tokens per feature")
    run.add_argument("--learning-rate", type=float, help="override the preset's peak learning rate of the weights")
    run.add_argument("--tracking-uri", help=TRACKING_HELP)
    run.add_argument("--save-models", action="store_true", help="save finalized models to OUTPUT/models/<id>")
    run.add_argument(
        "--measure-speed",
        action="store_true",
        help="time CPU inference of each finalized model against the dense one (batch 1 and 32, 128 tokens)",
    )
    run.add_argument(
        "--distill",
        action="store_true",
        help="distil every pruned cell from the dense cell of its task and seed (T=2, alpha_distil 0.9, alpha_ce 0.1)",
    )
    run.add_argument("--trials", type=int, help="HP-search trials per cell (default: the preset's; 0 turns it off)")
    run.add_argument("--timeout", type=float, help="cap on each cell's study wall time, in seconds")
    add_worker_arguments(run)
    run.add_argument("--retry-failed", action="store_true", help="run cells recorded as failed again")
    run.set_defaults(func=cmd_run)

    worker = sub.add_parser("worker", help="work on the queued cells of a shared storage until all are done")
    worker.add_argument("--output", type=Path, required=True, help="results folder (shared when cells distil)")
    worker.add_argument("--tracking-uri", help=TRACKING_HELP)
    worker.add_argument("--matrix", help="work on this matrix id only (default: every open cell)")
    worker.add_argument("--retry-failed", action="store_true", help="also run cells recorded as failed")
    add_worker_arguments(worker, storage_required=True)
    worker.set_defaults(func=cmd_worker)

    ls = sub.add_parser("ls", help="list registered methods or tasks")
    ls.add_argument("what", choices=["methods", "tasks"])
    ls.set_defaults(func=cmd_ls)

    export = sub.add_parser("export", help="write a cell's model compacted and sparse; check it against the record")
    export.add_argument("cell", help="cell id, or a unique prefix of it (as bench leaderboard/report show them)")
    export.add_argument("--to", type=Path, required=True, help="folder to write the export to")
    export.add_argument("--results", type=Path, default=Path("results/quick"),
                        help="results folder of the cell, run with --save-models (default results/quick)")  # fmt: skip
    export.add_argument("--no-check", action="store_true", help="skip reloading and evaluating the export")
    export.set_defaults(func=cmd_export)

    from bench.cli_report import add_parsers as add_reading_commands

    add_reading_commands(sub)

    from bench.regress import add_parser as add_regress

    add_regress(sub)
    return parser


def add_worker_arguments(parser: argparse.ArgumentParser, storage_required: bool = False) -> None:
    parser.add_argument(
        "--storage",
        required=storage_required,
        help="SQLAlchemy URL of the Optuna studies and cell queue, e.g. postgresql://user@host/db "
        "(default sqlite:///OUTPUT/bench.db)",
    )
    parser.add_argument(
        "--lease-seconds", type=float, help="a dead worker's cell is taken over after this long (default 120)"
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from bench import leaderboard, records
    from bench.queue import CellQueue
    from bench.runner import Worker, sync_records
    from bench.tracking import default_tracking_uri

    queue = CellQueue(args.storage, args.lease_seconds or 120.0)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    tracking = args.tracking_uri or default_tracking_uri(args.output)
    Worker(queue, args.output, tracking, log=log, retry_failed=args.retry_failed).work(args.matrix)
    sync_records(queue, args.output, args.matrix)
    print(leaderboard.write(args.output))
    done = queue.records(args.matrix)
    failed = [r for r in done if r["status"] != records.FINISHED]
    for line in failure_summary(failed, len(done)):
        print(line, file=sys.stderr)
    return EXIT_FAILED_CELLS if failed else 0


def cmd_ls(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench import registry

    reg = registry.methods if args.what == "methods" else registry.tasks
    rows = [(e.name, e.package, e.describe()) for e in reg.entries.values()]
    print(tabulate(rows, headers=["name", "package", "description"], tablefmt="simple"))
    return 0



def cmd_run(args: argparse.Namespace) -> int:
    from bench import leaderboard, records
    from bench.runner import Matrix, run_matrix
    from bench.tracking import default_tracking_uri

    matrix = Matrix(**matrix_fields(args))
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    results = run_matrix(matrix, log=log, retry_failed=args.retry_failed)
    print(leaderboard.write(matrix.output))
    uri = matrix.tracking_uri or default_tracking_uri(matrix.output)
    runs = "off (--tracking-uri none)" if uri == "none" else f"mlflow ui --backend-store-uri {uri}"
    print(f"\nleaderboard: {matrix.output / 'leaderboard.md'}; MLflow runs: {runs}")
    failed = [r for r in results if r["status"] != records.FINISHED]
    for line in failure_summary(failed, len(results)):
        print(line, file=sys.stderr)
    return EXIT_FAILED_CELLS if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.export import export_cell, summary_lines

    info = export_cell(args.results, args.cell, args.to, check=not args.no_check)
    print("\n".join(summary_lines(info, args.to)))
    return 0 if info.get("parity", {}).get("passed", True) else EXIT_FAILED_CELLS


def failure_summary(failed: list[dict[str, Any]], total: int) -> list[str]:
    """One line per failed or diverged cell, after a count; empty when every cell finished."""
    if not failed:
        return []
    lines = [f"\n{len(failed)} of {total} cells did not finish (rerun failed ones with --retry-failed):"]
    for rec in failed:
        cell = rec["cell"]
        where = f"{cell['method']}/{cell['task']['name']} @ {cell['sparsity']} seed {cell['seed']} ({rec['id'][:12]})"
        if rec["status"] == "diverged":
            lines.append(f"DIVERGED {where} at step {rec.get('diverged_step')}: {rec['error']}")
        else:
            lines.append(f"FAILED {where}: {rec['error']}")
    return lines


def matrix_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Matrix fields from the ``--config`` file with command-line flags on top.

    Raises:
        BenchError: malformed config, unknown config keys, a config value of the wrong type or range (naming the
            key and its line), a bad flag value (naming the flag), missing fields.
    """
    from bench.config import load_config, parse_list

    fields = load_config(args.config) if args.config else {}
    for key in ("methods", "tasks"):
        if getattr(args, key):
            fields[key] = getattr(args, key)
    if args.sparsities:
        fields["sparsities"] = parse_list(args.sparsities, float, "sparsities")
    if args.seeds:
        fields["seeds"] = parse_list(args.seeds, int, "seeds")
    for key in ("model", "preset", "output", "tracking_uri", "trials", "timeout", "storage", "lease_seconds"):
        if getattr(args, key) is not None:
            fields[key] = _flag(key, getattr(args, key))
    for key in ("save_models", "measure_speed", "distill"):
        if getattr(args, key):
            fields[key] = True
    budget = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "learning_rate": args.learning_rate,
    }
    budget = {k: _flag(k, v, ("budget", k)) for k, v in budget.items() if v is not None}
    fields["budget"] = {**fields.get("budget", {}), **budget}
    splits = {k: _flag(k, v, ("splits", "*", k)) for k, v in (("train_split", args.train_split),
                                                            ("eval_split", args.eval_split)) if v}  # fmt: skip
    if splits:
        fields.setdefault("splits", {}).setdefault("*", {}).update(splits)
    for key in ("methods", "tasks", "sparsities"):
        if key not in fields:
            raise BenchError(f"missing --{key} (or '{key}:' in the --config file)")
    fields.setdefault("preset", "quick")
    fields.setdefault("output", Path("results") / fields["preset"])
    return fields


def _flag(key: str, value: Any, where: tuple | None = None) -> Any:
    """A flag's value checked like the config field it sets; a bad one is named by its flag.

    Raises:
        BenchError: ``--flag-name: problem``.
    """
    from bench.config import FieldError, check_budget_value, check_field

    try:
        if where and where[0] == "budget":
            return check_budget_value(key, value)
        if where and where[0] == "splits":
            check_field("splits", {"*": {key: value}})
            return value
        return check_field(key, value)
    except FieldError as err:
        raise BenchError(f"--{key.replace('_', '-')}: {err.problem}") from None


if __name__ == "__main__":
    sys.exit(main())
