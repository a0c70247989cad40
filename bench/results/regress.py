"""``bench regress``: the regression gate on a tiny model.

Runs a fixed small matrix (every registered method, or ``--methods``, × sst2 and squad × sparsities 0.5 and 0.9,
seed 0, a few hundred examples) on a tiny random BERT built deterministically from :data:`SETTINGS`, through the
ordinary machinery (:func:`bench.run.runner.run_matrix`), into a fresh folder (never reusing old records: a cached
record would hide a regression). Then compares every cell's metrics, measured encoder sparsity and training loss
with the committed baseline (``results/baselines/regression.json``) within the per-metric tolerances stored in
that file, prints a table and exits 1 on any regression. ``--update-baseline`` rewrites the file instead; with a
methods subset it merges those methods' cells into the file and keeps the others.

:func:`compare` and :func:`updated_baseline` are pure functions of records and baseline data.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError

DEFAULT_BASELINE = Path("results/baselines/regression.json")
EXIT_REGRESSION = 1
MODEL_FOLDER = "tiny-bert"  # under the output folder

# Everything that decides the numbers; recorded in the baseline file and checked against it before a run.
SETTINGS: dict[str, Any] = {
    "tokenizer": "sentence-transformers/all-MiniLM-L6-v2",
    "init_seed": 0,  # torch.manual_seed before the random tiny encoder is built
    "model_config": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 256,
        "max_position_embeddings": 128,
    },
    "tasks": ["sst2", "squad"],
    "sparsities": [0.5, 0.9],
    "seed": 0,
    # One intra-op thread: on a busy 2-core CI machine two threads run 3-6x slower (they wait on each other), and
    # the numbers no longer depend on the machine's core count.
    "torch_threads": 1,
    "preset": "quick",
    # A random tiny encoder needs a large learning rate and a few epochs to learn anything in so few steps.
    "budget": {"epochs": 3, "batch_size": 16, "learning_rate": 3e-3, "max_length": 128, "doc_stride": 32},
    "splits": {
        "sst2": {"train_split": "train[:800]", "eval_split": "validation"},
        "squad": {"train_split": "train[:200]", "eval_split": "validation[:100]"},
    },
}

# Absolute tolerances of a new baseline file (the file's own tolerances win; edit them there).
DEFAULT_TOLERANCES: dict[str, float] = {
    "train_loss": 0.01,
    "accuracy": 2.5,
    "f1": 1.0,
    "exact_match": 1.0,
    "encoder_sparsity": 0.002,
}
TOLERANCES_COMMENT = (
    "Absolute tolerances (accuracy, f1, exact_match in points of %; encoder_sparsity a fraction; train_loss the "
    "Trainer's average training loss, regularizers included). Measured on the reference machine (2 cores, torch "
    "2.13.0 CPU, AVX-512): two runs are bit-identical. The same gate with the kernels forced to AVX2 "
    "(ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2, standing in for another CPU) "
    "moved train_loss by at most 0.0024, sst2 accuracy by at most 1.72 points (15 of 872 examples, movement at "
    "0.5: near-tied scores pick other weights), squad f1/exact_match and encoder sparsity not at all. Math "
    "changed on purpose moved train_loss by 0.013-0.24 (movement's score sign flipped) and 0.04-0.07 "
    "(magnitude ranking W instead of |W|). Hence train_loss 0.01 (4x the cross-CPU drift; the main detector), "
    "accuracy 2.5 points (about 1.5x the drift), f1 and exact_match 1.0 point (one of the 100 squad examples), "
    "encoder_sparsity 0.002 (about 200 of the 98,304 prunable weights: a method that misses its target)."
)

# Verdicts of a table row; every one but OK is a regression.
OK, WORSE, BETTER, FAILED, MISSING, NOT_RUN = "ok", "WORSE", "BETTER", "FAILED", "MISSING", "NOT RUN"
LOWER_IS_BETTER = {"train_loss"}
NO_DIRECTION = {"encoder_sparsity"}  # any move away from the baseline is a change, not an improvement


@dataclass(frozen=True)
class Row:
    """One line of the comparison table: a metric of a cell (or the cell's status)."""

    cell: str
    metric: str
    baseline: float | str | None
    now: float | str | None
    tolerance: float | None
    verdict: str
    note: str = ""

    @property
    def delta(self) -> float | None:
        numbers = isinstance(self.baseline, (int, float)) and isinstance(self.now, (int, float))
        return self.now - self.baseline if numbers else None


@dataclass
class Verdict:
    """Rows of the comparison plus notes; :attr:`ok` is False when any row is a regression."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [row for row in self.rows if row.verdict != OK]

    @property
    def ok(self) -> bool:
        return not self.regressions


# ---- command line ------------------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``regress`` subcommand to the ``bench`` parser."""
    regress = sub.add_parser(
        "regress",
        help="regression gate: a fixed tiny-model matrix compared with a committed baseline",
        description="Run every method (or --methods) × sst2, squad × sparsities 0.5, 0.9 on a tiny random BERT "
        "and compare with the baseline within its tolerances. Exit 0: green; 1: a regression or a failed "
        "cell; 2: bad input.",
    )
    regress.add_argument("--methods", default="all", help="comma list of methods, or 'all' (default)")
    regress.add_argument(
        "--baseline", type=Path, default=DEFAULT_BASELINE, help=f"baseline JSON file (default {DEFAULT_BASELINE})"
    )
    regress.add_argument(
        "--update-baseline",
        action="store_true",
        help="write the results into the baseline file (merged: other methods' cells are kept) instead of comparing",
    )
    regress.add_argument(
        "--output", type=Path, help="keep the run in this new or empty folder (default: a temporary folder)"
    )
    regress.set_defaults(func=cmd_regress)


def cmd_regress(args: argparse.Namespace) -> int:
    """``bench regress``. Returns 0 (green or baseline written), 1 (regression or failed cell).

    Raises:
        BenchError: unknown methods, a non-empty ``--output``, a missing or malformed baseline, a baseline made
            with other settings (or merging a subset into one).
    """
    from bench.core import registry

    methods = registry.methods.resolve(args.methods)
    settings = current_settings()
    baseline = load_baseline(args.baseline)
    if baseline is None and not args.update_baseline:
        raise BenchError(
            f"no baseline at {args.baseline} (a relative path starts in the current folder; the default is the "
            "repository's): create it with bench regress --update-baseline"
        )
    if baseline is not None and (not args.update_baseline or set(methods) != set(registry.methods.names())):
        check_settings(baseline, settings, args.baseline)
    check_output(args.output)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    results = run_in_folder(methods, settings, args.output, log)
    if args.update_baseline:
        return write_update(args.baseline, baseline, results, methods, settings)
    verdict = compare(results, baseline, methods)
    print(render(verdict, baseline_versions=baseline.get("versions")))
    return 0 if verdict.ok else EXIT_REGRESSION


def write_update(
    path: Path, baseline: dict[str, Any] | None, results: list[dict[str, Any]], methods: list[str], settings: dict
) -> int:
    """Write the updated baseline; refuse (write nothing, return 1) when a cell did not finish."""
    from bench.results import records

    failed = [r for r in results if r.get("status") != records.FINISHED]
    for rec in failed:
        print(f"{cell_key(rec)}: {rec.get('status')}: {rec.get('error')}", file=sys.stderr)
    if failed:
        print(f"baseline not written: {len(failed)} cell(s) did not finish", file=sys.stderr)
        return EXIT_REGRESSION
    data = updated_baseline(baseline, results, methods, settings)
    write_baseline(path, data)
    print(f"baseline written: {path} ({len(data['cells'])} cells; {len(results)} from this run)")
    return 0


# ---- settings and the baseline file -----------------------------------------------------------------------
def current_settings() -> dict[str, Any]:
    """A copy of :data:`SETTINGS`, the settings this code runs with."""
    return copy.deepcopy(SETTINGS)


def load_baseline(path: Path) -> dict[str, Any] | None:
    """The baseline file's data, or None when there is no file.

    Raises:
        BenchError: the file is not JSON or lacks ``settings``, ``tolerances`` or ``cells``.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BenchError(f"baseline {path} cannot be read as JSON: {err}") from err
    missing = [k for k in ("settings", "tolerances", "cells") if not isinstance(data, dict) or k not in data]
    if missing:
        raise BenchError(f"baseline {path} lacks {', '.join(missing)}; regenerate it with --update-baseline")
    return data


def write_baseline(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON with sorted cells (stable diffs), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def check_settings(baseline: dict[str, Any], settings: dict[str, Any], path: Path) -> None:
    """Raise :class:`BenchError` naming the differences when ``baseline`` was made with other settings."""
    differences = diff_settings(baseline["settings"], settings)
    if differences:
        raise BenchError(
            f"baseline {path} was made with other settings ({'; '.join(differences)}); "
            "regenerate it for every method with bench regress --update-baseline"
        )


def diff_settings(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Readable ``key: old -> new`` lines for every leaf that differs between two settings trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += diff_settings(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def check_output(output: Path | None) -> None:
    """Raise :class:`BenchError` when ``--output`` is a file or a non-empty folder (old records would be reused)."""
    if output is None or not Path(output).exists():
        return
    if not Path(output).is_dir() or any(Path(output).iterdir()):
        raise BenchError(f"--output {output} is not an empty folder; give a new one (old records would be reused)")


# ---- running the matrix ------------------------------------------------------------------------------------
def run_in_folder(
    methods: list[str], settings: dict[str, Any], output: Path | None, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Build the tiny model and run the matrix in ``output`` (a temporary folder, deleted after, when None).

    The Trainer's console output goes to stderr, so that stdout carries only the verdict.
    """
    with contextlib.ExitStack() as stack:
        folder = Path(output) if output else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="regress-")))
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        stack.enter_context(torch_threads(settings["torch_threads"]))
        model_dir = build_tiny_model(folder / MODEL_FOLDER, settings)
        from bench.run.runner import run_matrix

        return run_matrix(regression_matrix(methods, settings, model_dir, folder), log=log)


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, then restore the previous number."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_tiny_model(folder: Path, settings: dict[str, Any]) -> Path:
    """Save a random BERT encoder (seeded, the same bits every time with one torch version) and the tokenizer
    of ``settings["tokenizer"]`` into ``folder``, usable as a matrix ``model``. Returns ``folder``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(settings["tokenizer"])
    config = BertConfig(vocab_size=len(tokenizer), **settings["model_config"])
    with torch.random.fork_rng():
        torch.manual_seed(settings["init_seed"])
        model = BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def regression_matrix(methods: list[str], settings: dict[str, Any], model_dir: Path, output: Path):
    """The :class:`bench.config.matrix.Matrix` of the gate: ``methods`` × settings' tasks and sparsities, no search."""
    from bench.config.matrix import Matrix

    return Matrix(
        methods=methods,
        tasks=list(settings["tasks"]),
        sparsities=list(settings["sparsities"]),
        seeds=[settings["seed"]],
        preset=settings["preset"],
        model=str(model_dir),
        output=Path(output),
        budget=dict(settings["budget"]),
        splits=copy.deepcopy(settings["splits"]),
        trials=0,
    )


