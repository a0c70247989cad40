"""What sparsity buys at inference: speed-up and file size of movement and soft movement on MiniLM.

Runs (or reuses) the matrix movement, soft_movement × sst2 × 0.5, 0.9, 0.97, 0.99 with ``--measure-speed`` (the
quick preset's MiniLM and budget), then prints, per cell, the measured sparsity, how much of it compaction turned
into removed heads and FFN units, the sparse export file against the dense one, and the CPU speed-up over the dense
model (median latency ratio, 128 tokens, batch 1 and 32) of the finalized (masked), compacted and sparse-CSR models,
the compacted model's speed-up under ONNX Runtime (with the ``onnx`` extra), and its FLOPs against the dense model's
(what compaction removed; the speed-ups are what a runtime made of it). "encoder part" is the encoder's prunable
matrices in the sparse file against their dense fp32 size (measured; ≈ marks an estimate for older records).

Targets (issue 7): at 97% sparsity, >= 2x faster than dense at batch 1, and a file <= 25% of the dense one.
Sanh, Wolf & Rush (2020), appendix A.3, report no speed-up from unstructured sparsity in standard PyTorch.

With ``--structured`` it runs issue 17's matrix instead: dense, ``block_movement`` (Lagunas et al. 2021) and
magnitude, movement and soft movement with ``granularity: structured`` × sst2 × 0.5, 0.8, 0.9, and prints each
cell's accuracy with its 95% interval and verdict beside the compacted model's speed-ups (PyTorch and ONNX Runtime,
batch 1 and 32) and FLOPs. Target (issue 17): a compacted model >= 2x faster than dense at batch 1 and 32 in both
runtimes whose accuracy is clearly above chance (its interval above the trivial baseline's).

    HF_HUB_CACHE=../shared/hf-hub HF_HUB_OFFLINE=1 python benchmarks/inference_speedup.py [--output DIR]
    HF_HUB_CACHE=../shared/hf-hub HF_HUB_OFFLINE=1 python benchmarks/inference_speedup.py --structured \
        --output results/readme-structured

Time it on an otherwise idle machine: the speed measurement is wall-clock.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from bench.results.deployment import ENGINES, speed_up
from bench.results.leaderboard import method_label
from bench.run.runner import Matrix, run_matrix

SPARSITIES = [0.5, 0.9, 0.97, 0.99]
METHODS = ["movement", "soft_movement"]
TARGET_SPARSITY, TARGET_SPEED_UP, TARGET_FILE = 0.97, 2.0, 0.25


def ratio(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else "—"  # no matrix sparse enough for the CSR path


def encoder_part(rec: dict) -> str:
    """The encoder's prunable matrices in the sparse file against their dense fp32 bytes: measured (export
    ``encoder_ratio``, read from the file); records written before that field get the old estimate, marked ≈."""
    export = rec["export"]
    if export.get("encoder_ratio") is not None:
        return f"{export['encoder_ratio']:.0%}"
    prunable, total = rec["sparsity"]["prunable_params"], rec["sparsity"]["total_params"]
    other_bytes = (total - prunable) * 4  # embeddings, biases, LayerNorm, heads: stored dense, fp32
    return f"≈{(export['sparse_bytes'] - other_bytes) / (prunable * 4):.0%}"


def row(rec: dict) -> list:
    cell, export, speed = rec["cell"], rec["export"], rec["speed"]["speed_up"]
    c = export["compaction"]
    flops = rec["speed"].get("flops") or {}
    return [
        cell["method"], f"{cell['sparsity']:.0%}", f"{rec['sparsity']['encoder_sparsity']:.1%}",
        f"{c['heads_removed']}/{c['heads_total']}", f"{c['ffn_units_removed']}/{c['ffn_units_total']}",
        f"{c['structured_fraction']:.0%}", f"{export['sparse_bytes'] / 1e6:.1f} MB", f"{export['file_ratio']:.0%}",
        encoder_part(rec), f"{flops['ratio']:.0%}" if flops.get("ratio") is not None else "—",
        *(ratio(speed[f"batch_{b}"].get(v)) for b in (1, 32) for v in ("finalized", "compacted", "sparse_csr")),
        ratio(speed_up(rec["speed"], 1, "onnx")), ratio(speed_up(rec["speed"], 32, "onnx")),
    ]  # fmt: skip


HEADERS = ["method", "target", "measured", "heads cut", "FFN units cut", "structure", "file", "of dense",
           "encoder part", "FLOPs", "b1 masked", "b1 compact", "b1 csr", "b32 masked", "b32 compact", "b32 csr",
           "b1 onnx compact", "b32 onnx compact"]  # fmt: skip


def verdicts(results: list[dict]) -> list[str]:
    lines = []
    for rec in results:
        if abs(rec["cell"]["sparsity"] - TARGET_SPARSITY) > 1e-9:
            continue
        speed = rec["speed"]["speed_up"]["batch_1"]
        best = max(speed, key=speed.get)
        ratio = rec["export"]["file_ratio"]
        lines.append(
            f"{rec['cell']['method']} @ 97%: best batch-1 speed-up {speed[best]:.2f}× ({best}) — target ≥ "
            f"{TARGET_SPEED_UP:.0f}×: {'met' if speed[best] >= TARGET_SPEED_UP else 'MISSED'}; file {ratio:.0%} of "
            f"dense — target ≤ {TARGET_FILE:.0%}: {'met' if ratio <= TARGET_FILE else 'MISSED'}"
        )
    return lines


def bert_base_file_ratios(sparsities: list[float]) -> list[str]:
    """Sparse-file / dense-file size of a BERT-base-shaped classifier with random zeros in its prunable set: the
    file size depends only on the number of zeros per matrix, and BERT-base's embeddings are a smaller share."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from bench.core.prunable import prunable_weights
    from bench.deploy.export import size_report

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2)).eval()
    originals = {pw.name: pw.module.weight.detach().clone() for pw in prunable_weights(model)}
    lines = []
    for sparsity in sparsities:
        with torch.no_grad():
            for pw in prunable_weights(model):
                weight = originals[pw.name].clone()
                weight[torch.rand_like(weight) < sparsity] = 0
                pw.module.weight.copy_(weight)
        report = size_report(model)
        lines.append(f"BERT-base shape, {sparsity:.0%} random zeros: sparse file {report['file_ratio']:.0%} of dense, "
                     f"its encoder matrices {report['encoder_ratio']:.0%} of theirs")  # fmt: skip
    return lines


