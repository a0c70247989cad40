"""Training-step time of magnitude and movement relative to dense, in one run, on MiniLM.

Target (issue 2): at most 1.10× dense. Each timed step is forward + backward + AdamW + the method's
after-step hook (mask update), on real MNLI batches (batch 32, max length 128, dynamic padding), with the
methods interleaved step by step so that machine noise hits all of them alike.

    HF_HUB_CACHE=../shared/hf-hub HF_HUB_OFFLINE=1 python benchmarks/masking_overhead.py [--steps 12]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import DataCollatorWithPadding

from bench.config.presets import QUICK_MODEL
from bench.core import registry
from bench.core.task import Featurization


def make_runner(name: str, model_id: str, sparsity: float):
    task = registry.tasks.get("mnli")()
    model = task.build_model(model_id)
    method = registry.methods.get(name)(sparsity)
    method.prepare(model)
    own = {id(p) for g in method.param_groups() for p in g["params"]}
    base = [p for p in model.parameters() if p.requires_grad and id(p) not in own]
    optimizer = torch.optim.AdamW([{"params": base, "lr": 5e-5}, *method.param_groups()])
    model.train()
    method.step(0, 100)
    # Start from the middle of the schedule so the masks are really sparse.
    method.step(50, 100)

    def step(batch) -> float:
        started = time.perf_counter()
        loss = model(**batch).loss
        regularization = method.regularization_loss()
        if regularization is not None:
            loss = loss + regularization
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        method.step(50, 100)
        return time.perf_counter() - started

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--model", default=QUICK_MODEL)
    args = parser.parse_args()

    from bench.config.resolve import load_tokenizer

    tokenizer = load_tokenizer(args.model)
    task = registry.tasks.get("mnli")(train_split=f"train[:{32 * (args.steps + 2)}]")
    features = task.featurize(task.train_examples(), tokenizer, Featurization(128), train=True)
    collate = DataCollatorWithPadding(tokenizer)
    batches = [collate([features[i] for i in range(s * 32, s * 32 + 32)]) for s in range(args.steps + 2)]

    names = ["dense", "magnitude", "movement"]
    runners = {name: make_runner(name, args.model, args.sparsity) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for index, batch in enumerate(batches):
        for name in names:
            elapsed = runners[name](batch)
            if index >= 2:  # two warm-up steps
                times[name].append(elapsed)

    dense = statistics.median(times["dense"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} timed steps, batch 32")
    print(f"{'method':<10} {'median step s':>14} {'ratio vs dense':>15}")
    for name in names:
        median = statistics.median(times[name])
        print(f"{name:<10} {median:>14.3f} {median / dense:>14.2f}x")


if __name__ == "__main__":
    main()