# ---- comparison (pure) -------------------------------------------------------------------------------------
def cell_key(record: dict[str, Any]) -> str:
    """``method/task/sparsity`` of a record, e.g. ``movement/squad/0.9`` (dense: ``dense/sst2/0``)."""
    cell = record["cell"]
    return f"{cell['method']}/{cell['task']['name']}/{float(cell['sparsity']):g}"


def key_method(key: str) -> str:
    return key.split("/", 1)[0]


def record_values(record: dict[str, Any]) -> dict[str, float]:
    """What the gate watches in a finished record, rounded to 6 decimals (as the baseline stores them): the task
    metrics (in %), the measured encoder sparsity (fraction) and the Trainer's average training loss."""
    values = {name: float(value) for name, value in record["metrics"].items()}
    values["encoder_sparsity"] = float(record["sparsity"]["encoder_sparsity"])
    values["train_loss"] = float(record["train_loss"])
    return {name: round(value, 6) for name, value in values.items()}


def compare(records: list[dict[str, Any]], baseline: dict[str, Any], methods: list[str] | None = None) -> Verdict:
    """Compare the records of a run with ``baseline`` (the file's data). Pure.

    A regression is: a cell that did not finish, a metric beyond its tolerance (in either direction: BETTER
    fails too, so that an intended change is recorded with --update-baseline), a cell or metric the baseline
    lacks or that the run lacks, or a baseline cell of a run method that was not run. A metric without a
    tolerance in the file must match exactly.

    Args:
        records: cell records as :func:`bench.run.runner.run_matrix` returns them.
        baseline: ``{"tolerances": {metric: absolute tolerance}, "cells": {key: {metric: value}}, ...}``.
        methods: the methods run (default: those of ``records``); baseline cells of other methods are ignored.
    """
    from bench.results import records as rec_mod

    tolerances, cells = baseline["tolerances"], baseline["cells"]
    methods = methods if methods is not None else sorted({r["cell"]["method"] for r in records})
    verdict = Verdict()
    seen = set()
    for record in records:
        key = cell_key(record)
        seen.add(key)
        if record.get("status") != rec_mod.FINISHED:
            note = str(record.get("error") or "")[:120]
            verdict.rows.append(Row(key, "status", rec_mod.FINISHED, record.get("status"), None, FAILED, note))
        elif key not in cells:
            verdict.rows.append(Row(key, "(cell)", None, "finished", None, MISSING, "run with --update-baseline"))
        else:
            verdict.rows += compare_cell(key, record_values(record), cells[key], tolerances)
    others = 0
    for key in sorted(set(cells) - seen):
        if key_method(key) in methods:
            verdict.rows.append(Row(key, "(cell)", "in baseline", None, None, NOT_RUN, "the matrix lost this cell"))
        else:
            others += 1
    if others:
        verdict.notes.append(f"{others} baseline cell(s) of methods not run here were not compared")
    return verdict


