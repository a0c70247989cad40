"""The budget at which the methods separate: accuracy against optimizer steps, one results folder per budget.

Runs ``bench run`` for every (budget, method, seed) as its own process (``--parallel K`` at a time, longest first),
each budget into ``OUTPUT/steps-N`` (a budget is its own protocol), on SST-2 at length 64, batch 16, weights' lr
1e-4 with 6% warm-up, the methods' default pruning schedule (warm-up 10%, cool-down 20% of the run). N optimizer
steps are ``train[:16 N]`` for one epoch, or the full train split for 16 N / 67,349 epochs when that is larger.
Then it draws ``OUTPUT/budget-curve.png`` (accuracy with its 95% interval against steps, the majority-class
baseline dotted, chance cells hollow), ``OUTPUT/loss-curves.png`` (training loss per step at the largest budget)
and prints a Markdown table. Reruns skip finished cells; ``--plot-only`` only draws.

    python benchmarks/budget_curve.py --output results/readme-budget --steps 300,1200,4800 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

SST2_TRAIN = 67_349
UNREGULARIZED = ("dense", "magnitude", "movement")  # soft movement's loss includes its λ-weighted penalty
BATCH = 16


def budget_config(steps: int, model: str | None, eval_split: str, sparsity: float) -> dict:
    examples = steps * BATCH
    if examples <= SST2_TRAIN:
        train, epochs = f"train[:{examples}]", 1
    else:
        train, epochs = "train", round(steps / math.ceil(SST2_TRAIN / BATCH), 6)
    config = {
        "methods": ["dense"], "tasks": ["sst2"], "sparsities": [sparsity], "preset": "quick",
        "budget": {"epochs": epochs, "batch_size": BATCH, "max_length": 64, "learning_rate": 1e-4,
                   "warmup_ratio": 0.06},
        "splits": {"sst2": {"train_split": train, "eval_split": eval_split}},
    }  # fmt: skip
    if model:
        config["model"] = model
    return config


def jobs(args) -> list[tuple[int, str, int]]:
    """(steps, method, seed) in the order of ``--steps`` (put the largest budgets first: the pool then ends at about
    the same time; a budget given as ``9600:0`` runs only the seeds after the colon)."""
    return [(n, m, s) for n, seeds in args.budgets for m in args.methods for s in seeds]


def run_all(args) -> None:
    out = Path(args.output)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    for n, _ in args.budgets:
        path = out / "configs" / f"steps-{n}.yaml"
        path.write_text(yaml.safe_dump(budget_config(n, args.model, args.eval_split, args.sparsity)))
    pending, running = jobs(args), []
    started, per_step = time.monotonic(), args.seconds_per_step
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)} if args.threads else dict(os.environ)
    while pending or running:
        running = [(job, p, t) for job, p, t in running if p.poll() is None or _done(job, p, t, out)]
        while pending and len(running) < args.parallel:
            job = pending.pop(0)
            estimate = job[0] * per_step + 60
            if args.deadline and time.monotonic() - started + estimate > args.deadline:
                print(f"skipped steps={job[0]} {job[1]} seed {job[2]}: would pass the deadline", flush=True)
                continue
            running.append((job, launch(job, args, out, env), time.monotonic()))
        per_step = measured_seconds_per_step(out) or per_step
        time.sleep(2)


def _done(job, process, start, out) -> bool:
    """Report a finished process once; returns False so that it leaves the running list."""
    print(f"steps={job[0]} {job[1]} seed {job[2]}: exit {process.returncode} after {time.monotonic() - start:.0f}s",
          flush=True)
    return False


def launch(job, args, out: Path, env) -> subprocess.Popen:
    steps, method, seed = job
    folder = out / f"steps-{steps}"
    config = out / "configs" / f"steps-{steps}.yaml"
    command = [sys.executable, "-m", "bench", "run", "--config", str(config), "--methods", method, "--seeds", str(seed),
               "--output", str(folder)]  # fmt: skip
    if args.tracking_uri:
        command += ["--tracking-uri", args.tracking_uri]
    log = open(out / "logs" / f"steps-{steps}-{method}-{seed}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def measured_seconds_per_step(out: Path) -> float | None:
    rates = [r["train_seconds"] / r["train_steps"] for r in all_records(out) if r.get("train_steps")]
    return max(rates) if rates else None


def all_records(out: Path) -> list[dict]:
    from bench.results import records

    found = []
    for folder in sorted(out.glob("steps-*")):
        if (folder / "cells").is_dir():
            found += [r for r in records.read_records(folder) if r["status"] == records.FINISHED]
    return found


def frame(out: Path) -> pd.DataFrame:
    from bench.results import verdicts

    rows = []
    for rec in all_records(out):
        v, interval = verdicts.of_record(rec), (rec.get("metric_intervals") or {}).get("accuracy", {})
        rows.append({"method": rec["cell"]["method"], "steps": rec["train_steps"], "seed": rec["cell"]["seed"],
                     "accuracy": rec["metrics"]["accuracy"], "low": interval.get("low"), "high": interval.get("high"),
                     "chance": bool(v.get("chance")), "sparsity": rec["sparsity"]["encoder_sparsity"],
                     "ramp": (rec.get("schedule") or {}).get("ramp_steps"),
                     "warmup": (rec.get("schedule") or {}).get("warmup_steps"),
                     "baseline": (rec.get("baseline") or {}).get("metrics", {}).get("accuracy"),
                     "history": rec.get("history", [])})  # fmt: skip
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    from bench.results.stats import t_interval

    rows = []
    for (method, steps), group in df.groupby(["method", "steps"]):
        values = group["accuracy"].to_numpy()
        interval = t_interval(values) if len(values) > 1 else (group["low"].iloc[0], group["high"].iloc[0])
        rows.append({"method": method, "steps": steps, "mean": values.mean(), "low": interval[0], "high": interval[1],
                     "n": len(values), "chance": int(group["chance"].sum()), "ramp": group["ramp"].iloc[0],
                     "sparsity": group["sparsity"].mean()})  # fmt: skip
    return pd.DataFrame(rows).sort_values(["method", "steps"])


def plot(df: pd.DataFrame, out: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary(df)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for method, rows in table.groupby("method"):
        err = np.vstack([rows["mean"] - rows["low"], rows["high"] - rows["mean"]])
        line = ax.errorbar(rows["steps"], rows["mean"], yerr=err, marker="o", capsize=3, label=method)
        chance = rows[rows["chance"] * 2 >= rows["n"]]
        ax.scatter(chance["steps"], chance["mean"], s=90, facecolors="white", edgecolors=line[0].get_color(), zorder=3)
    if df["baseline"].notna().any():
        ax.axhline(df["baseline"].dropna().iloc[0], color="grey", linestyle=":", label="majority class")
    ax.set_xscale("log")
    ticks = sorted(table["steps"].unique())
    ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("optimizer steps (batch 16); error bars: 95% CI (t over seeds, or bootstrap for one seed)")
    ax.set_ylabel("SST-2 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    paths = [out / "budget-curve.png"]
    fig.savefig(paths[0], dpi=120, bbox_inches="tight")
    plt.close(fig)
    # the largest budget at which the most unregularized methods ran (their losses are comparable)
    coverage = df[df["method"].isin(UNREGULARIZED)].groupby("steps")["method"].nunique()
    largest = df[df["steps"] == max(coverage.index, key=lambda n: (coverage[n], n))]
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    first_seed = largest[(largest["seed"] == largest["seed"].min()) & largest["method"].isin(UNREGULARIZED)]
    for (method, seed), rows in first_seed.groupby(["method", "seed"]):
        history = pd.DataFrame(rows["history"].iloc[0])
        if not history.empty:
            ax.plot(history["step"], history["loss"], label=f"{method} #{seed}", linewidth=1)
    pruned = largest.dropna(subset=["ramp", "warmup"])
    if not pruned.empty:
        start, ramp = int(pruned["warmup"].iloc[0]), int(pruned["ramp"].iloc[0])
        ax.axvspan(start, start + ramp, color="grey", alpha=0.1, label="pruning ramp")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (task loss; logged every 10 steps)")
    ax.axhline(math.log(2), color="grey", linestyle=":", linewidth=1, label="ln 2 (chance)")
    ax.set_title(f"training loss (first seed) at {int(largest['steps'].iloc[0])} steps; {title}", fontsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
    paths.append(out / "loss-curves.png")
    fig.savefig(paths[1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def markdown(df: pd.DataFrame) -> str:
    from tabulate import tabulate

    rows = [[r.method, int(r.steps), f"{r.mean:.2f} [{r.low:.1f}, {r.high:.1f}]", r.n, f"{r.chance}/{r.n}",
             "" if pd.isna(r.ramp) else int(r.ramp), f"{r.sparsity:.1%}"]
            for r in summary(df).itertuples()]  # fmt: skip
    headers = ["method", "steps", "accuracy [95% CI]", "seeds", "chance cells", "ramp steps", "encoder sparsity"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def budget(item: str, seeds: list[int]) -> tuple[int, list[int]]:
    steps, _, only = item.partition(":")
    return int(steps), [int(x) for x in only.split("/")] if only else seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="results/readme-budget")
    parser.add_argument("--steps", default="4800,1200,300", help="budgets in optimizer steps, comma list, run in "
                        "this order; N:S1/S2 runs budget N with seeds S1 and S2 only")
    parser.add_argument("--methods", default="dense,magnitude,movement,soft_movement")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--model", default=None, help="default: the quick preset's MiniLM")
    parser.add_argument("--eval-split", default="validation")
    parser.add_argument("--parallel", type=int, default=1, help="bench run processes at a time")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per process (0: leave as is); one "
                        "thread per process and --parallel = cores: OpenMP threads spin, so processes that share "
                        "cores with more threads than cores slow each other down several times")
    parser.add_argument("--deadline", type=float, default=0, help="seconds; launch no run that would end later")
    parser.add_argument("--seconds-per-step", type=float, default=0.5, help="first guess, before a run finishes")
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args(argv)
    args.methods, args.seeds = args.methods.split(","), [int(x) for x in args.seeds.split(",")]
    args.budgets = [budget(item, args.seeds) for item in args.steps.split(",")]
    out = Path(args.output)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    if not args.plot_only:
        run_all(args)
    df = frame(out)
    if df.empty:
        print("no finished cells", file=sys.stderr)
        return 1
    title = (f"SST-2, {args.model or 'all-MiniLM-L6-v2'}, {args.sparsity:.0%} sparsity, length 64, lr 1e-4; "
             f"up to {df['seed'].nunique()} seeds per point")  # fmt: skip
    for path in plot(df, out, title):
        print(f"wrote {path}")
    print(markdown(df))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
