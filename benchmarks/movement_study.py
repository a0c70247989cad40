"""Why movement pruning collapses on SST-2 with MiniLM, and at what budget it stops (issue 13's study).

One self-contained training loop with the project's own method plugins (``bench.methods.movement``,
``bench.methods.magnitude``), the optimizer layout of the authors' code and of ``tests/test_movement_reference.py``
(AdamW; weights and scores in separate groups; one linear learning-rate schedule with warm-up over both; one global
gradient clip at 1 over weights and scores together; the mask recomputed after every optimizer step on the cubic
schedule). It logs what the Trainer path does not: the loss, the gradient norm before clipping (all parameters, and
the weights alone), the scheduled sparsity, the mask churn (the share of prunable weights whose mask flipped since
the previous log line) and the share of the majority class among the batch's predictions; every ``--eval-every``
steps, validation accuracy and loss; at the end, the accuracy of the finalized model and its measured sparsity.

It runs wherever torch and transformers do (CPU or one GPU) from a folder that ``prepare`` fills, so that the
experiment can travel to a machine without the Hub or the datasets library::

    python benchmarks/movement_study.py prepare --out study             # SST-2 token ids, MLM corpus, the model
    python benchmarks/movement_study.py pretrain --data study --out study/mlm-bert --steps 3000
    python benchmarks/movement_study.py finetune --data study --model study/model --method movement \
        --sparsity 0.9 --steps 2400 --log study/movement-2400.jsonl
    python benchmarks/movement_study.py summarize study/*.jsonl
    python benchmarks/movement_study.py plot study/*.jsonl --out loss.png

``pretrain`` trains a BERT of MiniLM's shape from random initialisation by masked-language modelling on the cached
corpora's *training* text (no validation text), as the "other pretrained checkpoint" of issue 13.
``--score-optimizer sgd`` accumulates the paper's eq. (4) literally, S = -lr Σ_t W·∂L/∂W', instead of the authors'
AdamW on the scores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_LENGTH = 64
# Training text for pretraining: every cached corpus's train split (the leaderboards' eval splits are never read).
CORPUS = [
    ("nyu-mll/glue", "sst2", "train", ["sentence"]),
    ("nyu-mll/glue", "mnli", "train", ["premise", "hypothesis"]),
    ("nyu-mll/glue", "cola", "train", ["sentence"]),
    ("nyu-mll/glue", "mrpc", "train", ["sentence1", "sentence2"]),
    ("nyu-mll/glue", "stsb", "train", ["sentence1", "sentence2"]),
    ("nyu-mll/glue", "rte", "train", ["sentence1", "sentence2"]),
    ("rajpurkar/squad", "plain_text", "train", ["context", "question"]),
]


# ---- prepare ----------------------------------------------------------------------------------------------------
def _load(repo: str, config: str, split: str):
    from datasets import load_dataset
    from huggingface_hub import snapshot_download

    pattern = [f"{config}/*", "README.md"]
    return load_dataset(snapshot_download(repo, repo_type="dataset", allow_patterns=pattern), config, split=split)


def prepare(args: argparse.Namespace) -> int:
    """Tokenize SST-2 (train, validation) and the pretraining corpus; save the model, optionally with its vocabulary
    cut to the tokens that occur (an equivalent model: unused embedding rows never touch a forward pass) and stored
    in float16 (``--dtype``) so the folder fits a small transfer; ``finetune`` loads it back in float32."""
    from transformers import AutoModel, AutoTokenizer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    sst2 = {}
    for split in ("train", "validation"):
        data = _load("nyu-mll/glue", "sst2", split)
        ids = tokenizer(list(data["sentence"]), truncation=True, max_length=MAX_LENGTH)["input_ids"]
        sst2[split] = (ids, np.asarray(data["label"], dtype=np.int64))
    corpus: list[int] = []
    for repo, config, split, columns in CORPUS if args.corpus else []:
        data = _load(repo, config, split)
        for column in columns:
            texts = sorted(set(data[column])) if column == "context" else list(data[column])
            for row in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
                corpus.extend(row + [tokenizer.sep_token_id])
    # SST-2's tokens (and the special ones) take the first ids, so that the model keeps only their embedding rows;
    # tokens that only the pretraining corpus uses come after them (the model pretrained here has rows for all).
    sst2_tokens = {t for ids, _ in sst2.values() for row in ids for t in row} | set(tokenizer.all_special_ids)
    used = sorted(sst2_tokens) + sorted(set(corpus) - sst2_tokens)
    remap = np.full(len(tokenizer), -1, dtype=np.int64)
    if args.compact_vocab:
        remap[used] = np.arange(len(used))
    else:
        remap[:] = np.arange(len(tokenizer))

    def pack(rows):
        flat = np.concatenate([remap[np.asarray(r)] for r in rows]).astype(np.int32)
        offsets = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
        return flat, offsets

    arrays = {}
    for split, (ids, labels) in sst2.items():
        arrays[f"{split}_ids"], arrays[f"{split}_offsets"] = pack(ids)
        arrays[f"{split}_labels"] = labels
    arrays["corpus"] = remap[np.asarray(corpus, dtype=np.int64)].astype(np.int32)
    special = {name: int(remap[getattr(tokenizer, f"{name}_token_id")]) for name in ("cls", "sep", "pad", "mask")}
    np.savez_compressed(out / "data.npz", **arrays)
    (out / "special.json").write_text(json.dumps({**special, "vocab_size": int(remap.max()) + 1}))
    model = AutoModel.from_pretrained(MODEL)
    if args.compact_vocab:
        embedding = model.embeddings.word_embeddings.weight.data[torch.as_tensor(sorted(sst2_tokens))]
        model.resize_token_embeddings(len(sst2_tokens))
        model.embeddings.word_embeddings.weight.data.copy_(embedding)
        model.config.pad_token_id = special["pad"]
    model.to(getattr(torch, args.dtype)).save_pretrained(out / "model")
    sizes = {p.name: p.stat().st_size for p in out.rglob("*") if p.is_file()}
    print(
        f"prepared {out}: vocabulary {remap.max() + 1} of {len(tokenizer)}; corpus {len(corpus):,} tokens; "
        f"SST-2 {len(sst2['train'][1]):,} train / {len(sst2['validation'][1])} validation; bytes {sizes}"
    )
    return 0


# ---- data -------------------------------------------------------------------------------------------------------
class Data:
    """The prepared arrays, as padded batches on ``device``."""

    def __init__(self, folder: Path, device: torch.device):
        arrays = np.load(folder / "data.npz")
        self.arrays = {k: arrays[k] for k in arrays.files}
        self.special = json.loads((folder / "special.json").read_text())
        self.device = device

    def rows(self, split: str) -> list[np.ndarray]:
        ids, offsets = self.arrays[f"{split}_ids"], self.arrays[f"{split}_offsets"]
        return [ids[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]

    def batch(self, rows: list[np.ndarray], labels: np.ndarray) -> dict[str, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.special["pad"], dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        ids_t = torch.as_tensor(ids, device=self.device)
        return {
            "input_ids": ids_t,
            "attention_mask": (ids_t != self.special["pad"]).long(),
            "labels": torch.as_tensor(labels, device=self.device),
        }

    def train_batches(self, batch: int, steps: int, seed: int):
        """``steps`` batches of ``batch`` SST-2 training sentences, reshuffled each epoch (seeded)."""
        rows, labels = self.rows("train"), self.arrays["train_labels"]
        rng = np.random.default_rng(seed)
        produced = 0
        while True:
            order = rng.permutation(len(rows))
            for start in range(0, len(order) - batch + 1, batch):
                pick = order[start : start + batch]
                yield self.batch([rows[i] for i in pick], labels[pick])
                produced += 1
                if produced == steps:
                    return

    def eval_batches(self, batch: int = 128) -> list[dict[str, torch.Tensor]]:
        rows, labels = self.rows("validation"), self.arrays["validation_labels"]
        return [self.batch(rows[s : s + batch], labels[s : s + batch]) for s in range(0, len(rows), batch)]


@torch.no_grad()
def evaluate(model, batches) -> tuple[float, float, float]:
    """(accuracy %, mean loss, share of the majority predicted class %) on the validation set."""
    model.eval()
    right = total = 0
    losses, predicted = [], []
    for b in batches:
        out = model(**b)
        losses.append(float(out.loss) * len(b["labels"]))
        pred = out.logits.argmax(-1)
        right += int((pred == b["labels"]).sum())
        total += len(b["labels"])
        predicted.append(pred.cpu())
    model.train()
    counts = torch.bincount(torch.cat(predicted), minlength=2)
    return 100.0 * right / total, sum(losses) / total, 100.0 * float(counts.max()) / total


# ---- pretrain ---------------------------------------------------------------------------------------------------
def pretrain(args: argparse.Namespace) -> int:
    """Masked-language-model pretraining of a BERT of MiniLM's shape from scratch (BERT's recipe: 15% of tokens,
    80% [MASK] / 10% random / 10% kept), AdamW, linear warm-up 10% and decay."""
    from transformers import AutoConfig, BertForMaskedLM, get_linear_schedule_with_warmup

    device = _device()
    torch.manual_seed(args.seed)
    data = Data(Path(args.data), device)
    special = data.special
    config = AutoConfig.from_pretrained(Path(args.data) / "model")
    config.vocab_size = special["vocab_size"]
    model = BertForMaskedLM(config).to(device)
    stream = torch.as_tensor(data.arrays["corpus"], dtype=torch.long)
    length = 126
    sequences = stream[: len(stream) // length * length].view(-1, length)
    cls = torch.full((len(sequences), 1), special["cls"])
    sep = torch.full((len(sequences), 1), special["sep"])
    sequences = torch.cat([cls, sequences, sep], 1).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, args.steps // 10, args.steps)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    log = _open_log(args.log)
    started = time.time()
    for step in range(1, args.steps + 1):
        pick = torch.randint(len(sequences), (args.batch,), device=device, generator=generator)
        ids = sequences[pick].clone()
        labels = ids.clone()
        chosen = torch.rand(ids.shape, device=device, generator=generator) < 0.15
        chosen[:, 0] = chosen[:, -1] = False
        labels[~chosen] = -100
        roll = torch.rand(ids.shape, device=device, generator=generator)
        ids[chosen & (roll < 0.8)] = special["mask"]
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        ids[swap] = torch.randint(special["vocab_size"], (int(swap.sum()),), device=device, generator=generator)
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.log_every == 0 or step == args.steps:
            _write(log, {"step": step, "mlm_loss": float(loss.detach()), "seconds": round(time.time() - started, 1)})
    model.save_pretrained(args.out)
    print(f"pretrained {args.out}: {args.steps} steps, last MLM loss {float(loss.detach()):.3f}")
    return 0


# ---- finetune ---------------------------------------------------------------------------------------------------
def _method(args: argparse.Namespace):
    if args.method == "dense":
        return None
    from bench.methods.magnitude import Magnitude
    from bench.methods.movement import Movement

    cls = {"movement": Movement, "magnitude": Magnitude}[args.method]
    hparams = {"warmup_frac": args.warmup_frac, "cooldown_frac": args.cooldown_frac}
    return cls(args.sparsity, **hparams)


def _masks(method) -> torch.Tensor | None:
    if method is None or not method.masks:
        return None
    return torch.cat([m.mask.flatten() for m in method.masks.values()]).clone()


def finetune(args: argparse.Namespace) -> int:
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    from bench.core.sparsity import measure_sparsity

    device = _device()
    torch.manual_seed(args.seed)
    data = Data(Path(args.data), device)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2).float()
    if args.freeze_embeddings:  # as the authors' masked_run_glue.py does
        for p in model.base_model.embeddings.parameters():
            p.requires_grad_(False)
    method = _method(args)
    if method is not None:
        method.prepare(model)
    model.to(device).train()
    score_groups = method.param_groups() if method is not None else []
    score_ids = {id(p) for g in score_groups for p in g["params"]}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in score_ids]
    groups = [{"params": weights, "lr": args.lr, "weight_decay": 0.0}]
    score_optimizer = None
    if args.score_optimizer == "adam":
        groups += score_groups
    elif score_groups:
        score_optimizer = torch.optim.SGD(score_groups, lr=score_groups[0]["lr"])
    optimizer = torch.optim.AdamW(groups)
    warmup = round(args.lr_warmup * args.steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, args.steps)
    eval_batches = data.eval_batches()
    log = _open_log(args.log)
    _write(log, {"config": {k: v for k, v in vars(args).items() if k != "run"}, "device": str(device)})
    if method is not None:
        method.step(0, args.steps)
    previous = _masks(method)
    window: dict[str, list[float]] = {"loss": [], "grad_norm": [], "weight_grad_norm": [], "majority": []}
    started = time.time()
    for step, batch in enumerate(data.train_batches(args.batch, args.steps, args.seed), start=1):
        out = model(**batch)
        out.loss.backward()
        weight_norm = torch.nn.utils.get_total_norm([p.grad for p in weights if p.grad is not None])
        every = [p for g in groups + score_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(every, args.max_grad_norm or math.inf)  # 0: measure, never clip
        optimizer.step()
        if score_optimizer is not None:
            score_optimizer.step()
            score_optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if method is not None:
            method.step(step, args.steps)
        counts = torch.bincount(out.logits.argmax(-1), minlength=2)
        for key, value in (
            ("loss", out.loss),
            ("grad_norm", norm),
            ("weight_grad_norm", weight_norm),
            ("majority", counts.max() / counts.sum()),
        ):
            window[key].append(value.detach())  # tensors: no device sync until the log line
        if step % args.log_every == 0 or step == args.steps:
            current = _masks(method)
            row = {"step": step, **{k: float(torch.stack(v).float().mean()) for k, v in window.items()}}
            row["sparsity"] = method.scheduled_sparsity(step, args.steps) if method is not None else 0.0
            row["churn"] = float((current != previous).float().mean()) if current is not None else 0.0
            row["seconds"] = round(time.time() - started, 1)
            previous = current
            window = {k: [] for k in window}
            if args.eval_every and (step % args.eval_every == 0):
                row["val_accuracy"], row["val_loss"], row["val_majority"] = evaluate(model, eval_batches)
            _write(log, row)
    if method is not None:
        method.finalize(model)
    accuracy, loss, majority = evaluate(model, eval_batches)
    sparsity = measure_sparsity(model)
    final = {
        "final": True,
        "accuracy": accuracy,
        "val_loss": loss,
        "val_majority": majority,
        "sparsity": sparsity.encoder_sparsity,
        "remaining_params": sparsity.remaining_params,
        "seconds": round(time.time() - started, 1),
    }
    _write(log, final)
    if log is not sys.stdout:
        print(json.dumps(final))
    return 0


# ---- summarize and plot ---------------------------------------------------------------------------------------
CHANCE_LOSS = 0.66  # a 3-line running mean of the training loss at or above this is "at chance" (ln 2 = 0.693)
ONE_CLASS = 0.9  # ... and a collapse when the batches' predictions are also ≥ 90% one class (running mean)


def _read(path: str) -> tuple[dict, list[dict], dict | None]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    config = next(r["config"] for r in rows if "config" in r)
    return config, [r for r in rows if "step" in r], next((r for r in rows if r.get("final")), None)


def _running(values: list[float], width: int = 3) -> list[float]:
    return [float(np.mean(values[max(0, i - width + 1) : i + 1])) for i in range(len(values))]


def summary_row(path: str) -> dict:
    """One log as a row: the collapse (first logged step after pruning began where the running training loss
    reaches :data:`CHANCE_LOSS` with :data:`ONE_CLASS` of the predictions in one class) and the sparsity there,
    the share of the ramp spent at chance, the gradient norm before pruning and after the collapse, the mask swaps
    (churn beyond the schedule's own increment), the end."""
    config, steps, final = _read(path)
    loss = _running([r["loss"] for r in steps])
    one_class = _running([r["majority"] for r in steps])
    pruning = [i for i, r in enumerate(steps) if r["sparsity"] > 0]
    collapse = next((i for i in pruning if loss[i] >= CHANCE_LOSS and one_class[i] >= ONE_CLASS), None)
    ramp = [i for i in pruning if steps[i]["sparsity"] < args_sparsity(config) - 1e-6]
    before = [r["grad_norm"] for r in steps[: pruning[0]]] if pruning else [r["grad_norm"] for r in steps]
    after = [r["grad_norm"] for r in steps[collapse:]] if collapse is not None else []
    increments = np.diff([0.0] + [r["sparsity"] for r in steps])
    swaps = [max(0.0, r["churn"] - d) / 2 for r, d in zip(steps, increments, strict=True)]
    return {
        "run": Path(path).stem,
        "method": config["method"],
        "steps": config["steps"],
        "reached": steps[-1]["step"] if steps else 0,
        "collapse step": steps[collapse]["step"] if collapse is not None else None,
        "sparsity at collapse": round(steps[collapse]["sparsity"], 3) if collapse is not None else None,
        "ramp at chance %": round(100 * np.mean([loss[i] >= CHANCE_LOSS for i in ramp]), 0) if ramp else None,
        "grad norm before pruning": round(float(np.median(before)), 2) if before else None,
        "grad norm after collapse": round(float(np.median(after)), 2) if after else None,
        "swaps per log line %": round(100 * float(np.mean(swaps)), 4) if config["method"] != "dense" else None,
        "final accuracy %": round(final["accuracy"], 2) if final else None,
    }


def args_sparsity(config: dict) -> float:
    return 0.0 if config["method"] == "dense" else config["sparsity"]


def summarize(args: argparse.Namespace) -> int:
    import pandas as pd

    table = pd.DataFrame([summary_row(p) for p in args.logs], dtype=object)
    table = table.where(table.notna(), "–")
    print(table.to_markdown(index=False))
    return 0


def plot(args: argparse.Namespace) -> int:
    """Running training loss against the share of the run (left) and against the sparsity reached (right)."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for path in args.logs:
        config, steps, final = _read(path)
        loss = _running([r["loss"] for r in steps])
        label = Path(path).stem + (f" → {final['accuracy']:.1f}%" if final else " (cut)")
        (line,) = left.plot([r["step"] / config["steps"] for r in steps], loss, label=label, lw=1)
        ramp = [(r["sparsity"], v) for r, v in zip(steps, loss, strict=True) if 0 < r["sparsity"]]
        if ramp:
            right.plot(*zip(*ramp, strict=True), lw=1, color=line.get_color())
    for axis in (left, right):
        axis.axhline(math.log(2), color="grey", ls=":")
    left.set_ylabel("training loss (running mean of 3 log lines); dotted: ln 2, chance")
    left.set_xlabel("share of the run (optimizer steps / total)")
    right.set_xlabel("scheduled sparsity of the prunable set")
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


# ---- plumbing ---------------------------------------------------------------------------------------------------
def _device() -> torch.device:
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matrix products: ~fp32 results, much faster on GPUs
        return torch.device("cuda")
    return torch.device("cpu")


def _open_log(path: str | None):
    if path is None:
        return sys.stdout
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w", buffering=1)  # line-buffered: a killed run keeps what it logged


def _write(log, row: dict) -> None:
    log.write(json.dumps(row) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="tokenize SST-2 and the MLM corpus, save the model")
    p.add_argument("--out", required=True)
    p.add_argument("--compact-vocab", action="store_true", help="keep only the tokens that occur")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--no-corpus", dest="corpus", action="store_false", help="skip the pretraining corpus")
    p.set_defaults(run=prepare)
    p = sub.add_parser("pretrain", help="MLM-pretrain a BERT of MiniLM's shape from scratch")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log")
    p.add_argument("--log-every", type=int, default=100)
    p.set_defaults(run=pretrain)
    p = sub.add_parser("finetune", help="fine-tune on SST-2 with a method, logging loss, churn, gradient norms")
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--method", default="movement", choices=["dense", "magnitude", "movement"])
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4, help="weights' learning rate (the quick preset's)")
    p.add_argument("--lr-warmup", type=float, default=0.06, help="share of steps of linear lr warm-up")
    p.add_argument("--warmup-frac", type=float, default=0.1, help="pruning warm-up, share of steps")
    p.add_argument("--cooldown-frac", type=float, default=0.2, help="pruning cool-down, share of steps")
    p.add_argument("--score-optimizer", default="adam", choices=["adam", "sgd"])
    p.add_argument("--freeze-embeddings", action="store_true")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="global clip over weights and scores; 0: none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=0, help="validation every N steps (0: only at the end)")
    p.set_defaults(run=finetune)
    p = sub.add_parser("summarize", help="a markdown table of finetune logs: collapse, gradient norms, end")
    p.add_argument("logs", nargs="+")
    p.set_defaults(run=summarize)
    p = sub.add_parser("plot", help="loss curves of finetune logs, against steps and against sparsity")
    p.add_argument("logs", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(run=plot)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
