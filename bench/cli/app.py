"""The ``bench`` command line: ``run``, ``worker``, ``ls``, ``export``, ``forget``, ``regress``, and the reading
commands ``leaderboard``, ``plot``, ``report``, ``compare`` (:mod:`bench.cli.reading`).

Exit codes: 0 all cells finished; 1 some cells failed or diverged (a summary line each), the disk filled up or a
database broke during the run (one line naming the file), or an unexpected error (a bug: one line naming the log
file that holds its traceback); 2 bad input (one clear line, nothing written); 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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


TRACKING_HELP = "MLflow tracking URI (default sqlite:///OUTPUT/mlflow.db); 'none': no MLflow runs"


def build_parser() -> argparse.ArgumentParser:
    import bench

    parser = argparse.ArgumentParser(prog="bench", description="Benchmark pruning methods for transformers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {bench.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a method × task × sparsity × seed matrix")
    run.add_argument("--config", help="YAML file with any of the fields below (flags win)")
    run.add_argument("--methods", help="comma list of methods, or 'all'")
    run.add_argument("--tasks", help="comma list of tasks, or 'all'")
    run.add_argument("--sparsities", help="comma list of target sparsities in [0, 1), e.g. 0.5,0.9")
    run.add_argument("--seeds", help="comma list of integer seeds (default 0)")
    run.add_argument("--model", help="Hub model id or local path (default: the preset's)")
    run.add_argument("--preset", help="budget preset: quick, proxy or paper (default quick)")
    run.add_argument("--output", help="results folder (default results/<preset>)")
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
    worker.add_argument("--output", required=True, help="results folder (shared when cells distil)")
    worker.add_argument("--tracking-uri", help=TRACKING_HELP)
    worker.add_argument("--matrix", help="work on this matrix id (or a unique prefix) only (default: every open cell)")
    worker.add_argument("--retry-failed", action="store_true", help="also run cells recorded as failed")
    add_worker_arguments(worker, storage_required=True)
    worker.set_defaults(func=cmd_worker)

    ls = sub.add_parser("ls", help="list registered methods or tasks")
    ls.add_argument("what", choices=["methods", "tasks"], help="what to list: the registered methods or tasks")
    ls.set_defaults(func=cmd_ls)

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

    from bench.cli.reading import add_parsers as add_reading_commands

    add_reading_commands(sub)

    from bench.cli.regress import add_parser as add_regress

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
    from bench.results import leaderboard, records
    from bench.results.folder import ResultsFolder
    from bench.run.preflight import check_stores, writable_folder
    from bench.run.queue import CellQueue
    from bench.run.runner import Worker, sync_records

    output = _flag("output", args.output)
    args.results_folder = output
    storage = _flag("storage", args.storage)
    lease = 120.0 if args.lease_seconds is None else _flag("lease_seconds", args.lease_seconds)
    tracking = _flag("tracking_uri", args.tracking_uri) if args.tracking_uri is not None else None
    tracking = tracking or ResultsFolder(output).tracking_uri
    args.storage_url, args.tracking_url = storage, tracking  # for bench.cli.failures' messages
    writable_folder(output, "output folder")
    check_stores(storage, tracking)
    matrix = known_matrix(storage, args.matrix) if args.matrix is not None else None
    queue = CellQueue(storage, lease)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    Worker(queue, output, tracking, log=log, retry_failed=args.retry_failed).work(matrix)
    sync_records(queue, output, matrix)
    print(leaderboard.write(output))
    done = queue.records(matrix)
    failed = [r for r in done if r["status"] != records.FINISHED]
    for line in failure_summary(failed, len(done)):
        print(line, file=sys.stderr)
    return EXIT_FAILED_CELLS if failed else 0


def known_matrix(storage: str, ref: str) -> str:
    """The full id of the queued matrix ``ref`` (an id or a unique prefix), read without creating anything.

    Raises:
        BenchError: no matrix or several match; the message lists the queued ones with their cell counts.
    """
    import sqlalchemy as sa

    from bench.run.queue import CELLS, MEMBERS
    from bench.run.stores import check_store

    counts: dict[str, int] = {}
    local = check_store("--storage", storage)
    if local is None or local.is_file():
        engine = sa.create_engine(storage)
        try:
            inspector = sa.inspect(engine)
            table = next((t for t in (MEMBERS, CELLS) if inspector.has_table(t.name)), None)  # old queues: CELLS
            if table is not None:
                with engine.connect() as conn:
                    query = sa.select(table.c.matrix_id, sa.func.count()).group_by(table.c.matrix_id)
                    counts = {mid: n for mid, n in conn.execute(query)}
        finally:
            engine.dispose()
    found = [mid for mid in counts if mid.startswith(ref)] if ref.strip() else []
    if len(found) == 1:
        return found[0]
    listed = "; ".join(f"{mid[:12]} ({n} cells)" for mid, n in sorted(counts.items())[:8]) or "none"
    what = f"no matrix with id {ref!r}" if not found else f"{len(found)} matrices with ids starting {ref!r}"
    raise BenchError(f"--matrix: {what} in the queue at {storage}; queued matrices: {listed} (bench run queues a "
                     "matrix; leave out --matrix to work on every open cell)")  # fmt: skip


def cmd_ls(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.core import registry

    reg = registry.methods if args.what == "methods" else registry.tasks
    rows = [(e.name, e.package, e.describe()) for e in reg.entries.values()]
    print(tabulate(rows, headers=["name", "package", "description"], tablefmt="simple"))
    return 0



def cmd_run(args: argparse.Namespace) -> int:
    from bench.results import leaderboard, records
    from bench.results.folder import ResultsFolder
    from bench.run.runner import Matrix, run_matrix

    matrix = Matrix(**matrix_fields(args))
    args.results_folder, args.storage_url = matrix.output, matrix.storage_url  # for bench.cli.failures' messages
    args.tracking_url = matrix.tracking_uri or ResultsFolder(matrix.output).tracking_uri
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    results = run_matrix(matrix, log=log, retry_failed=args.retry_failed)
    print(leaderboard.write(matrix.output))
    uri = matrix.tracking_uri or ResultsFolder(matrix.output).tracking_uri
    runs = "off (--tracking-uri none)" if uri == "none" else f"mlflow ui --backend-store-uri {uri}"
    print(f"\nleaderboard: {ResultsFolder(matrix.output).leaderboard_md}; MLflow runs: {runs}")
    failed = [r for r in results if r["status"] != records.FINISHED]
    for line in failure_summary(failed, len(results)):
        print(line, file=sys.stderr)
    return EXIT_FAILED_CELLS if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.deploy.export import export_cell, summary_lines

    results, to = path_arg("--results", args.results), path_arg("--to", args.to)
    args.results_folder = results
    info = export_cell(results, args.cell, to, check=not args.no_check, overwrite=args.overwrite)
    print("\n".join(summary_lines(info, to)))
    return 0 if info.get("parity", {}).get("passed", True) else EXIT_FAILED_CELLS


def cmd_forget(args: argparse.Namespace) -> int:
    from bench.run.forget import forget

    results = path_arg("--results", args.results)
    args.results_folder = results
    refs = [ref.strip() for item in args.cells for ref in item.split(",") if ref.strip()]
    if not refs:
        raise BenchError("forget: no cell id given")
    storage = _flag("storage", args.storage) if args.storage is not None else None
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
    from bench.config.fields import load_config, parse_list

    fields = load_config(args.config) if args.config is not None else {}
    for key in ("methods", "tasks"):  # an empty value is refused by the field check, not taken as "not given"
        if getattr(args, key) is not None:
            fields[key] = getattr(args, key)
    if args.sparsities is not None:
        fields["sparsities"] = parse_list(args.sparsities, float, "sparsities")
    if args.seeds is not None:
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
    given = (("train_split", args.train_split), ("eval_split", args.eval_split))
    splits = {k: _flag(k, v, ("splits", "*", k)) for k, v in given if v is not None}
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
    from bench.config.fields import FieldError, check_budget_value, check_field

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
