"""``bench compare DIR_A DIR_B``: the cells both results folders have, side by side, with deltas.

Cells are paired by what they measure, not by cell id, so that two versions of a method (whose package versions
or hyperparameters change the id) or two machines can be compared: model, method (with "+distill"), task, target
sparsity and seed. Deltas are B − A. Where both cells saved their per-example eval results
(``OUTPUT/predictions``) on the same number of eval examples, ``p`` is the two-sided p-value of the paired sign-flip
permutation test of :func:`bench.results.stats.paired_test` on those examples.

Two cells are comparable only under one protocol: the same budget, train and eval splits and search settings (the
method's hyperparameters may differ: that is what a comparison of two versions is for). Pairs that differ in any of
those are refused, naming the cells and the fields, unless ``--force``; then each such row says what differs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.core.errors import BenchError
from bench.results import records
from bench.results.leaderboard import collect
from bench.results.significance import RESAMPLES

PAIR_KEY = ["model", "method", "task", "target_sparsity", "seed"]
PROTOCOL = ("budget", "task", "search")  # the parts of a cell that must agree for two cells to be compared
P_NOTE = (
    f"p: paired sign-flip permutation test on the shared eval examples ({RESAMPLES} resamples; blank where a cell "
    "has no per-example predictions, or the two evaluated different numbers of examples)."
)


def load_folder(folder: Path) -> pd.DataFrame:
    """:func:`bench.results.leaderboard.collect` of a results folder; records that cannot be read are skipped with a
    warning
    naming each (:func:`bench.results.records.read_records`).

    Raises:
        BenchError: ``folder`` has no ``cells/``.
    """
    records.require_results(folder)
    return collect(records.read_records(folder, on_bad="warn"))


def compare(
    a: pd.DataFrame, b: pd.DataFrame, arrays_a: dict[str, np.ndarray] | None = None,
    arrays_b: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Pair the finished cells of ``a`` and ``b`` on :data:`PAIR_KEY`; one row per pair with both values, the
    delta of the primary metric (points), of the measured encoder sparsity (points), the wall-time ratio B/A and
    ``p``: :func:`bench.results.stats.paired_test` of the two cells' per-example values (``arrays_a``/``arrays_b``:
    ``{cell id: shape (n_examples,)}``, see :func:`bench.results.significance.load_arrays`), NaN where either is
    missing or
    the lengths differ."""
    pairs = a.merge(b, on=PAIR_KEY, suffixes=("_a", "_b"))
    if pairs.empty:
        return pd.DataFrame(columns=[*PAIR_KEY, "cell_id_a", "cell_id_b", "metric", "value_a", "value_b", "delta", "p"])
    out = pairs[[*PAIR_KEY, "cell_id_a", "cell_id_b"]].copy()
    out["metric"] = pairs["metric_a"]
    out["value_a"], out["value_b"] = pairs["value_a"], pairs["value_b"]
    out["delta"] = pairs["value_b"] - pairs["value_a"]
    out["sparsity_a"], out["sparsity_b"] = pairs["encoder_sparsity_a"], pairs["encoder_sparsity_b"]
    out["sparsity_delta"] = pairs["encoder_sparsity_b"] - pairs["encoder_sparsity_a"]
    out["wall_ratio"] = pairs["wall_seconds_b"] / pairs["wall_seconds_a"]
    out["p"] = [_p((arrays_a or {}).get(x), (arrays_b or {}).get(y)) for x, y in zip(pairs["cell_id_a"],
                                                                                     pairs["cell_id_b"], strict=True)]
    return out.sort_values(["task", "target_sparsity", "method", "seed"]).reset_index(drop=True)


def _p(x: np.ndarray | None, y: np.ndarray | None) -> float:
    from bench.results.stats import paired_test

    if x is None or y is None or x.shape != y.shape:
        return float("nan")
    return paired_test([x], [y], resamples=RESAMPLES)


