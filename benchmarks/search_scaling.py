"""The same tiny matrix (tiny random BERT, sst2, 2 methods × 2 sparsities, 3 trials per cell) with 1 and with 2
workers on one PostgreSQL storage: wall time, speed-up, and duplicated or lost trials (both must be 0).

    export BENCH_TEST_POSTGRES=$(.ci/postgres.sh start /tmp/bench-pg)     # or any server URL
    HF_HUB_CACHE=../shared/hf-hub HF_HUB_OFFLINE=1 python benchmarks/search_scaling.py [--storage URL]

Each worker gets cores / workers torch threads, so both runs use the same CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy as sa

from bench.run.queue import CellQueue

MATRIX = """
methods: [magnitude, movement]
tasks: [sst2]
sparsities: [0.5, 0.9]
model: {model}
trials: {trials}
storage: {storage}
budget: {{epochs: 1, batch_size: 8, max_length: 48}}
splits: {{"*": {{train_split: "train[:96]", eval_split: "validation[:48]"}}}}
"""


def fresh_database(url: str) -> str:
    name = f"scaling_{uuid.uuid4().hex[:8]}"
    with sa.create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    return url.rsplit("/", 1)[0] + "/" + name


def tiny_model(root: Path) -> str:
    from transformers import AutoTokenizer, BertConfig, BertModel

    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(root / "tiny")
    AutoTokenizer.from_pretrained("sentence-transformers/all-MiniLM-L6-v2").save_pretrained(root / "tiny")
    return str(root / "tiny")


def run(workers: int, server: str, model: str, root: Path, trials: int) -> tuple[float, int, int]:
    storage = fresh_database(server)
    config = root / f"matrix{workers}.yaml"
    config.write_text(textwrap.dedent(MATRIX.format(model=model, storage=storage, trials=trials)))
    threads = str(max(1, (os.cpu_count() or 2) // workers))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    def start(*args: str) -> subprocess.Popen:
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        return subprocess.Popen([sys.executable, "-m", "bench.cli.app", *args], env=env, **quiet)

    started = time.perf_counter()
    first = start("run", "--config", str(config), "--output", str(root / f"w{workers}-0"))
    queue = CellQueue(storage)
    while len(queue.cells()) < 4:
        time.sleep(0.2)
    others = [
        start("worker", "--storage", storage, "--output", str(root / f"w{workers}-{k}")) for k in range(1, workers)
    ]
    for proc in [first, *others]:
        proc.wait()
    seconds = time.perf_counter() - started
    duplicated = lost = 0
    for row in queue.cells():
        duplicated += max(0, queue.row(row.cell_id).finalize_count - 1)
        trials_done = [t for t in optuna.load_study(study_name=row.cell_id, storage=storage).get_trials()
                       if t.state.name in ("COMPLETE", "PRUNED")]  # fmt: skip
        duplicated += max(0, len(trials_done) - trials)
        lost += max(0, trials - len(trials_done))
    return seconds, duplicated, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=os.environ.get("BENCH_TEST_POSTGRES"), help="PostgreSQL server URL")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    if not args.storage:
        sys.exit("need --storage postgresql://... or BENCH_TEST_POSTGRES (.ci/postgres.sh start DIR)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = tiny_model(root)
        results = {n: run(n, args.storage, model, root, args.trials) for n in (1, 2)}
    print(f"{'workers':>7} {'wall s':>8} {'speed-up':>9} {'duplicated':>11} {'lost':>5}")
    for n, (seconds, duplicated, lost) in results.items():
        print(f"{n:>7} {seconds:>8.1f} {results[1][0] / seconds:>8.2f}x {duplicated:>11} {lost:>5}")


if __name__ == "__main__":
    main()
