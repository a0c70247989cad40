"""Cell records on disk: ``DIR/cells/<cell id>.json``, written atomically (temp file, then rename).

Every reader goes through :func:`load_record_file`, which checks each field a reader uses (its presence where
required, its type, finite metrics), so a hand-edited or foreign record is named with its bad field instead of
failing somewhere downstream. :func:`read_records` skips such records with a warning by default (one bad record
must not take down ``leaderboard``, ``plot``, ``report`` or ``compare``); ``bench run`` refuses a folder that holds
one (:mod:`bench.preflight`). ``bench forget`` (:mod:`bench.forget`) removes a cell so that it runs again.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.folder import ResultsFolder

FINISHED = "finished"
FAILED = "failed"
DIVERGED = "diverged"  # the training loss became NaN or infinite; no metric is recorded
STATUSES = (FINISHED, FAILED, DIVERGED)


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: 0o666 without the process umask's bits."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # no /proc (macOS): read it by setting it, and put it back at once
    os.umask(umask)
    return 0o666 & ~umask


def write_record(output: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (which has an ``id``) so that readers never see a half-written file. The file gets the
    mode the process umask gives any new file (a shared results folder stays readable to its group)."""
    path = ResultsFolder(output).record(record["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


REQUIRED_KEYS = ("id", "status", "cell")
CELL_KEYS = {"model": str, "method": str, "task": dict, "budget": dict, "sparsity": (int, float), "seed": int}


# ---- what readers rely on, per field ------------------------------------------------------------------------------
class _Kind:
    """A value kind of the record schema below, with the words a message uses for it."""

    def __init__(self, words: str, test: Callable[[Any], bool]):
        self.words, self.test = words, test


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


NUMBER = _Kind("a number", _is_real)  # NaN allowed: a degenerate interval is NaN
FINITE = _Kind("a finite number", lambda v: _is_real(v) and math.isfinite(v))
INTEGER = _Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
TEXT = _Kind("a string", lambda v: isinstance(v, str))
FLAG = _Kind("true or false", lambda v: isinstance(v, bool))
OBJECT = _Kind("an object", lambda v: isinstance(v, dict))


class _Each:
    """Every value of a JSON object has ``kind`` (its keys are names: metrics, batch sizes ...)."""

    def __init__(self, kind: Any):
        self.kind = kind


class _Required:
    """A field that must be present."""

    def __init__(self, kind: Any):
        self.kind = kind


def _fields(**spec: Any) -> dict[str, tuple[Any, bool]]:
    """``{name: (kind, required)}`` from ``name=kind`` (optional) or ``name=_Required(kind)``; a kind that is a tuple
    is "any of" (None in it allows null)."""
    return {k: (v.kind, True) if isinstance(v, _Required) else (v, False) for k, v in spec.items()}


INTERVAL = _fields(low=(NUMBER, None), high=(NUMBER, None))
VERDICTS = _fields(
    chance=(FLAG, None), constant_predictions=(FLAG, None), projection=(FLAG, None), short_schedule=(FLAG, None),
    reached_fraction=(NUMBER, None), reached_sparsity=(NUMBER, None), target_sparsity=(NUMBER, None),
    baseline_bound=(NUMBER, None), ramp_steps=(NUMBER, None), min_ramp_steps=(NUMBER, None),
)  # fmt: skip
ANY_STATUS = _fields(
    error=(TEXT, None), traceback=(TEXT, None), diverged_step=(INTEGER, None), wall_seconds=NUMBER,
    mlflow_run_id=(TEXT, None),
    cell=_Required(_fields(task=_Required(_fields(name=_Required(TEXT))), distillation=(OBJECT, None))),
)  # fmt: skip
FINISHED_FIELDS = _fields(
    primary_metric=_Required(TEXT),
    metrics=_Required(_Each(FINITE)),
    sparsity=_Required(_fields(encoder_sparsity=_Required(FINITE), remaining_params=_Required(FINITE),
                               total_params=_Required(FINITE))),
    greater_is_better=FLAG,
    method_info=_fields(sparsity_before_projection=(NUMBER, None)),
    search=(_fields(n_trials=INTEGER, best_params=(OBJECT, None)), None),
    export=(_fields(sparse_bytes=NUMBER, file_ratio=(NUMBER, None),
                    compaction=(_fields(structured_fraction=(NUMBER, None)), None)), None),
    speed=(_fields(speed_up=_Each(_Each((NUMBER, None)))), None),
    metric_intervals=(_Each(INTERVAL), None),
    baseline=(_fields(description=(TEXT, None), metrics=_Each(NUMBER), intervals=(_Each(INTERVAL), None)), None),
    verdicts=(VERDICTS, None),
)  # fmt: skip


def _shown(value: Any) -> str:
    text = repr(value)
    return (text[:57] + "...") if len(text) > 60 else text


def _problem(value: Any, kind: Any, where: str) -> str | None:
    """What is wrong with ``value`` at field ``where`` for ``kind``, or None."""
    if isinstance(kind, tuple):  # any of
        if value is None and None in kind:
            return None
        problems = [_problem(value, k, where) for k in kind if k is not None]
        if any(p is None for p in problems):
            return None
        words = " or ".join([_words(k) for k in kind if k is not None] + (["null"] if None in kind else []))
        return f"field '{where}' must be {words}, got {_shown(value)} ({type(value).__name__})"
    if isinstance(kind, _Kind):
        return None if kind.test(value) else f"field '{where}' must be {kind.words}, got {_shown(value)} " \
                                            f"({type(value).__name__})"  # fmt: skip
    if not isinstance(value, dict):
        return f"field '{where}' must be an object, got {_shown(value)} ({type(value).__name__})"
    if isinstance(kind, _Each):
        for key, item in value.items():
            problem = _problem(item, kind.kind, f"{where}.{key}")
            if problem:
                return problem
        return None
    for key, (sub, required) in kind.items():
        if key not in value:
            if required:
                return f"field '{where}.{key}' is missing"
            continue
        problem = _problem(value[key], sub, f"{where}.{key}")
        if problem:
            return problem
    return None


def _words(kind: Any) -> str:
    if isinstance(kind, _Kind):
        return kind.words
    return "an object"


def record_problem(record: dict[str, Any]) -> str | None:
    """What a reader would trip on in ``record`` (its top-level keys already checked), or None: an unknown status,
    a field of the wrong type, a finished record without its metrics, sparsity or primary metric, a metric that is
    not a finite number."""
    if record["status"] not in STATUSES:
        return f"field 'status' is {record['status']!r}; expected {', '.join(STATUSES)}"
    for fields in (ANY_STATUS, FINISHED_FIELDS) if record["status"] == FINISHED else (ANY_STATUS,):
        problem = _problem(record, fields, "record")
        if problem:
            return problem.replace("'record.", "'")
    if record["status"] == FINISHED and record["primary_metric"] not in record["metrics"]:
        return f"field 'metrics' lacks the primary metric {record['primary_metric']!r}"
    return None


def forget_hint(path: Path) -> str:
    """How to make a record's cell run again, for messages about that record."""
    output = Path(path).parent.parent
    return (f"remove its cell with 'bench forget {Path(path).stem[:12]} --results {output}' (its record, queue row, "
            "study, saved model, masks and predictions; the cell then runs again)")  # fmt: skip


class CorruptRecord(BenchError):
    """A record file a reader cannot use; ``path`` and ``problem`` (naming the field) are kept apart."""

    def __init__(self, path: Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"corrupt record {path}: {problem}. Fix or move the file away, {forget_hint(path)}, "
                         "or use a new --output")


def load_record_file(path: Path) -> dict[str, Any]:
    """The record in ``path``, checked for every field readers rely on.

    Raises:
        BenchError: unreadable file, bad JSON, not a JSON object, a missing or mistyped key (``id``, ``status``,
            ``cell`` with its ``model``, ``method``, ``task``, ``budget``, ``sparsity``, ``seed``), an id that is
            not the file's name, or a field of the wrong type (:func:`record_problem`). The message names the file
            and the field.
    """

    def corrupt(problem: str) -> CorruptRecord:
        return CorruptRecord(path, problem)

    try:
        record = json.loads(Path(path).read_text())
    except UnicodeDecodeError as err:
        raise corrupt(f"not text ({err.reason})") from err
    except json.JSONDecodeError as err:
        raise corrupt(f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from err
    except RecursionError as err:
        raise corrupt("nested too deeply") from err
    except OSError as err:
        raise BenchError(f"cannot read record {path}: {err.strerror or err}") from err
    if not isinstance(record, dict):
        raise corrupt(f"expected a JSON object, got {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise corrupt(f"missing key(s) {', '.join(missing)}")
    if not isinstance(record["id"], str) or not isinstance(record["status"], str):
        raise corrupt("'id' and 'status' must be strings")
    if not isinstance(record["cell"], dict):
        raise corrupt(f"'cell' must be an object, got {type(record['cell']).__name__}")
    for key, kind in CELL_KEYS.items():
        if key not in record["cell"]:
            raise corrupt(f"'cell' lacks {key!r}")
        if not isinstance(record["cell"][key], kind) or isinstance(record["cell"][key], bool):
            raise corrupt(f"'cell.{key}' has the wrong type ({type(record['cell'][key]).__name__})")
    if "name" not in record["cell"]["task"]:
        raise corrupt("'cell.task' lacks 'name'")
    if record["id"] != Path(path).stem:
        raise corrupt(f"its id {record['id'][:12]}... is not its file name")
    problem = record_problem(record)
    if problem:
        raise corrupt(problem)
    return record


def predictions_problem(output: Path, record: dict[str, Any]) -> str | None:
    """What is wrong with a finished record's saved predictions (``OUTPUT/predictions/<id>.npz``) as readers use
    them, or None (no file is fine: older records saved none)."""
    import zipfile

    import numpy as np

    if record["status"] != FINISHED:
        return None
    path = ResultsFolder(output).predictions(record["id"])
    if not path.exists():
        return None
    key = f"per_example/{record['primary_metric']}"
    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data.files:
                return None
            values = np.asarray(data[key], dtype=float)
    except (OSError, ValueError, EOFError, TypeError, KeyError, zipfile.BadZipFile) as err:
        return f"its predictions file {path} cannot be read ({type(err).__name__}: {err})"
    if values.ndim != 1:
        return f"its predictions file {path}: {key!r} has shape {values.shape}, expected one value per example"
    return None


def record_files(output: Path) -> list[Path]:
    """The record files of ``DIR/cells``, sorted by name; hidden files (a writer's temporary files) are skipped."""
    return [p for p in sorted(ResultsFolder(output).cells.glob("*.json")) if not p.name.startswith(".")]


def read_record(output: Path, cell_id: str) -> dict[str, Any] | None:
    """The record of ``cell_id``, or None when there is none.

    Raises:
        BenchError: the record file is corrupt (see :func:`load_record_file`); the message names it.
    """
    path = ResultsFolder(output).record(cell_id)
    return load_record_file(path) if path.exists() else None


OnBad = str | Callable[[Path, str], None]


def read_records(output: Path, on_bad: OnBad = "warn", skipped: list[tuple[Path, str]] | None = None
                 ) -> list[dict[str, Any]]:  # fmt: skip
    """Every record in ``DIR/cells``, sorted by file name (temporary files of a writer are skipped).

    A record that cannot be used (see :func:`load_record_file`: a corrupt or hand-edited file, a missing or
    mistyped field, a metric that is a string or NaN; or a predictions file that cannot be read) is handled by
    ``on_bad``: ``"warn"`` (default) leaves it out and prints ``bench: warning: skipped record FILE: PROBLEM`` for
    each and then how many were skipped, to stderr; ``"skip"`` leaves it out silently; ``"raise"`` raises; a
    callable gets ``(path, problem)`` for each and the record is left out. ``skipped``, when given, collects the
    ``(path, problem)`` pairs of the records left out.

    Raises:
        BenchError: with ``on_bad="raise"``, the first bad record; the message names the file and the field.
    """
    found, bad = [], []
    for path in record_files(output):
        try:
            record = load_record_file(path)
            problem = predictions_problem(output, record)
            if problem:
                raise CorruptRecord(path, problem)
        except BenchError as err:
            if on_bad == "raise":
                raise
            bad.append((path, getattr(err, "problem", str(err))))
            continue
        found.append(record)
    if skipped is not None:
        skipped.extend(bad)
    if bad and on_bad == "warn":
        for path, problem in bad:
            print(f"bench: warning: skipped record {path}: {problem}", file=sys.stderr)
        print(f"bench: warning: {len(bad)} record{'s' if len(bad) > 1 else ''} of {output} skipped (named above); fix "
              f"or move them, or remove their cells with bench forget ID --results {output}", file=sys.stderr)
    elif bad and callable(on_bad):
        for path, problem in bad:
            on_bad(path, problem)
    return found


def require_results(output: Path) -> None:
    """Raise BenchError unless ``output`` is a results folder (it has ``cells/``, made by ``bench run``)."""
    if not ResultsFolder(output).cells.is_dir():
        raise BenchError(f"no results in {output}: expected a folder with cells/ (made by bench run)")


def find_cell(records: list[dict], prefix: str) -> dict:
    """The record whose cell id starts with ``prefix``.

    Raises:
        BenchError: no cell or several cells match; the message lists some ids.
    """
    found = [r for r in records if r["id"].startswith(prefix)]
    if len(found) != 1:
        listed = ", ".join(r["id"][:12] for r in (found or records)[:8])
        what = "no cell" if not found else f"{len(found)} cells"
        raise BenchError(f"{what} with id starting {prefix!r}; ids: {listed or '(none)'}")
    return found[0]
