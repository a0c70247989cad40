"""Published reference numbers: the papers' results as CSV rows, and the rows that match a leaderboard's cells.

The CSV files live in ``results/reference/`` of the repository (one file per paper; ``README.md`` there says where
each number was read). Every row is one published figure:

=============  =====================================================================================================
column         meaning
=============  =====================================================================================================
method         this project's method name (``dense``, ``magnitude``, ``l0``, ``movement``, ``soft_movement``, ...)
variant        the method's ``variant`` hyperparameter where the paper reports several (SMP: ``S``, ``L``), or empty
model          Hub id of the pretrained model, e.g. ``bert-base-uncased``
task           this project's task name (``mnli``, ``squad``)
metric         this project's metric name (``accuracy``, ``exact_match``, ``f1``) or one of
               :data:`REFERENCE_ONLY_METRICS` (MNLI mismatched: ``accuracy_mm``)
value          the published value, in percent (0-100)
remaining      fraction of the encoder's prunable weights remaining, in (0, 1]
sparsity       1 − ``remaining``
distill        ``true`` or ``false``: trained with knowledge distillation from a fine-tuned teacher
source         short citation with the arXiv id
table          where in the paper, e.g. ``Table 2``
note           caveats (optional; ``unconfirmed`` where a value could not be checked against the paper's text)
=============  =====================================================================================================

``variant`` and ``note`` may be left out of a file; every other column is required. The key of a row is
:data:`KEY`; a key may appear once across all files.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from bench.core.errors import BenchError

REQUIRED = ("method", "model", "task", "metric", "value", "remaining", "sparsity", "distill", "source", "table")
OPTIONAL = ("variant", "note")
COLUMNS = (*REQUIRED[:1], "variant", *REQUIRED[1:], "note")
KEY = ("method", "variant", "model", "task", "metric", "sparsity", "distill")

# Metrics the papers report that the benchmark's tasks do not measure; allowed in the CSVs beside each task's own.
REFERENCE_ONLY_METRICS: dict[str, tuple[str, ...]] = {"mnli": ("accuracy_mm",)}

# Two sparsities closer than this (absolute, as a fraction) are the same level: the benchmark's tolerance.
SPARSITY_TOLERANCE = 0.005

# The repository's folder; found relative to this file, so it exists in a checkout or an editable install only.
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "results" / "reference"

# Hub ids that name the same model: the namespaced id the Hub moved a legacy id to → the legacy id.
MODEL_ALIASES = {
    "google-bert/bert-base-uncased": "bert-base-uncased",
    "google-bert/bert-base-cased": "bert-base-cased",
    "google-bert/bert-large-uncased": "bert-large-uncased",
    "FacebookAI/roberta-base": "roberta-base",
    "distilbert/distilbert-base-uncased": "distilbert-base-uncased",
}

_SPARSITY_CHECK = 1e-6  # |sparsity − (1 − remaining)| allowed in a row (rounding of the printed decimals)
_BOOLEANS = {"true": True, "false": False}


def load(folder: str | Path | None = None) -> pd.DataFrame:
    """All reference rows of the ``*.csv`` files in ``folder``, validated.

    Args:
        folder: the folder of CSV files. ``None`` means :data:`DEFAULT_FOLDER`, ``results/reference`` of the
            repository this module belongs to (a checkout or an editable install); an installed package outside
            the repository has no such folder and must be given one.

    Returns:
        One row per CSV row, with the columns :data:`COLUMNS` plus ``file`` (the CSV's name), ``line`` (its line
        in that file) and ``label`` (``method``, ``[variant]`` when set, `` +distill`` when distilled: the
        leaderboard's row naming). ``value`` is in percent; ``remaining`` and ``sparsity`` are fractions;
        ``distill`` is a bool; ``variant`` and ``note`` are ``""`` when empty. Sorted by task, sparsity, method.

    Raises:
        BenchError: the folder does not exist or holds no CSV; a file lacks a required column or has an unknown
            one; a row (named by file and line) has a wrong number of fields, an empty required field, a value
            outside [0, 100], ``remaining`` outside (0, 1], ``sparsity`` ≠ 1 − ``remaining``, a ``distill`` other
            than true/false; or two rows share a :data:`KEY`.
    """
    folder = Path(DEFAULT_FOLDER if folder is None else folder)
    if not folder.is_dir():
        raise BenchError(
            f"reference folder {str(folder)!r} does not exist; pass the folder of reference CSVs "
            f"(results/reference in the prune-bench repository)"
        )
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise BenchError(f"no reference CSV (*.csv) in {str(folder)!r}")
    rows = [row for path in files for row in _read(path)]
    _check_unique(rows)
    df = pd.DataFrame(rows, columns=[*COLUMNS, "file", "line"])
    df["label"] = [_label(r.method, r.variant, r.distill) for r in df.itertuples()]
    df = df.astype({"value": float, "remaining": float, "sparsity": float, "distill": bool, "line": int})
    return df.sort_values(["task", "sparsity", "method", "variant", "distill", "metric"], kind="stable").reset_index(
        drop=True
    )


def matching(
    reference: pd.DataFrame,
    cells: pd.DataFrame,
    model: str | None = None,
    tolerance: float = SPARSITY_TOLERANCE,
) -> pd.DataFrame:
    """The reference rows whose model, task and sparsity match a cell of ``cells``.

    Method and metric are not matched: a leaderboard shows every published figure at the levels it measured.

    Args:
        reference: rows from :func:`load`.
        cells: a frame of cells with ``task``, ``target_sparsity`` (fraction; as produced by
            :func:`bench.results.leaderboard.collect`) or ``sparsity``, and ``model`` (Hub id), as ``collect()`` gives.
        model: the Hub id of the cells whose model is unknown: ``cells`` has no ``model`` column, or a cell's is
            empty (records written before cells carried their model). Cells with a model keep theirs.
        tolerance: largest |reference sparsity − cell target sparsity| that counts as the same level, as a
            fraction (default 0.005, the benchmark's 0.5 pp).

    Returns:
        The matching rows of ``reference`` (all its columns), plus ``target_sparsity``: the cell target sparsity
        each row matched (the nearest when several are within ``tolerance``). Model ids are compared after
        :func:`canonical_model`. Empty (same columns) when nothing matches or ``cells`` is empty.

    Raises:
        BenchError: ``cells`` lacks ``task`` or a sparsity column; a cell has no model and ``model`` is not
            given; ``reference`` lacks a column of :data:`KEY`; ``tolerance`` is negative.
    """
    if tolerance < 0:
        raise BenchError(f"tolerance must be >= 0, got {tolerance!r}")
    missing = [c for c in KEY if c not in reference.columns]
    if missing:
        raise BenchError(
            f"reference frame lacks column(s) {', '.join(missing)}; build it with bench.results.reference.load()"
        )
    sparsity_col = next((c for c in ("target_sparsity", "sparsity") if c in cells.columns), None)
    if "task" not in cells.columns or sparsity_col is None:
        raise BenchError(
            f"cells frame needs 'task' and 'target_sparsity' (or 'sparsity') columns; it has {list(cells.columns)}"
        )
    column = cells["model"] if "model" in cells.columns else pd.Series(None, index=cells.index, dtype=object)
    unknown = column.isna() | (column.astype(str).str.strip() == "")
    if unknown.any() and model is None:
        raise BenchError(
            f"{int(unknown.sum())} cell(s) have no model (no 'model' column, or an empty one): pass model=<Hub id> "
            "of those cells"
        )
    models = column.astype(object).where(~unknown, model).astype(str)
    levels = pd.DataFrame(
        {
            "_model": models.map(canonical_model).astype(str),
            "task": cells["task"].astype(str),
            "target_sparsity": cells[sparsity_col].astype(float),
        }
    ).drop_duplicates()
    if levels.empty:
        return _empty(reference)
    ref = reference.reset_index(drop=True).assign(_row=lambda d: range(len(d)))
    ref["_model"] = ref["model"].astype(str).map(canonical_model)
    pairs = ref.merge(levels, on=["_model", "task"], how="inner")
    pairs = pairs[(pairs["sparsity"].astype(float) - pairs["target_sparsity"]).abs() <= tolerance + 1e-12]
    if pairs.empty:
        return _empty(reference)
    distance = (pairs["sparsity"].astype(float) - pairs["target_sparsity"]).abs()
    nearest = pairs.loc[distance.groupby(pairs["_row"]).idxmin()]
    return nearest.sort_values("_row").drop(columns=["_row", "_model"]).reset_index(drop=True)


def _empty(reference: pd.DataFrame) -> pd.DataFrame:
    return reference.iloc[0:0].assign(target_sparsity=pd.Series(dtype=float)).reset_index(drop=True)


def canonical_model(model_id: str) -> str:
    """``model_id`` with Hub aliases (:data:`MODEL_ALIASES`) resolved to the legacy id the papers use."""
    return MODEL_ALIASES.get(model_id, model_id)


def _label(method: str, variant: str, distill: bool) -> str:
    return method + (f"[{variant}]" if variant else "") + (" +distill" if distill else "")


def _read(path: Path) -> list[dict[str, object]]:
    """Rows of one CSV, converted and checked; errors name the file and line."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise BenchError(f"{path.name}: empty file; expected a header with {', '.join(REQUIRED)}")
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED if c not in header]
        unknown = [c for c in header if c not in COLUMNS]
        if missing or unknown:
            parts = [f"missing column(s) {', '.join(missing)}" if missing else "",
                     f"unknown column(s) {', '.join(unknown)}" if unknown else ""]  # fmt: skip
            raise BenchError(f"{path.name}: {'; '.join(p for p in parts if p)}; columns are {', '.join(COLUMNS)}")
        rows = []
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise BenchError(f"{path.name} line {line}: {len(fields)} fields, the header has {len(header)}")
            raw = {k: v.strip() for k, v in zip(header, fields, strict=True)}
            rows.append({**_convert(raw, f"{path.name} line {line}"), "file": path.name, "line": line})
    return rows


def _convert(raw: dict[str, str], where: str) -> dict[str, object]:
    empty = [c for c in REQUIRED if not raw.get(c)]
    if empty:
        raise BenchError(f"{where}: empty {', '.join(empty)}")
    value = _number(raw, "value", where)
    remaining = _number(raw, "remaining", where)
    sparsity = _number(raw, "sparsity", where)
    if not 0.0 <= value <= 100.0:
        raise BenchError(f"{where}: value {raw['value']} is not a percentage in [0, 100]")
    if not 0.0 < remaining <= 1.0:
        raise BenchError(f"{where}: remaining {raw['remaining']} is not a fraction in (0, 1]")
    if abs(sparsity - (1.0 - remaining)) > _SPARSITY_CHECK:
        raise BenchError(f"{where}: sparsity {raw['sparsity']} is not 1 - remaining ({1.0 - remaining:.4g})")
    distill = _BOOLEANS.get(raw["distill"].lower())
    if distill is None:
        raise BenchError(f"{where}: distill must be true or false, got {raw['distill']!r}")
    return {
        "method": raw["method"], "variant": raw.get("variant", ""), "model": raw["model"], "task": raw["task"],
        "metric": raw["metric"], "value": value, "remaining": remaining, "sparsity": sparsity,
        "distill": distill, "source": raw["source"], "table": raw["table"], "note": raw.get("note", ""),
    }  # fmt: skip


def _number(raw: dict[str, str], column: str, where: str) -> float:
    try:
        number = float(raw[column])
    except ValueError:
        raise BenchError(f"{where}: {column} {raw[column]!r} is not a number") from None
    if not math.isfinite(number):
        raise BenchError(f"{where}: {column} {raw[column]!r} is not finite")
    return number


def _check_unique(rows: list[dict[str, object]]) -> None:
    seen: dict[tuple[object, ...], str] = {}
    for row in rows:
        key = tuple(round(row[c], 6) if c == "sparsity" else row[c] for c in KEY)  # type: ignore[call-overload]
        where = f"{row['file']} line {row['line']}"
        if key in seen:
            raise BenchError(
                f"{where}: duplicate of {seen[key]} ({', '.join(f'{c}={v}' for c, v in zip(KEY, key, strict=True))})"
            )
        seen[key] = where
