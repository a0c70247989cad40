"""``torch.compile`` of the training step against eager, per method, on MiniLM: compile cost, step time, agreement.

Issue 18 item 4: keep ``torch.compile`` where it is faster and gives the same results within tolerance. For each
method (default dense and magnitude) three runners train side by side from the same seeded state on the same real
MNLI batches (batch 32, max length 128, dynamic padding), set up as a cell's training sets them up
(:func:`bench.run.execute.train_and_evaluate`, as in ``masking_overhead.py``: ``prepare(model, task, tokenizer)``,
frozen pretrained weights for methods that do not train them, the optimizer of
:class:`bench.run.training.PruningTrainer` and the Trainer's linear learning-rate schedule):

* ``eager``: the step as the Trainer runs it: ``PruningTrainer.compute_loss``, backward, clipping at
  ``max_grad_norm``, the optimizer step, ``zero_grad``, then the scheduler step and the method's after-step hook
  ``step(t, T, lr)``;
* ``model``: the same with the model wrapped in ``torch.compile(model, backend=..., mode=...)``, which is what the
  Trainer does with ``TrainingArguments(torch_compile=True)`` (accelerate's ``TorchDynamoPlugin``, dynamic=None);
* ``step``: the same with the whole body (loss, backward, clipping, optimizer step, ``zero_grad``) in one
  ``torch.compile``'d function; the scheduler and the method's hook (Python control flow on the masks) stay eager.

Each method runs in its own block after ``torch._dynamo.reset()``, so that it compiles as a fresh cell would (within
a block ``model`` and ``step`` may share frames left over by graph breaks: see the graphs column). The runners are
interleaved step by step so that machine noise hits all alike, and every runner's step ``i`` starts from the same
``torch.manual_seed``. The inductor cache lives in a fresh temporary folder unless ``--cache-dir`` is given (so
compile times are cold; run twice with the same ``--cache-dir`` for a warm cache, as later cells of a matrix would
see). With ``--fallback-random`` (the default) inductor draws dropout with eager's generator, so that losses and
weights are comparable; ``--no-fallback-random`` uses inductor's own RNG (faster kernels, different dropout masks).

Printed per runner: the graphs dynamo compiled, graph breaks and recompiles (with reasons); the warm-up cost (compile
overhead: the extra seconds of the first steps and any step that compiled, beyond the steady compiled step time);
the median steady step and its ratio to eager; the break-even (steps of steady saving that repay the overhead,
against the quick preset's 55-63 steps per cell); and agreement with eager after the same steps: the largest loss
difference over the steps, the largest weight difference, and the mask entries that differ.

    HF_HUB_CACHE=../shared/hf-hub HF_HUB_OFFLINE=1 python benchmarks/compile_step.py [--steps 8] [--warmup 4]
        [--methods dense magnitude movement] [--modes model step] [--compile-mode max-autotune-no-cudagraphs]
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding

from bench.config.presets import QUICK_MODEL
from bench.core import registry
from bench.core.task import Featurization

QUICK_STEPS = (55, 63)  # optimizer steps of a quick-preset cell
LOSS_TOLERANCE = 1e-4  # |loss_compiled - loss_eager|, float32 reductions reordered


@dataclass
class Runner:
    """One method trained in one mode; ``step(batch)`` runs an optimizer step and returns its loss."""

    method: str
    mode: str
    model: torch.nn.Module
    prepared: object
    step: Callable[[dict], torch.Tensor]
    times: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    graphs: list[int] = field(default_factory=list)  # graphs dynamo compiled during each step
    breaks: Counter = field(default_factory=Counter)  # graph-break reason -> count
    recompiles: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # the exception that stopped this runner


class Capture(logging.Handler):
    """Dynamo's recompile messages and warnings (e.g. the recompile limit hit), credited to the runner stepping."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.current: Runner | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.current is None:
            return
        message = record.getMessage()
        if "Recompiling function" in message:
            self.current.recompiles.append(message)
        elif record.levelno >= logging.WARNING:
            self.current.warnings.append(message)


