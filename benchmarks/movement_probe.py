"""What movement prunes first, and why it breaks the model (issue 13's probe).

Trains all-MiniLM-L6-v2 on SST-2 with movement's scores accumulating and every weight kept (the pruning warm-up:
AdamW, weights' lr 1e-4, scores' lr 1e-2, one global gradient clip at 1, as the reference code and
``tests/test_movement_reference.py``), then compares the first few percent that the ramp would prune, chosen three
ways per matrix: the lowest movement scores, the lowest |W|, and at random. For each it prints the validation loss
and accuracy after pruning that set, and where the movement set lies: its share of each matrix's largest weights and
how much of it falls on the few input dimensions with the largest weights (MiniLM's outlier features).

    python benchmarks/movement_probe.py --steps 120 --fraction 0.03
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def batches(tokenizer, split: str, batch: int, length: int, seed: int):
    from datasets import load_dataset
    from huggingface_hub import snapshot_download

    path = snapshot_download("nyu-mll/glue", repo_type="dataset", allow_patterns=["sst2/*", "README.md"])
    data = load_dataset(path, "sst2", split=split).shuffle(seed=seed)
    for start in range(0, len(data) - batch + 1, batch):
        rows = data[start : start + batch]
        enc = tokenizer(rows["sentence"], truncation=True, max_length=length, padding=True, return_tensors="pt")
        yield {**enc, "labels": torch.tensor(rows["label"])}


@torch.no_grad()
def evaluate(model, eval_batches) -> tuple[float, float]:
    model.eval()
    losses, right, total = [], 0, 0
    for batch in eval_batches:
        out = model(**batch)
        losses.append(float(out.loss))
        right += int((out.logits.argmax(-1) == batch["labels"]).sum())
        total += len(batch["labels"])
    model.train()
    return float(np.mean(losses)), 100.0 * right / total


def lowest(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """Bool mask of the ``fraction`` lowest entries of ``values`` (True = pruned)."""
    k = max(1, round(fraction * values.numel()))
    threshold = values.flatten().kthvalue(k).values
    return values <= threshold


def main(argv: list[str] | None = None) -> int:
    from bench.methods.movement import Movement
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120, help="warm-up steps before the ramp")
    parser.add_argument("--fraction", type=float, default=0.03, help="share of each matrix pruned")
    parser.add_argument("--eval-examples", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    model = AutoModelForSequenceClassification.from_pretrained(MODEL, num_labels=2)
    method = Movement(0.9, warmup_steps=args.steps)
    method.prepare(model)
    score_ids = {id(p) for g in method.param_groups() for p in g["params"]}
    weights = [p for p in model.parameters() if id(p) not in score_ids]
    optimizer = torch.optim.AdamW([{"params": weights, "lr": 1e-4, "weight_decay": 0.0}, *method.param_groups()])
    eval_batches = list(batches(tokenizer, f"validation[:{args.eval_examples}]", 32, 64, 0))
    model.train()
    for step, batch in enumerate(batches(tokenizer, "train", 16, 64, args.seed), start=1):
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step == args.steps:
            break
    print(f"after {args.steps} warm-up steps (every weight kept): loss, accuracy = {evaluate(model, eval_batches)}")
    names = list(method.masks)
    scores = {n: method.masks[n].scores.detach() for n in names}
    magnitudes = {n: method.weight(n).detach().abs() for n in names}
    generator = torch.Generator().manual_seed(args.seed)
    choices = {
        "movement (lowest scores)": {n: lowest(scores[n], args.fraction) for n in names},
        "magnitude (lowest |W|)": {n: lowest(magnitudes[n], args.fraction) for n in names},
        "random": {n: lowest(torch.rand(scores[n].shape, generator=generator), args.fraction) for n in names},
    }
    for label, pruned in choices.items():
        for n in names:
            method.masks[n].mask.copy_(~pruned[n])
        loss, accuracy = evaluate(model, eval_batches)
        print(f"prune {args.fraction:.0%} per matrix by {label}: validation loss {loss:.3f}, accuracy {accuracy:.1f}%")
    describe(choices["movement (lowest scores)"], magnitudes, scores, method)
    return 0


def describe(pruned: dict, magnitudes: dict, scores: dict, method) -> None:
    """Where the movement set lies: |W| of the pruned weights, their share of each matrix's top-1% |W|, and of the
    few input columns with the largest weights."""
    top_share, outlier_share, ratio = [], [], []
    for n, mask in pruned.items():
        w = magnitudes[n]
        top = w >= w.flatten().kthvalue(int(0.99 * w.numel())).values
        top_share.append(float((mask & top).sum()) / float(top.sum()))
        ratio.append(float(w[mask].mean() / w.mean()))
        columns = w.sum(0)  # per input dimension
        heavy = columns >= columns.kthvalue(max(1, columns.numel() - 4)).values  # the 5 heaviest input columns
        outlier_share.append(float(mask[:, heavy].sum()) / float(mask.sum()))
    print(f"movement set: mean |W| of pruned / mean |W| of matrix = {np.median(ratio):.2f} (median over matrices)")
    print(f"movement set takes {np.mean(top_share):.1%} of each matrix's top-1% |W| weights (random: 3%)")
    print(f"movement set on the 5 heaviest input dimensions: {np.mean(outlier_share):.1%} of it (uniform: "
          f"{5 / next(iter(magnitudes.values())).shape[1]:.1%} for 384 inputs)")
    flat = torch.cat([s.flatten() for s in scores.values()])
    print(f"scores: {int((flat == flat.min()).sum())} weights tie at the lowest score {float(flat.min()):.4g}; "
          f"{int((flat == 0).sum())} still at 0")


if __name__ == "__main__":
    raise SystemExit(main())