def compare_cell(key: str, now: dict[str, float], then: dict[str, float], tolerances: dict[str, float]) -> list[Row]:
    """Rows of one finished cell, metric by metric (sorted by name)."""
    rows = []
    for metric in sorted(set(now) | set(then)):
        tolerance = tolerances.get(metric)
        if metric not in then or metric not in now:
            note = "not in the baseline: run with --update-baseline" if metric not in then else "no longer measured"
            rows.append(Row(key, metric, then.get(metric), now.get(metric), tolerance, MISSING, note))
            continue
        rows.append(Row(key, metric, then[metric], now[metric], tolerance, judge(metric, then[metric], now[metric],
                                                                                 tolerance or 0.0)))  # fmt: skip
    return rows


def judge(metric: str, baseline: float, now: float, tolerance: float) -> str:
    """OK within ``tolerance`` (absolute, inclusive); else WORSE or BETTER by the metric's direction (a NaN is
    WORSE; encoder sparsity has no better direction: any move beyond tolerance is WORSE)."""
    if math.isnan(now) and not math.isnan(baseline):
        return WORSE
    if now == baseline or abs(now - baseline) <= tolerance:
        return OK
    if metric in NO_DIRECTION:
        return WORSE
    improved = now < baseline if metric in LOWER_IS_BETTER else now > baseline
    return BETTER if improved else WORSE


