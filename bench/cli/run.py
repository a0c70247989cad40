"""The working side of the command line: ``bench run`` (a matrix), ``bench worker`` (its queue from other
processes) and ``bench ls`` (the registered methods and tasks).

``bench run``'s matrix flags are not written here: they are made from the fields of
:class:`bench.config.model.MatrixConfig` that declare a flag (:func:`bench.config.model.matrix_flags`), with the
field's help, so a new matrix option is declared once. Flags override the ``--config`` file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError

EXIT_FAILED_CELLS = 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``run``, ``worker`` and ``ls`` to the ``bench`` parser."""
    from bench.config.model import MatrixConfig, matrix_flags

    run = sub.add_parser("run", help="run a method × task × sparsity × seed matrix")
    run.add_argument("--config", help="YAML file with any of the fields below (flags win)")
    for flag in matrix_flags():
        if flag.kind is bool:
            run.add_argument(flag.name, action="store_true", help=flag.help)
        else:
            run.add_argument(flag.name, type=flag.kind if flag.kind is not str else None, help=flag.help)
    run.add_argument("--retry-failed", action="store_true", help="run cells recorded as failed again")
    run.set_defaults(func=cmd_run)

    fields = MatrixConfig.model_fields
    worker = sub.add_parser("worker", help="work on the queued cells of a shared storage until all are done")
    worker.add_argument("--output", required=True, help="results folder (shared when cells distil)")
    worker.add_argument("--tracking-uri", help=fields["tracking_uri"].description)
    worker.add_argument("--experiment", help=fields["experiment"].description)
    worker.add_argument("--matrix", help="work on this matrix id (or a unique prefix) only (default: every open cell)")
    worker.add_argument("--retry-failed", action="store_true", help="also run cells recorded as failed")
    worker.add_argument("--storage", required=True, help="SQLAlchemy URL of the Optuna studies and cell queue that "
                        "bench run --storage filled, e.g. postgresql://user@host/db (required)")  # fmt: skip
    worker.add_argument("--lease-seconds", type=float, help=fields["lease_seconds"].description)
    worker.set_defaults(func=cmd_worker)

    ls = sub.add_parser("ls", help="list registered methods or tasks")
    ls.add_argument("what", choices=["methods", "tasks"], help="what to list: the registered methods or tasks")
    ls.add_argument("--include-tasks", type=Path, help="also list the task YAML files of this folder")
    ls.set_defaults(func=cmd_ls)


def matrix_values(args: argparse.Namespace):
    """``(values, sources)``: the ``--config`` file's values with the flags given on top, and where each came from
    (:class:`bench.config.messages.Sources`: the flag, or the file and line), for :meth:`MatrixConfig.build`.

    Raises:
        BenchError: an unreadable or malformed config file (see :func:`bench.config.yaml_config.read_config`).
    """
    from bench.config.messages import Sources
    from bench.config.model import matrix_flags
    from bench.config.yaml_config import read_config

    values, sources = read_config(args.config) if args.config is not None else ({}, Sources())
    for flag in matrix_flags():
        given = getattr(args, flag.name.lstrip("-").replace("-", "_"))
        if given is None or given is False:  # a switch can only turn an option on
            continue
        node = values
        for key in flag.path[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):  # the file's value is refused at its line
                break
        else:
            if node.get(flag.path[-1]) is not None:
                sources.replaced[flag.path] = node[flag.path[-1]]
            node[flag.path[-1]] = given
            sources.flags[flag.path] = flag.name
    return values, sources


def matrix_from_args(args: argparse.Namespace):
    """The :class:`bench.config.matrix.Matrix` of ``bench run``'s ``--config`` file and flags.

    Raises:
        BenchError: one line naming the first bad value by its flag, or by its config file and line.
    """
    from bench.config.matrix import Matrix

    values, sources = matrix_values(args)
    return Matrix.build(values, sources)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.results import leaderboard, records
    from bench.results.folder import ResultsFolder
    from bench.run.runner import run_matrix
    from bench.run.tracking import log_matrix, tracking_uri

    matrix = matrix_from_args(args)
    args.results_folder, args.storage_url = matrix.output, matrix.storage_url  # for bench.run.failures' messages
    uri = args.tracking_url = tracking_uri(matrix.tracking_uri, ResultsFolder(matrix.output).tracking_uri)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    results = run_matrix(matrix, log=log, retry_failed=args.retry_failed)
    print(leaderboard.write(matrix.output))
    log_matrix(uri, matrix.experiment, matrix.output, [r["id"] for r in results])
    runs = "off (--tracking-uri none)" if uri == "none" else f"mlflow ui --backend-store-uri {uri}"
    print(f"\nleaderboard: {ResultsFolder(matrix.output).leaderboard_md}; MLflow runs: {runs}")
    failed = [r for r in results if r["status"] != records.FINISHED]
    for line in failure_summary(failed, len(results)):
        print(line, file=sys.stderr)
    return EXIT_FAILED_CELLS if failed else 0


def cmd_worker(args: argparse.Namespace) -> int:
    from bench.config.model import check_flag
    from bench.results import leaderboard, records
    from bench.results.folder import ResultsFolder
    from bench.run.preflight import check_stores, writable_folder
    from bench.run.queue import CellQueue
    from bench.run.runner import Worker, sync_records

    output = check_flag("output", args.output)
    args.results_folder = output
    storage = check_flag("storage", args.storage)
    lease = 120.0 if args.lease_seconds is None else check_flag("lease_seconds", args.lease_seconds)
    from bench.run.tracking import tracking_uri

    tracking = check_flag("tracking_uri", args.tracking_uri) if args.tracking_uri is not None else None
    tracking = tracking_uri(tracking, ResultsFolder(output).tracking_uri)
    experiment = check_flag("experiment", args.experiment) if args.experiment is not None else None
    args.storage_url, args.tracking_url = storage, tracking  # for bench.run.failures' messages
    writable_folder(output, "output folder")
    check_stores(storage, tracking)
    matrix = known_matrix(storage, args.matrix) if args.matrix is not None else None
    queue = CellQueue(storage, lease)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    Worker(queue, output, tracking, log=log, retry_failed=args.retry_failed, experiment=experiment).work(matrix)
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

    if args.include_tasks is not None:
        from bench.tasks.yaml_tasks import include

        include(args.include_tasks)
    reg = registry.methods if args.what == "methods" else registry.tasks
    rows = [(e.name, e.package, e.describe()) for e in reg.entries.values()]
    print(tabulate(rows, headers=["name", "package", "description"], tablefmt="simple"))
    return 0


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
