"""Training-step time of every pruning method relative to dense, in one interleaved run, on MiniLM.

Target (issue 18): at most 1.05× dense for every method. Each method is set up as a cell's training sets it up
(:func:`bench.run.execute.train_and_evaluate`): ``prepare(model, task, tokenizer)``, the pretrained weights frozen
for methods that do not train them (smp, abp), and the optimizer of :class:`bench.run.training.PruningTrainer`
(the Trainer's AdamW groups minus the method's own parameters, plus the method's groups). Each timed step is
what the Trainer does per optimizer step: the loss with the method's regularizer (``PruningTrainer.compute_loss``),
backward, gradient clipping at ``max_grad_norm``, the optimizer step, ``zero_grad`` and the method's after-step
hook ``step(t, T, lr)`` (mask updates), with t advancing through the middle of a T-step schedule so that the masks
are really sparse and change every step. The batches are real MNLI batches (batch 32, max length 128, dynamic
padding), and the methods run interleaved step by step on the same batch, so that machine noise hits all alike.

    HF_HUB_CACHE=../shared/hf-hub HF_HUB_OFFLINE=1 python benchmarks/masking_overhead.py [--steps 10]
        [--methods magnitude movement ...] [--profile 2]

``--profile N`` then profiles N more steps of each method (torch.profiler) and prints its costliest operators
next to dense's, to see where the overhead comes from.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding

from bench.config.presets import QUICK_MODEL
from bench.core import registry
from bench.core.task import Featurization

TARGET = 1.05
WARMUP = 2  # untimed steps per method


def make_runner(name: str, model_id: str, sparsity: float, tokenizer, workdir: Path, total: int, first: int
                ) -> Callable[[dict], float]:  # fmt: skip
    """A function that runs one optimizer step of method ``name`` on a batch and returns its seconds; the steps
    are numbered ``first + 1, first + 2, ...`` of ``total``."""
    from bench.config.budget import training_arguments
    from bench.config.cell import Budget
    from bench.run.training import PruningTrainer, freeze_pretrained

    task = registry.tasks.get("mnli")()
    model = task.build_model(model_id)
    cls = registry.methods.get(name)
    method = cls(sparsity if cls.prunes else 0.0)
    method.prepare(model, task=task, tokenizer=tokenizer)
    if not method.trains_weights:
        freeze_pretrained(model)
    args = training_arguments(Budget(batch_size=32, max_length=128), workdir / name, seed=0)
    trainer = PruningTrainer(model=model, args=args, method=method)
    optimizer = trainer.create_optimizer()
    lr = optimizer.param_groups[0]["lr"]
    model.train()
    method.step(0, total, lr)  # as on_train_begin
    method.step(first, total, lr)  # the schedule's state at step `first`
    counter = [first]

    def step(batch) -> float:
        started = time.perf_counter()
        loss = trainer.compute_loss(model, batch)  # the task loss plus the method's regularizer
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        model.zero_grad()
        counter[0] += 1
        method.step(counter[0], total, lr)
        return time.perf_counter() - started

    return step


def profile(runners: dict[str, Callable[[dict], float]], batches: list[dict], top: int = 6) -> None:
    """The ``top`` operators by self CPU time of each method over ``batches``, and the step's total."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for name, run in runners.items():
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for batch in batches:
                run(batch)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events) / len(batches) / 1e6
        ops = ", ".join(f"{e.key} {e.self_cpu_time_total / len(batches) / 1e6:.3f}s" for e in events[:top])
        print(f"{name:<15} {total:.3f}s/step: {ops}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help=f"timed steps per method (after {WARMUP} warm-up)")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--model", default=QUICK_MODEL)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="then profile N steps of each method")
    args = parser.parse_args()

    from bench.config.resolve import load_tokenizer

    names = args.methods or registry.methods.names()
    unknown = sorted(set(names) - set(registry.methods.names()))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(registry.methods.names())}")
    names = ["dense", *[n for n in names if n != "dense"]]  # the reference, always
    n_batches = WARMUP + args.steps + args.profile
    tokenizer = load_tokenizer(args.model)
    task = registry.tasks.get("mnli")(train_split=f"train[:{32 * n_batches}]")
    features = task.featurize(task.train_examples(), tokenizer, Featurization(128), train=True)
    collate = DataCollatorWithPadding(tokenizer)
    batches = [collate([features[i] for i in range(s * 32, s * 32 + 32)]) for s in range(n_batches)]

    total = max(100, 4 * n_batches)
    first = total // 2 - n_batches  # the timed steps end in the middle of the schedule
    with tempfile.TemporaryDirectory() as tmp:
        runners = {name: make_runner(name, args.model, args.sparsity, tokenizer, Path(tmp), total, first)
                   for name in names}  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in names}
        for index, batch in enumerate(batches[: WARMUP + args.steps]):
            for name in names:
                elapsed = runners[name](batch)
                if index >= WARMUP:
                    times[name].append(elapsed)

        dense = statistics.median(times["dense"])
        dense_mean = statistics.mean(times["dense"])
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, MNLI batch 32 (max length "
              f"128), sparsity {args.sparsity}, {args.steps} timed steps per method after {WARMUP} warm-up, "
              f"steps {first + 1}-{first + n_batches} of {total}")  # fmt: skip
        print(f"{'method':<15} {'median step s':>14} {'ratio (median)':>15} {'ratio (mean)':>13}  <= {TARGET}x")
        for name in names:
            median = statistics.median(times[name])
            ratio = median / dense
            verdict = "yes" if ratio <= TARGET else "no"
            print(f"{name:<15} {median:>14.3f} {ratio:>14.2f}x {statistics.mean(times[name]) / dense_mean:>12.2f}x  "
                  f"{verdict}")  # fmt: skip
        if args.profile:
            print(f"\nprofile ({args.profile} steps each; self CPU time per step, costliest operators first)")
            profile(runners, batches[WARMUP + args.steps :])


if __name__ == "__main__":
    main()