def render(pairs: pd.DataFrame, only_a: int, only_b: int, names: tuple[str, str]) -> str:
    """A Markdown table of :func:`compare`'s rows, then how many cells only one folder has."""
    a, b = names
    footer = f"\n\n{len(pairs)} cells in both; {only_a} only in {a}; {only_b} only in {b}. Deltas are B − A. {P_NOTE}"
    if pairs.empty:
        return f"(no cells in common){footer}"
    if "protocol" in pairs and pairs["protocol"].astype(bool).any():
        differ = pairs[pairs["protocol"].astype(bool)]
        lines = [f"\n- {r.method}/{r.task}@{r.target_sparsity:g}#{r.seed}: {r.protocol}" for r in differ.itertuples()]
        footer += "\n\nCompared with --force across protocols (their deltas do not measure the method alone):"
        footer += "".join(lines)
    rows = [
        [r.method, r.task, f"{r.target_sparsity:.0%}", r.seed, r.metric, f"{r.value_a:.2f}", f"{r.value_b:.2f}",
         f"{r.delta:+.2f}", f"{r.sparsity_a:.2%}", f"{r.sparsity_b:.2%}", _ratio(r.wall_ratio),
         f"{r.p:.3g}" if pd.notna(r.p) else ""]
        for r in pairs.itertuples()
    ]  # fmt: skip
    headers = ["method", "task", "sparsity", "seed", "metric", f"A ({a})", f"B ({b})", "Δ", "sp A", "sp B",
               "wall B/A", "p"]  # fmt: skip
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True) + footer


def _ratio(value: float) -> str:
    return f"{value:.2f}×" if pd.notna(value) else ""


def protocol(cell: dict) -> dict[str, object]:
    """The fields of a record's ``cell`` that make its protocol (:data:`PROTOCOL`), flattened:
    ``{"budget.epochs": 1, "task.train_split": "train[:2000]", ...}``."""
    flat: dict[str, object] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        else:
            flat[prefix] = value

    for part in PROTOCOL:
        walk(part, cell.get(part))
    return flat


def protocol_differences(cell_a: dict, cell_b: dict) -> list[str]:
    """``["budget.epochs: 1 in A, 2 in B", ...]``: where the two cells' protocols differ."""
    a, b = protocol(cell_a), protocol(cell_b)
    return [f"{key}: {a.get(key)!r} in A, {b.get(key)!r} in B" for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key)]  # fmt: skip


def _cells(folder: Path) -> dict[str, dict]:
    return {r["id"]: dict(r["cell"]) for r in records.read_records(folder, on_bad="skip") if "cell" in r}


def check_protocols(pairs: pd.DataFrame, cells_a: dict, cells_b: dict, force: bool) -> pd.DataFrame:
    """``pairs`` with a ``protocol`` column naming what differs; without ``force`` any difference is refused.

    Raises:
        BenchError: a pair of cells from different protocols, naming the first such cell and fields.
    """
    notes = [protocol_differences(cells_a.get(x, {}), cells_b.get(y, {}))
             for x, y in zip(pairs.get("cell_id_a", []), pairs.get("cell_id_b", []), strict=True)]  # fmt: skip
    differing = [(row, note) for row, note in zip(pairs.itertuples(), notes, strict=True) if note]
    if differing and not force:
        row, note = differing[0]
        where = f"{row.method}/{row.task}@{row.target_sparsity:g}#{row.seed}"
        raise BenchError(
            f"{len(differing)} of {len(pairs)} cell pairs were run under different protocols, e.g. {where}: "
            f"{'; '.join(note[:3])}; their difference would not measure the method. Compare folders of one "
            "protocol, or pass --force to compare anyway (each such row then says what differs)"
        )
    return pairs.assign(protocol=["; ".join(n) for n in notes]) if len(pairs) else pairs.assign(protocol=[])


def compare_folders(folder_a: Path, folder_b: Path, force: bool = False) -> str:
    """Load, pair and render two results folders (see :func:`compare`), refusing pairs of different protocols
    unless ``force`` (:func:`check_protocols`).

    Raises:
        BenchError: a folder without results, or pairs of different protocols without ``force``.
    """
    from bench.results.significance import load_arrays

    a, b = load_folder(folder_a), load_folder(folder_b)
    pairs = compare(a, b, load_arrays(folder_a, a), load_arrays(folder_b, b))
    pairs = check_protocols(pairs, _cells(folder_a), _cells(folder_b), force)
    keys = set(map(tuple, pairs[PAIR_KEY].to_numpy().tolist()))
    only_a = sum(tuple(k) not in keys for k in a[PAIR_KEY].to_numpy().tolist())
    only_b = sum(tuple(k) not in keys for k in b[PAIR_KEY].to_numpy().tolist())
    return render(pairs, only_a, only_b, (str(folder_a), str(folder_b)))