def make_runner(name: str, mode: str, args: argparse.Namespace, tokenizer, workdir: Path, total: int, first: int
                ) -> Runner:  # fmt: skip
    """Method ``name`` prepared and trained as a cell would be, its step run in ``mode``; the steps are numbered
    ``first + 1, first + 2, ...`` of ``total``."""
    from bench.config.budget import training_arguments
    from bench.config.cell import Budget
    from bench.run.training import PruningTrainer, freeze_pretrained

    torch.manual_seed(args.seed)  # the same head initialisation (and method scores) in every mode
    task = registry.tasks.get("mnli")()
    model = task.build_model(args.model)
    cls = registry.methods.get(name)
    method = cls(args.sparsity if cls.prunes else 0.0)
    method.prepare(model, task=task, tokenizer=tokenizer)
    if not method.trains_weights:
        freeze_pretrained(model)
    targs = training_arguments(Budget(batch_size=32, max_length=128), workdir / f"{name}-{mode}", seed=args.seed)
    trainer = PruningTrainer(model=model, args=targs, method=method)
    optimizer = trainer.create_optimizer()
    scheduler = trainer.create_scheduler(num_training_steps=total, optimizer=optimizer)
    model.train()

    def lr() -> float:
        return optimizer.param_groups[0]["lr"]

    method.step(0, total, lr())  # as on_train_begin
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
        for _ in range(first):
            scheduler.step()
    method.step(first, total, lr())  # the schedule's state at step `first`
    compile_kwargs = {"backend": args.backend, "mode": args.compile_mode}
    forward_model = torch.compile(model, **compile_kwargs) if mode == "model" else model

    def body(batch: dict) -> torch.Tensor:
        loss = trainer.compute_loss(forward_model, batch)  # the task loss plus the method's regularizer
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), targs.max_grad_norm)
        optimizer.step()
        model.zero_grad()
        return loss.detach()

    compiled_body = torch.compile(body, **compile_kwargs) if mode == "step" else body
    counter = [first]

    def step(batch: dict) -> torch.Tensor:
        loss = compiled_body(batch)
        scheduler.step()
        counter[0] += 1
        method.step(counter[0], total, lr())
        return loss

    return Runner(name, mode, model, method, step)


def dynamo_state() -> tuple[int, Counter]:
    counters = torch._dynamo.utils.counters
    return counters["stats"]["unique_graphs"], Counter(counters["graph_break"])


def run_block(runners: list[Runner], batches: list[dict], seed: int, capture: Capture) -> None:
    """Every runner steps through ``batches``, interleaved; times, losses and dynamo events per step. A runner that
    raises (a compile failure is a result too) is stopped and its error kept."""
    for index, batch in enumerate(batches):
        for runner in runners:
            if runner.error is not None:
                continue
            torch.manual_seed(seed + 1 + index)  # the same dropout draws for every runner's step `index`
            graphs, breaks = dynamo_state()
            capture.current = runner
            started = time.perf_counter()
            try:
                loss = runner.step(batch)
            except Exception as error:
                runner.error = f"step {index + 1}: {type(error).__name__}: {short(str(error), 600)}"
                continue
            finally:
                capture.current = None
            runner.times.append(time.perf_counter() - started)
            runner.losses.append(float(loss))
            graphs_after, breaks_after = dynamo_state()
            runner.graphs.append(graphs_after - graphs)
            runner.breaks.update(breaks_after - breaks)