def updated_baseline(
    baseline: dict[str, Any] | None, records: list[dict[str, Any]], methods: list[str], settings: dict[str, Any]
) -> dict[str, Any]:
    """The baseline data after a run of ``methods``: their cells replaced by the (finished) ``records``, other
    methods' cells and the file's tolerances kept (defaults for metrics without one). Pure."""
    from bench.config.cell import package_versions

    old = baseline or {}
    cells = {k: v for k, v in old.get("cells", {}).items() if key_method(k) not in methods}
    cells.update({cell_key(r): record_values(r) for r in records})
    return {
        "description": "Baseline of `bench regress` (the CI regression gate on a tiny random BERT). Regenerate "
        "it after an intended change with `bench regress --update-baseline`.",
        "settings": settings,
        "versions": {**old.get("versions", {}), **package_versions()},
        "tolerances": {**DEFAULT_TOLERANCES, **old.get("tolerances", {})},
        "tolerances_comment": old.get("tolerances_comment", TOLERANCES_COMMENT),
        "cells": dict(sorted(cells.items())),
    }


# ---- report ------------------------------------------------------------------------------------------------
def render(verdict: Verdict, baseline_versions: dict[str, str] | None = None) -> str:
    """The comparison table (cell, metric, baseline, now, delta, tolerance, verdict, note) and a summary line."""
    from tabulate import tabulate

    from bench.config.cell import package_versions

    table = [
        (r.cell, r.metric, fmt(r.baseline), fmt(r.now), fmt(r.delta, "+.4f"), fmt(r.tolerance), r.verdict, r.note)
        for r in verdict.rows
    ]
    headers = ["cell", "metric", "baseline", "now", "delta", "tolerance", "verdict", "note"]
    lines = [tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True)]
    changed = {k: (v, baseline_versions[k]) for k, v in package_versions().items()
               if baseline_versions and k in baseline_versions and baseline_versions[k] != v}  # fmt: skip
    if changed:
        lines.append("note: versions differ from the baseline's: "
                     + ", ".join(f"{k} {old} -> {new}" for k, (new, old) in sorted(changed.items())))  # fmt: skip
    lines.extend(f"note: {note}" for note in verdict.notes)
    cells = len({r.cell for r in verdict.rows})
    bad = verdict.regressions
    if bad:
        lines.append(f"REGRESSION: {len(bad)} of {len(verdict.rows)} checks failed in "
                     f"{len({r.cell for r in bad})} of {cells} cells; an intended change? "
                     "bench regress --update-baseline")  # fmt: skip
    else:
        lines.append(f"green: {len(verdict.rows)} checks in {cells} cells within tolerance")
    return "\n".join(lines)


def fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return ""
    return format(value, spec) if isinstance(value, float) else str(value)
