"""One small matrix run twice per executor, on 1 and on 2 workers: cell throughput, its ratio, and duplicated or
lost cells and trials (both must be 0).

    HF_HUB_CACHE=../shared/hf-hub HF_HUB_OFFLINE=1 python benchmarks/search_scaling.py --executor ray
    export BENCH_TEST_POSTGRES=$(.ci/postgres.sh start /tmp/bench-pg)     # for --executor local (or any server URL)
    HF_HUB_CACHE=../shared/hf-hub HF_HUB_OFFLINE=1 python benchmarks/search_scaling.py --executor local

The matrix (default): MiniLM × sst2 × magnitude, movement × 0.5, 0.7, 0.8, 0.9, 2 trials per cell, 1 epoch of
``train[:256]`` at batch 16 and 64 tokens, evaluated on ``validation[:96]``; ``--model tiny`` uses a random
2-layer BERT instead (the cells then measure the harness alone).

``--executor ray`` (issue 18 target: 2 workers ≥ 1.8× the cell throughput of 1): a throwaway Ray head on
127.0.0.1 with ``--num-cpus=1`` (one cell task at a time), then another with ``--num-cpus=2`` (two at once);
``bench run --executor ray --cpus-per-cell 1`` against each. Every cell task is single-threaded
(``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``, ``TOKENIZERS_PARALLELISM=false`` in the driver's environment, which
the executor carries to the tasks; read back from each task's ``/proc/PID/environ``) and pinned to a core of
its own: :class:`CorePinner` watches the Ray worker processes and, while one runs a cell task (its process
title is ``ray::bench-cell-...``), sets the affinity of every thread of it to a core no other running cell
task holds (``sched_setaffinity``), and frees the core when the task ends. Ray's own processes and the driver
are not pinned. Throughput: cells per minute from the first submit (the driver's ``Ray: N cell task(s)`` line)
to the last record written (the newest ``OUTPUT/cells/*.json``). Storage: ``--storage`` (a fresh database on
that PostgreSQL server per run) or a SQLite file in each run's results folder.

``--executor local``: as before, one ``bench run`` and 0 or 1 ``bench worker`` on one queue in a fresh
PostgreSQL database (needs ``--storage``), each process with cores / workers torch threads, so that both runs
use the same CPU (this one measures core sharing too, and nothing is pinned); wall time from start to exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy as sa

from bench.config.presets import QUICK_MODEL
from bench.run.queue import CellQueue
from bench.testing.ray_cluster import (
    RAY_ENV,
    answers,
    free_port,
    ray_executable,
    session_processes,
    start_node,
    stop_node,
)

MATRIX = """
methods: [{methods}]
tasks: [sst2]
sparsities: [{sparsities}]
model: {model}
trials: {trials}
{storage}budget: {{epochs: 1, batch_size: 16, max_length: 64}}
splits: {{"*": {{train_split: "{train}", eval_split: "{eval}"}}}}
"""
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
CELL_TITLE = b"bench-cell-"  # in a Ray worker's process title (ray::bench-cell-<id>) while it runs a cell task


@dataclass
class Result:
    workers: int
    seconds: float
    cells: int
    duplicated: int
    lost: int
    failed: int
    cell_seconds: list[float] = field(default_factory=list)  # the records' wall_seconds
    notes: list[str] = field(default_factory=list)

    @property
    def per_minute(self) -> float:
        return 60 * self.cells / self.seconds


# ---- storage and matrix -----------------------------------------------------------------------------------------
def fresh_database(url: str) -> str:
    name = f"scaling_{uuid.uuid4().hex[:8]}"
    with sa.create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    return url.rsplit("/", 1)[0] + "/" + name


def tiny_model(root: Path) -> str:
    from transformers import AutoTokenizer, BertConfig, BertModel

    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(root / "tiny")
    AutoTokenizer.from_pretrained(QUICK_MODEL).save_pretrained(root / "tiny")
    return str(root / "tiny")


def write_matrix(path: Path, args: argparse.Namespace, model: str, storage: str | None) -> None:
    text = MATRIX.format(methods=", ".join(args.methods), sparsities=", ".join(map(str, args.sparsities)),
                         model=model, trials=args.trials, storage=f"storage: {storage}\n" if storage else "",
                         train=args.train_split, eval=args.eval_split)  # fmt: skip
    path.write_text(textwrap.dedent(text))


def count(storage: str, output: Path, cells: int, trials: int) -> tuple[int, int, int, list[float]]:
    """(duplicated, lost, failed, wall_seconds of the records): a cell finalized more than once, a record file
    beyond one per queued cell or a study with more finished trials than asked count as duplicated; a queued cell
    without a finished state or record file, a missing cell, or a study with fewer finished trials as lost."""
    queue = CellQueue(storage)
    rows = queue.cells()
    files = {p.stem: json.loads(p.read_text()) for p in (output / "cells").glob("*.json")}
    duplicated = lost = failed = 0
    lost += max(0, cells - len(rows))
    duplicated += max(0, len(files) - len(rows))
    for row in rows:
        duplicated += max(0, queue.row(row.cell_id).finalize_count - 1)
        if row.cell_id not in files:
            lost += 1
        elif row.state != "finished":
            failed += 1
        try:
            study = optuna.load_study(study_name=row.cell_id, storage=storage)
            done = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
        except KeyError:
            done = []
        duplicated += max(0, len(done) - trials)
        lost += max(0, trials - len(done))
    return duplicated, lost, failed, [r.get("wall_seconds", 0.0) for r in files.values()]


# ---- local: bench run + bench worker on one queue -----------------------------------------------------------------
def run_local(workers: int, server: str, model: str, root: Path, args: argparse.Namespace) -> Result:
    storage = fresh_database(server)
    config = root / f"local{workers}.yaml"
    write_matrix(config, args, model, storage)
    threads = str(max(1, (os.cpu_count() or 2) // workers))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}

    def start(*cli: str) -> subprocess.Popen:
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        return subprocess.Popen([sys.executable, "-m", "bench.cli.app", *cli], env=env, **quiet)

    started = time.perf_counter()
    output = root / f"local{workers}-0"
    first = start("run", "--config", str(config), "--output", str(output))
    queue = CellQueue(storage)
    while len(queue.cells()) < args.cells:
        if first.poll() is not None:
            sys.exit(f"bench run exited with {first.returncode} before queueing the matrix")
        time.sleep(0.2)
    others = [start("worker", "--storage", storage, "--output", str(root / f"local{workers}-{k}"))
              for k in range(1, workers)]  # fmt: skip
    for proc in [first, *others]:
        proc.wait()
    seconds = time.perf_counter() - started
    # bench run syncs every record of the queue into its own folder at the end
    duplicated, lost, failed, cell_seconds = count(storage, output, args.cells, args.trials)
    return Result(workers, seconds, args.cells, duplicated, lost, failed, cell_seconds,
                  [f"{threads} torch thread(s) per process"])  # fmt: skip


# ---- ray: a throwaway head with 1 or 2 CPUs -----------------------------------------------------------------------
def start_head(cpus: int, folder: Path) -> tuple[subprocess.Popen, str]:
    """A head with ``cpus`` CPUs on 127.0.0.1 (:func:`bench.testing.ray_cluster.start_node`); its address."""
    port = free_port()
    log = folder / f"head{cpus}.log"
    head = start_node(log, "--head", f"--port={port}", f"--num-cpus={cpus}", "--include-dashboard=false",
                      "--disable-usage-stats", "--object-store-memory=200000000", f"--temp-dir={folder / 'ray'}",
                      f"--ray-client-server-port={free_port()}")  # fmt: skip
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 120
    while not answers(address):
        if head.poll() is not None or time.time() > deadline:
            stop_node(head)
            sys.exit(f"the Ray head did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return head, address


def read_proc(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


class CorePinner(threading.Thread):
    """Pins every Ray worker process of session ``sid`` that runs a cell task to a core of its own among
    ``cores`` (all its threads), while the task runs; also reads each task process's thread-count variables.

    The session is scanned for worker processes every second; the known workers' titles every 0.1 s.
    """

    def __init__(self, sid: int, cores: list[int]):
        super().__init__(daemon=True)
        self.sid, self.cores = sid, cores
        self.held: dict[int, int] = {}  # pid -> core, while it runs a cell task
        self.workers: set[int] = set()
        self.pinned: dict[int, set[int]] = {}  # pid -> the cores it was given
        self.env: dict[int, dict[str, str]] = {}  # pid -> its OMP/MKL/TOKENIZERS variables
        self.busy: dict[int, int] = {}  # pid -> its threads that did real work (busy_threads), last seen
        self.halt = threading.Event()

    def run(self) -> None:
        scanned = 0.0
        while not self.halt.is_set():
            if time.time() - scanned > 1:
                self.workers = {p.pid for p in session_processes(self.sid) if b"ray::" in read_proc(p.pid, "cmdline")}
                scanned = time.time()
                for pid in self.held:
                    self.busy[pid] = busy_threads(pid) or self.busy.get(pid, 0)
            running = {p for p in self.workers if CELL_TITLE in read_proc(p, "cmdline")}
            for pid in list(self.held):
                if pid not in running:
                    del self.held[pid]
            for pid in sorted(running):
                if pid not in self.held:
                    free = [c for c in self.cores if c not in self.held.values()]
                    if not free:
                        continue  # more cell tasks than cores: Ray should never do this with --cpus-per-cell 1
                    self.held[pid] = free[0]
                    self.pinned.setdefault(pid, set()).add(free[0])
                    self.env.setdefault(pid, thread_variables(pid))
                pin(pid, self.held[pid])  # every time: threads started since are pinned too
            self.halt.wait(0.1)

    def stop(self) -> None:
        self.halt.set()
        self.join()


def pin(pid: int, core: int) -> None:
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in threads:
        try:
            if os.sched_getaffinity(int(tid)) != {core}:
                os.sched_setaffinity(int(tid), {core})
        except OSError:
            continue  # the thread ended meanwhile


def thread_variables(pid: int) -> dict[str, str]:
    pairs = (item.split(b"=", 1) for item in read_proc(pid, "environ").split(b"\0") if b"=" in item)
    return {k.decode(): v.decode() for k, v in pairs if k.decode() in ONE_THREAD}


def busy_threads(pid: int, share: float = 0.05) -> int:
    """Threads of ``pid`` that used more than ``share`` of its CPU time (utime + stime, from /proc)."""
    times = []
    for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        fields = read_proc(pid, f"task/{tid}/stat").rsplit(b")", 1)[-1].split()
        if len(fields) > 12:
            times.append(int(fields[11]) + int(fields[12]))
    total = sum(times)
    return sum(1 for t in times if total and t > share * total)


def run_ray(cpus: int, model: str, root: Path, args: argparse.Namespace) -> Result:
    folder = root / f"ray{cpus}"
    folder.mkdir()
    storage = fresh_database(args.storage) if args.storage else None
    output = folder / "out"
    config = folder / "matrix.yaml"
    write_matrix(config, args, model, storage)
    head, address = start_head(cpus, folder)
    pinner = CorePinner(head.pid, list(range(cpus)))
    pinner.start()
    try:
        env = {**os.environ, **RAY_ENV, **ONE_THREAD, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "bench.cli.app", "run", "--config", str(config), "--output", str(output),
                   "--executor", "ray", "--ray-address", address, "--cpus-per-cell", "1"]  # fmt: skip
        log = (folder / "run.log").open("w")
        driver = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        submitted = None
        for line in driver.stdout:
            log.write(line)
            if submitted is None and line.startswith("Ray: "):
                submitted = time.time()
        if driver.wait() != 0 or submitted is None:
            sys.exit(f"bench run --executor ray failed ({driver.returncode}); see its log:\n"
                     f"{(folder / 'run.log').read_text()[-3000:]}")  # fmt: skip
        last = max(p.stat().st_mtime for p in (output / "cells").glob("*.json"))
    finally:
        pinner.stop()
        stop_node(head)
    duplicated, lost, failed, cell_seconds = count(storage or f"sqlite:///{output / 'bench.db'}", output,
                                                   args.cells, args.trials)  # fmt: skip
    envs = sorted({json.dumps(e, sort_keys=True) for e in pinner.env.values()})
    notes = [f"{len(pinner.pinned)} worker process(es) ran cell tasks, pinned to cores "
             f"{sorted(set().union(*pinner.pinned.values())) if pinner.pinned else []}",
             f"their thread variables: {', '.join(envs) or 'none seen'}",
             f"threads with > 5% of a worker's CPU time: {sorted(set(pinner.busy.values())) or '?'}"]  # fmt: skip
    return Result(cpus, last - submitted, args.cells, duplicated, lost, failed, cell_seconds, notes)


# ---- report -------------------------------------------------------------------------------------------------------
def report(label: str, results: dict[int, Result], target: float | None) -> None:
    print(f"\n{label}")
    print(f"{'workers':>7} {'wall s':>8} {'cells/min':>10} {'ratio':>7} {'cell s (mean)':>14} {'at once':>8} "
          f"{'duplicated':>11} {'lost':>5} {'failed':>7}")  # fmt: skip
    one = results[1]
    for n, r in results.items():
        mean = sum(r.cell_seconds) / max(1, len(r.cell_seconds))
        at_once = sum(r.cell_seconds) / r.seconds  # cells running at once, on average
        print(f"{n:>7} {r.seconds:>8.1f} {r.per_minute:>10.2f} {r.per_minute / one.per_minute:>6.2f}x {mean:>14.1f} "
              f"{at_once:>8.2f} {r.duplicated:>11} {r.lost:>5} {r.failed:>7}")  # fmt: skip
    for n, r in results.items():
        for note in r.notes:
            print(f"  {n} worker(s): {note}")
    if target is not None and 2 in results:
        ratio = results[2].per_minute / one.per_minute
        clean = all(r.duplicated == r.lost == r.failed == 0 for r in results.values())
        verdict = "meets" if ratio >= target and clean else "misses"
        print(f"  2 workers / 1 worker: {ratio:.2f}x cell throughput (target >= {target}x, 0 duplicated, 0 lost): "
              f"{verdict}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", choices=["ray", "local", "both"], default="ray")
    parser.add_argument("--storage", default=os.environ.get("BENCH_TEST_POSTGRES"),
                        help="PostgreSQL server URL (a fresh database per run); --executor local needs it")  # fmt: skip
    parser.add_argument("--model", default="minilm", help=f"minilm ({QUICK_MODEL}), tiny, or a model id or path")
    parser.add_argument("--methods", nargs="+", default=["magnitude", "movement"])
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.7, 0.8, 0.9])
    parser.add_argument("--trials", type=int, default=2, help="HP-search trials per cell (then the final run)")
    parser.add_argument("--train-split", default="train[:256]")
    parser.add_argument("--eval-split", default="validation[:96]")
    args = parser.parse_args()
    if args.executor in ("local", "both") and not args.storage:
        sys.exit("--executor local needs --storage postgresql://... or BENCH_TEST_POSTGRES (.ci/postgres.sh start DIR)")
    if args.executor in ("ray", "both") and (os.cpu_count() or 1) < 2:
        sys.exit("--executor ray pins 2 workers to 2 cores: this machine has fewer")
    args.cells = len(args.methods) * len(args.sparsities)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = {"minilm": QUICK_MODEL, "tiny": None}.get(args.model, args.model) or tiny_model(root)
        print(f"matrix: {args.cells} cells = {model} × sst2 × {', '.join(args.methods)} × "
              f"{', '.join(map(str, args.sparsities))}; {args.trials} trials per cell + the final run; "
              f"1 epoch of {args.train_split} at batch 16, 64 tokens; eval {args.eval_split}")  # fmt: skip
        where = f"{args.storage.rsplit('@', 1)[-1]} (a fresh database per run)" if args.storage else "SQLite"
        variables = ", ".join(f"{k}={v}" for k, v in ONE_THREAD.items())
        print(f"storage: {where}; {os.cpu_count()} cores; Ray cell tasks get {variables}")
        if args.executor in ("ray", "both"):
            if shutil.which(ray_executable()) is None:
                sys.exit("the ray command is not installed (pip install 'prune-bench[ray]')")
            ray = {n: run_ray(n, model, root, args) for n in (1, 2)}
            report("Ray executor: a head with N CPUs, --cpus-per-cell 1, each cell task single-threaded and pinned "
                   "to its own core; wall = first submit to last record", ray, 1.8)  # fmt: skip
        if args.executor in ("local", "both"):
            local = {n: run_local(n, args.storage, model, root, args) for n in (1, 2)}
            report("local queue: bench run + N-1 bench worker(s), cores/N torch threads each; wall = start to exit",
                   local, None)  # fmt: skip


if __name__ == "__main__":
    main()