STRUCTURED_METHODS = ["dense", "magnitude", "movement", "soft_movement", "block_movement"]
STRUCTURED_SPARSITIES = [0.5, 0.8, 0.9]
STRUCTURED_HPARAMS = {m: {"granularity": "structured"} for m in ("magnitude", "movement", "soft_movement")}


def compacted_speed_ups(rec: dict) -> list[float | None]:
    """The compacted model's speed-ups over dense: PyTorch batch 1 and 32, then ONNX Runtime batch 1 and 32."""
    return [speed_up(rec.get("speed"), batch, engine) for engine in ENGINES for batch in (1, 32)]


def structured_row(rec: dict) -> list:
    cell, metric = rec["cell"], rec["primary_metric"]
    interval = rec["metric_intervals"][metric]
    label = method_label(cell)
    chance = "chance" if rec["verdicts"].get("chance") else "above chance"
    c = rec["export"]["compaction"]
    flops = (rec.get("speed") or {}).get("flops", {}).get("ratio")
    return [
        label, f"{cell['sparsity']:.0%}",
        f"{rec['metrics'][metric]:.2f} [{interval['low']:.1f}, {interval['high']:.1f}]",
        chance, f"{c['heads_removed']}/{c['heads_total']}", f"{c['ffn_units_removed']}/{c['ffn_units_total']}",
        f"{flops:.2f}" if flops is not None else "—", f"{rec['export'].get('encoder_ratio', float('nan')):.0%}",
        *(ratio(value) for value in compacted_speed_ups(rec)),
    ]  # fmt: skip


STRUCTURED_HEADERS = ["method", "target", "accuracy [95% CI]", "verdict", "heads cut", "FFN units cut", "FLOPs ×",
                      "encoder part", "b1 PyTorch", "b32 PyTorch", "b1 ONNX", "b32 ONNX"]  # fmt: skip


def structured_verdicts(results: list[dict]) -> list[str]:
    """Each pruned cell against issue 17's target, and its accuracy's distance from dense."""
    dense = next((r for r in results if r["cell"]["method"] == "dense"), None)
    lines = []
    for rec in results:
        if rec["cell"]["method"] == "dense":
            continue
        metric = rec["primary_metric"]
        fast = compacted_speed_ups(rec)
        met = all(s is not None and s >= TARGET_SPEED_UP for s in fast) and not rec["verdicts"].get("chance")
        gap = f", {rec['metrics'][metric] - dense['metrics'][metric]:+.2f} points from dense" if dense else ""
        lines.append(f"{structured_row(rec)[0]} @ {rec['cell']['sparsity']:.0%}: "
                     f"{'met' if met else 'missed'}{gap}")  # fmt: skip
    return lines


def run_structured(args: argparse.Namespace) -> None:
    matrix = Matrix(
        methods=STRUCTURED_METHODS, tasks=[args.task], sparsities=STRUCTURED_SPARSITIES, output=args.output,
        measure_speed=True, save_models=args.save_models, method_hparams=STRUCTURED_HPARAMS,
        splits={"*": {"train_split": args.train_split, "eval_split": args.eval_split}},
    )  # fmt: skip
    results = [r for r in run_matrix(matrix) if r["status"] == "finished"]
    print(tabulate([structured_row(r) for r in results], headers=STRUCTURED_HEADERS, tablefmt="github",
                   disable_numparse=True))  # fmt: skip
    print("target: compacted >= 2x dense at batch 1 and 32, PyTorch and ONNX Runtime, accuracy above chance")
    print("\n".join(structured_verdicts(results)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("results/speedup"))
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--train-split", default="train[:2000]")
    parser.add_argument("--eval-split", default="validation")
    parser.add_argument("--save-models", action="store_true", help="keep the models, for bench export")
    parser.add_argument("--structured", action="store_true", help="issue 17's structured matrix (module docstring)")
    args = parser.parse_args()
    if args.structured:
        return run_structured(args)
    matrix = Matrix(
        methods=METHODS, tasks=[args.task], sparsities=SPARSITIES, output=args.output, measure_speed=True,
        save_models=args.save_models,
        splits={"*": {"train_split": args.train_split, "eval_split": args.eval_split}},
    )  # fmt: skip
    results = [r for r in run_matrix(matrix) if r["status"] == "finished"]
    latency = results[0]["speed"]["latency_ms"] if results else {}
    print(tabulate([row(r) for r in results], headers=HEADERS, tablefmt="github", disable_numparse=True))
    for batch, variants in latency.items():
        dense = variants["dense"]
        print(f"dense {batch}: median {dense['median_ms']:.1f} ms (IQR {dense['iqr_ms']:.1f} ms)")
    print("\n".join(verdicts(results)))
    print("\n".join(bert_base_file_ratios(SPARSITIES)))


if __name__ == "__main__":
    main()