def agreement(runner: Runner, eager: Runner) -> tuple[float, float, float, str, int, int]:
    """(max |Δloss| over the steps, |Δloss| at the last step, max |ΔW|, its parameter, masks differing, mask total)."""
    losses = [abs(a - b) for a, b in zip(runner.losses, eager.losses, strict=True)]
    reference = dict(eager.model.named_parameters())
    worst, worst_name = 0.0, "-"
    with torch.no_grad():
        for param_name, param in runner.model.named_parameters():
            diff = float((param - reference[param_name]).abs().max())
            if diff > worst or math.isnan(diff):
                worst, worst_name = diff, param_name
    differ = total = 0
    eager_masks = getattr(eager.prepared, "masks", {}) or {}
    for mask_name, mask in (getattr(runner.prepared, "masks", {}) or {}).items():
        differ += int((mask.mask != eager_masks[mask_name].mask).sum())
        total += mask.mask.numel()
    return max(losses), losses[-1], worst, worst_name, differ, total


def short(reason: str, width: int = 150) -> str:
    line = " ".join(reason.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def report(runners: list[Runner], warmup: int) -> list[str]:
    """The block's rows (printed at once, so that a stopped run still shows the finished methods)."""
    eager = next(r for r in runners if r.mode == "eager")
    lines = []
    for runner in runners:
        if runner.error is not None:
            lines.append(f"{runner.method:<10} {runner.mode:<6} FAILED at {runner.error}")
            continue
        n = len(runner.times)
        steady = [i for i in range(warmup, n) if runner.graphs[i] == 0]
        if not steady:
            lines.append(f"{runner.method:<10} {runner.mode:<6} compiled in every step of {n}: no steady state")
            continue
        m_c = statistics.median(runner.times[i] for i in steady)
        m_e = statistics.median(eager.times[i] for i in steady)
        warm = [i for i in range(n) if i not in steady]
        first_c = sum(runner.times[i] for i in warm)
        first_e = sum(eager.times[i] for i in warm)
        overhead = first_c - first_e - len(warm) * (m_c - m_e)
        saving = m_e - m_c
        if runner.mode == "eager":
            even = "-"
        elif saving <= 0:
            even = "never (slower)"
        else:
            steps = math.ceil(overhead / saving)
            pays = "pays off in a quick cell" if steps <= QUICK_STEPS[0] else "not in a quick cell"
            even = f"{steps} steps ({pays})"
        loss_max, loss_last, w_diff, w_name, differ, total = agreement(runner, eager)
        per_step = statistics.median(runner.times[i] / eager.times[i] for i in steady)
        compiled_at = ",".join(str(i + 1) for i in range(n) if runner.graphs[i]) or "-"
        lines.append(
            f"{runner.method:<10} {runner.mode:<6} {sum(runner.graphs):>6} {compiled_at:>12} "
            f"{sum(runner.breaks.values()):>6} {len(runner.recompiles):>5} {first_c:>9.1f} {overhead:>9.1f} "
            f"{m_c:>8.3f} {m_c / m_e:>6.2f}x {per_step:>6.2f}x"
            f"  {even}"
        )
        if runner.mode != "eager":
            agrees = "same" if loss_max <= LOSS_TOLERANCE else "DIFFERENT"
            lines.append(
                f"{'':<17} vs eager after {n} steps: {agrees}: max |Δloss| {loss_max:.2e} (last {loss_last:.2e}, "
                f"loss {runner.losses[-1]:.4f}), max |ΔW| {w_diff:.2e} ({w_name}), masks differing {differ}/{total}"
            )
    for runner in runners:
        for reason, count in runner.breaks.most_common(8):
            lines.append(f"  {runner.method}/{runner.mode} graph break x{count}: {short(reason)}")
        for message in Counter(short(m, 300) for m in runner.recompiles).most_common(6):
            lines.append(f"  {runner.method}/{runner.mode} recompile x{message[1]}: {message[0]}")
        for message in Counter(short(m) for m in runner.warnings).most_common(4):
            lines.append(f"  {runner.method}/{runner.mode} warning x{message[1]}: {message[0]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per runner after the warm-up")
    parser.add_argument("--warmup", type=int, default=4, help="steps given to compiling (counted in its cost)")
    parser.add_argument("--methods", nargs="+", default=["dense", "magnitude"])
    parser.add_argument("--modes", nargs="+", default=["model", "step"], choices=["model", "step"],
                        help="compiled modes, each against eager")  # fmt: skip
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--model", default=QUICK_MODEL)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode (default: the Trainer's, None)")
    parser.add_argument("--fallback-random", action=argparse.BooleanOptionalAction, default=True,
                        help="inductor draws random numbers with eager's generator (comparable dropout)")  # fmt: skip
    parser.add_argument("--cache-dir", default=None, help="inductor cache (default: a fresh one, cold)")
    args = parser.parse_args()

    import torch._dynamo
    import torch._inductor.config

    from bench.config.resolve import load_tokenizer

    unknown = sorted(set(args.methods) - set(registry.methods.names()))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(registry.methods.names())}")
    torch._inductor.config.fallback_random = args.fallback_random
    torch._logging.set_logs(recompiles=True)
    capture = Capture()
    recompiles_log = logging.getLogger("torch._dynamo.guards.__recompiles")
    recompiles_log.addHandler(capture)
    recompiles_log.propagate = False  # collected and summarised below instead of printed as they come
    logging.getLogger("torch._dynamo").addHandler(capture)

    n_batches = args.warmup + args.steps
    tokenizer = load_tokenizer(args.model)
    task = registry.tasks.get("mnli")(train_split=f"train[:{32 * n_batches}]")
    features = task.featurize(task.train_examples(), tokenizer, Featurization(128), train=True)
    collate = DataCollatorWithPadding(tokenizer)
    batches = [collate([features[i] for i in range(s * 32, s * 32 + 32)]) for s in range(n_batches)]
    lengths = [int(b["input_ids"].shape[1]) for b in batches]
    total = max(100, 4 * n_batches)
    first = total // 2 - n_batches  # the steps end in the middle of the schedule

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = args.cache_dir or str(Path(tmp) / "inductor")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, MNLI batch 32 (max length "
              f"128, padded lengths {lengths}), sparsity {args.sparsity}, steps {first + 1}-{first + n_batches} of "
              f"{total} ({args.warmup} warm-up + {args.steps} timed); torch.compile backend={args.backend} "
              f"mode={args.compile_mode} dynamic=None, fallback_random={args.fallback_random}, inductor cache "
              f"{'given: ' + args.cache_dir if args.cache_dir else 'fresh (cold)'}; full_determinism on (as cells)",
              flush=True)  # fmt: skip
        print(f"{'method':<10} {'mode':<6} {'graphs':>6} {'compiled at':>12} {'breaks':>6} {'recmp':>5} "
              f"{'first s':>9} {'overhead':>9} {'median s':>8} {'ratio':>7} {'per-step':>7}  break-even vs quick "
              f"cell {QUICK_STEPS[0]}-{QUICK_STEPS[1]} steps", flush=True)  # fmt: skip
        for name in args.methods:
            torch._dynamo.reset()
            started = time.perf_counter()
            runners = [make_runner(name, mode, args, tokenizer, Path(tmp), total, first)
                       for mode in ["eager", *args.modes]]  # fmt: skip
            run_block(runners, batches, args.seed, capture)
            for line in report(runners, args.warmup):
                print(line, flush=True)
            print(f"  ({name} block {time.perf_counter() - started:.0f}s)", flush=True)
            del runners
            gc.collect()
    print("first s: seconds of the warm-up steps and of any later step that compiled; overhead: those seconds minus "
          "eager's on the same batches minus the steady difference; ratio: median steady step / eager's on the same "
          "steps; per-step: median of the per-batch ratios; break-even: overhead / steady saving per step; "
          f"agreement tolerance used in the reading: |Δloss| <= {LOSS_TOLERANCE:g}")  # fmt: skip


if __name__ == "__main__":
    main()
