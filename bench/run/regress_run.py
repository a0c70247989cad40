"""The run of the regression gate (``bench regress``): a fixed small matrix on a tiny random BERT.

Every registered method (or ``--methods``) × the tasks and sparsities of
:data:`bench.results.regress_baseline.SETTINGS`, seed 0, a few hundred examples, on a tiny random BERT built
deterministically from those settings (:func:`build_tiny_model`), run through the ordinary machinery
(:func:`bench.run.runner.run_matrix`) into a fresh folder: old records are never reused, since a cached record would
hide a regression (:func:`check_output`). The comparison with the baseline is :mod:`bench.results.regress`.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config.matrix import Matrix
from bench.core.errors import BenchError
from bench.run.runner import run_matrix

MODEL_FOLDER = "tiny-bert"  # under the output folder


def check_output(output: Path | None) -> None:
    """Raise :class:`BenchError` when ``--output`` is a file or a non-empty folder (old records would be reused)."""
    if output is None or not Path(output).exists():
        return
    if not Path(output).is_dir() or any(Path(output).iterdir()):
        raise BenchError(f"--output {output} is not an empty folder; give a new one (old records would be reused)")


def run_in_folder(
    methods: list[str], settings: dict[str, Any], output: Path | None, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Build the tiny model and run the matrix of ``methods`` with ``settings`` (shaped like
    :data:`bench.results.regress_baseline.SETTINGS`) in ``output`` (a temporary folder, deleted after, when None),
    with ``settings["torch_threads"]`` torch threads. Returns the cell records as
    :func:`bench.run.runner.run_matrix` returns them (finished, failed or diverged).

    The Trainer's console output goes to stderr, so that stdout carries only the verdict.
    """
    with contextlib.ExitStack() as stack:
        folder = Path(output) if output else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="regress-")))
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        stack.enter_context(torch_threads(settings["torch_threads"]))
        model_dir = build_tiny_model(folder / MODEL_FOLDER, settings)
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


def regression_matrix(methods: list[str], settings: dict[str, Any], model_dir: Path, output: Path) -> Matrix:
    """The :class:`bench.config.matrix.Matrix` of the gate: ``methods`` × settings' tasks and sparsities, no search."""
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
