"""The cell record, declared once: :class:`CellRecord`, its status vocabulary and what readers rely on per field.

A record is what one cell leaves in ``DIR/cells/<cell id>.json`` and in the cell queue (:mod:`bench.run.queue`, whose
terminal states are the same words: :data:`STATUSES`). Each field below carries its kind (for the checks of
:func:`record_problem`), whether it is required, and whether it belongs to finished records only. The JSON keys
are the field names; a field that was never set is left out of the JSON, as records have always been written.

Writing is strict: ``CellRecord(id=..., status=..., **fields)`` refuses a key that is not declared here
(``TypeError``). Reading is tolerant: :meth:`CellRecord.from_dict` keeps keys it does not know in ``extra`` (a
newer or foreign writer), so a record read and written back is unchanged. Checks that name the bad field live in
:func:`record_problem`; :func:`bench.results.records.load_record_file` runs them.

For readers still written against dicts, a ``CellRecord`` is also a read-only mapping of its JSON keys
(``rec["metrics"]``, ``rec.get("search")``); new code reads attributes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

FINISHED = "finished"
FAILED = "failed"
DIVERGED = "diverged"  # the training loss became NaN or infinite; no metric is recorded
STATUSES = (FINISHED, FAILED, DIVERGED)
SCHEMA = 1  # the record layout these fields describe; records do not store it (old ones have the same keys)


# ---- value kinds ----------------------------------------------------------------------------------------------
class Kind:
    """A value kind of the record schema, with the words a message uses for it."""

    def __init__(self, words: str, test: Callable[[Any], bool]):
        self.words, self.test = words, test


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


NUMBER = Kind("a number", _is_real)  # NaN allowed: a degenerate interval is NaN
FINITE = Kind("a finite number", lambda v: _is_real(v) and math.isfinite(v))
INTEGER = Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
TEXT = Kind("a string", lambda v: isinstance(v, str))
FLAG = Kind("true or false", lambda v: isinstance(v, bool))
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
ANY = Kind("anything", lambda v: True)


class Each:
    """Every value of a JSON object has ``kind`` (its keys are names: metrics, batch sizes ...)."""

    def __init__(self, kind: Any):
        self.kind = kind


class Required:
    """A sub-field that must be present."""

    def __init__(self, kind: Any):
        self.kind = kind


def sub(**spec: Any) -> dict[str, tuple[Any, bool]]:
    """An object kind: ``{name: (kind, required)}`` from ``name=kind`` (optional) or ``name=Required(kind)``; a kind
    that is a tuple is "any of" (None in it allows null)."""
    return {k: (v.kind, True) if isinstance(v, Required) else (v, False) for k, v in spec.items()}


INTERVAL = sub(low=(NUMBER, None), high=(NUMBER, None))
CELL_KEYS = {"model": str, "method": str, "task": dict, "budget": dict, "sparsity": (int, float), "seed": int}
CELL = sub(task=Required(sub(name=Required(TEXT))), distillation=(OBJECT, None))  # CELL_KEYS checked first
VERDICTS = sub(
    chance=(FLAG, None), constant_predictions=(FLAG, None), projection=(FLAG, None), short_schedule=(FLAG, None),
    reached_fraction=(NUMBER, None), reached_sparsity=(NUMBER, None), target_sparsity=(NUMBER, None),
    baseline_bound=(NUMBER, None), ramp_steps=(NUMBER, None), min_ramp_steps=(NUMBER, None),
)  # fmt: skip
SPARSITY = sub(encoder_sparsity=Required(FINITE), remaining_params=Required(FINITE), total_params=Required(FINITE))
SEARCH = (sub(n_trials=INTEGER, best_params=(OBJECT, None)), None)
EXPORT = (sub(sparse_bytes=NUMBER, file_ratio=(NUMBER, None),
              compaction=(sub(structured_fraction=(NUMBER, None)), None)), None)  # fmt: skip
BASELINE = (sub(description=(TEXT, None), metrics=Each(NUMBER), intervals=(Each(INTERVAL), None)), None)


class _Absent:
    """The default of a field that was not set: it is left out of the JSON (None is written as null)."""

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Any = _Absent()


def _field(kind: Any = ANY, required: bool = False, finished: bool = False) -> Any:
    """A record field: its ``kind``, whether it must be present (for finished records only, with ``finished``)."""
    return field(default=ABSENT, metadata={"kind": kind, "required": required, "finished": finished})


@dataclass(eq=False, repr=False)
class CellRecord(Mapping):
    """One cell's record; every JSON key of a record is a field here (types are of the JSON values)."""

    # every status
    id: str = _field(TEXT, required=True)  # the cell id (sha256 of the cell), also the file name
    status: str = _field(TEXT, required=True)  # one of STATUSES
    cell: dict[str, Any] = _field(CELL, required=True)  # bench.config.cell.Cell.to_dict()
    git_commit: str | None = _field((TEXT, None))
    mlflow_run_id: str | None = _field((TEXT, None))
    worker: str | None = _field((TEXT, None))  # the queue worker (host:pid:random) that ran it
    preset: str | None = _field((TEXT, None))  # the matrix preset that set its budget and splits (not in the id)
    wall_seconds: float = _field(NUMBER)  # search and final run, seconds
    error: str | None = _field((TEXT, None))  # failed and diverged cells
    traceback: str | None = _field((TEXT, None))  # failed cells
    diverged_step: int | None = _field((INTEGER, None))  # diverged cells: the optimizer step of the bad loss
    # finished cells (bench.run.execute.train_and_evaluate)
    primary_metric: str = _field(TEXT, required=True, finished=True)
    metrics: dict[str, float] = _field(Each(FINITE), required=True, finished=True)  # task units (% for accuracy)
    sparsity: dict[str, float] = _field(SPARSITY, required=True, finished=True)  # bench.core.sparsity.measure_sparsity
    greater_is_better: bool = _field(FLAG, finished=True)
    method_info: dict[str, Any] = _field(sub(sparsity_before_projection=(NUMBER, None)), finished=True)
    train_seconds: float = _field(finished=True)
    train_examples_per_s: float | None = _field(finished=True)
    train_steps: int = _field(finished=True)
    train_loss: float = _field(finished=True)  # the Trainer's average, regularizers included
    train_features: int = _field(finished=True)
    history: list[dict[str, Any]] = _field(finished=True)  # the Trainer's loss log lines
    export: dict[str, Any] | None = _field(EXPORT, finished=True)  # bench.deploy.export.size_report
    speed: dict[str, Any] | None = _field((sub(speed_up=Each(Each((NUMBER, None)))), None), finished=True)
    metric_intervals: dict[str, dict[str, float]] | None = _field((Each(INTERVAL), None), finished=True)
    baseline: dict[str, Any] | None = _field(BASELINE, finished=True)  # the task's trivial baseline
    verdicts: dict[str, Any] | None = _field((VERDICTS, None), finished=True)  # bench.results.verdicts.judge
    schedule: dict[str, Any] | None = _field(finished=True)  # the pruning schedule in steps
    search: dict[str, Any] | None = _field(SEARCH, finished=True)  # cells with an HP search: bench.run.search.summary
    final_budget: dict[str, Any] = _field(finished=True)  # ... and the final run's budget and hyperparameters
    final_hparams: dict[str, Any] = _field(finished=True)
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer or foreign writer added; kept as they are

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellRecord:
        """The record of a JSON object (unchecked: see :func:`record_problem`); unknown keys go to ``extra``."""
        known = {k: v for k, v in data.items() if k in FIELDS}
        return cls(**known, extra={k: v for k, v in data.items() if k not in FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: every field that was set (None included) and the ``extra`` keys."""
        out = {name: getattr(self, name) for name in FIELDS if getattr(self, name) is not ABSENT}
        return {**out, **self.extra}

    @property
    def finished(self) -> bool:
        return self.status == FINISHED

    # a read-only mapping of the JSON keys, for readers written against dicts
    def __getitem__(self, key: str) -> Any:
        if key in FIELDS and getattr(self, key) is not ABSENT:
            return getattr(self, key)
        if key in self.extra:
            return self.extra[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __repr__(self) -> str:
        return f"CellRecord(id={str(self.id)[:12]!r}, status={self.status!r})"


FIELDS = {f.name: f for f in fields(CellRecord) if f.name != "extra"}
REQUIRED_KEYS = tuple(n for n, f in FIELDS.items() if f.metadata["required"] and not f.metadata["finished"])


def schema(status: str) -> dict[str, tuple[Any, bool]]:
    """The object kind a record of ``status`` must have (see :func:`sub`)."""
    return {n: (f.metadata["kind"], f.metadata["required"]) for n, f in FIELDS.items()
            if status == FINISHED or not f.metadata["finished"]}  # fmt: skip


def _shown(value: Any) -> str:
    text = repr(value)
    return (text[:57] + "...") if len(text) > 60 else text


def _wrong(value: Any, words: str, where: str) -> str:
    return f"field '{where}' must be {words}, got {_shown(value)} ({type(value).__name__})"


def problem(value: Any, kind: Any, where: str) -> str | None:
    """What is wrong with ``value`` at field ``where`` for ``kind``, or None."""
    if isinstance(kind, tuple):  # any of
        if value is None and None in kind:
            return None
        if any(problem(value, k, where) is None for k in kind if k is not None):
            return None
        words = [k.words if isinstance(k, Kind) else "an object" for k in kind if k is not None]
        return _wrong(value, " or ".join(words + (["null"] if None in kind else [])), where)
    if isinstance(kind, Kind):
        return None if kind.test(value) else _wrong(value, kind.words, where)
    if not isinstance(value, dict):
        return _wrong(value, "an object", where)
    if isinstance(kind, Each):
        return next(filter(None, (problem(v, kind.kind, f"{where}.{k}") for k, v in value.items())), None)
    for key, (kind_of_key, required) in kind.items():
        if key not in value:
            if required:
                return f"field '{where}.{key}' is missing"
            continue
        found = problem(value[key], kind_of_key, f"{where}.{key}")
        if found:
            return found
    return None


def record_problem(record: Mapping[str, Any]) -> str | None:
    """What a reader would trip on in ``record`` (its top-level keys already checked), or None: an unknown status,
    a field of the wrong type, a finished record without its metrics, sparsity or primary metric, a metric that is
    not a finite number. The message names the field (``field 'metrics.accuracy' must be a finite number, ...``).
    """
    if record["status"] not in STATUSES:
        return f"field 'status' is {record['status']!r}; expected {', '.join(STATUSES)}"
    found = problem(dict(record), schema(record["status"]), "record")
    if found:
        return found.replace("'record.", "'")
    if record["status"] == FINISHED and record["primary_metric"] not in record["metrics"]:
        return f"field 'metrics' lacks the primary metric {record['primary_metric']!r}"
    return None
