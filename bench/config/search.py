"""The HP-search part of a matrix: which knobs a config may narrow or fix, the check of ``search_space``, and the
search spec that enters a cell id (:func:`search_spec`; the search itself is :mod:`bench.run.search`).

Knobs are the *shared* ones (Budget fields the presets search for every method: learning rate, warm-up fraction)
and every registered method's hyperparameters. A knob is fixed (``warmup_ratio: 0.1``) or narrowed
(``learning_rate: {low: 1.0e-5, high: 1.0e-4, log: true}``, each end optional).
"""

from __future__ import annotations

from typing import Any

from bench.config.messages import validate_part
from bench.config.parts import BudgetOverrides, IntKnobRange, KnobRange
from bench.config.types import FieldError, describe
from bench.core.errors import BenchError

SAMPLER, PRUNER = "TPESampler", "MedianPruner"


def shared_knobs() -> set[str]:
    """Names the presets' searches vary for every method (Budget fields)."""
    from bench.config.presets import PRESETS

    return {name for preset in PRESETS.values() for name in preset["search"]["space"]}


def method_knobs() -> dict[str, Any]:
    """``{hyperparameter: the default of the first method that has it}`` over every registered method."""
    from bench.core import registry

    knobs: dict[str, Any] = {}
    for name in registry.methods.names():
        try:
            defaults = registry.methods.get(name).defaults
        except Exception:  # noqa: BLE001 - a broken plugin must not block the check
            continue
        for knob, default in defaults.items():
            knobs.setdefault(knob, default)
    return knobs


def check_search_space(space: dict[str, Any]) -> dict[str, Any]:
    """``space`` (the matrix's ``search_space``) if every knob is known and every value fits it, kept as given (it
    enters cell ids). A shared knob's fixed value and range ends keep the knob's Budget bounds; a method knob's fixed
    value has the type of its default, and an integer knob's range has integer ends.

    Raises:
        FieldError: an unknown knob ("did you mean"), a bad value or range, at its place (``learning_rate.high``).
    """
    from bench.core.method import hparam_problem
    from bench.core.registry import unknown_name_message

    shared, own = shared_knobs(), method_knobs()
    for name, spec in space.items():
        if name not in shared and name not in own:
            raise FieldError((name,), unknown_name_message("search knob", name, sorted(shared | set(own))))
        if isinstance(spec, dict):
            integer = name in own and isinstance(own[name], int) and not isinstance(own[name], bool)
            validate_part(IntKnobRange if integer else KnobRange, spec, (name,))
            if name in shared:  # each end within the knob's own bounds
                for end in ("low", "high"):
                    if end in spec:
                        validate_part(BudgetOverrides, {name: spec[end]}, (name, end), inside=False)
        elif name in shared:
            validate_part(BudgetOverrides, {name: spec}, (name,), inside=False)
        else:
            problem = hparam_problem(own[name], spec)
            if problem:
                raise FieldError((name,), f"a fixed value of {name!r} must be {problem}, got {describe(spec)}")
    return space


def check_search_ranges(shared: dict[str, Any], narrowing: dict[str, Any]) -> None:
    """A narrowed shared knob (a partial ``{low, high}`` merged with the preset's range) still has low <= high.

    Raises:
        FieldError: at ``(name,)``: the merged range is empty, or a log range reaches 0.
    """
    for name, spec in narrowing.items():
        if name in shared and isinstance(spec, dict):
            merged = {**shared[name], **spec}
            if merged["low"] > merged["high"]:
                raise FieldError((name,), f"low {merged['low']!r} exceeds high {merged['high']!r} (the preset's "
                                 f"range is {shared[name]['low']!r} to {shared[name]['high']!r})")  # fmt: skip
            if merged.get("log") and merged["low"] <= 0:
                raise FieldError((name,), f"a log range needs low > 0, got {merged['low']!r}")


def search_spec(trials: int, shared: dict[str, Any], narrowing: dict[str, Any], method_cls: type) -> dict | None:
    """The part of a cell id that says how it is tuned, or None without search.

    Args:
        trials: trials per study; 0 turns the search off.
        shared: the preset's shared knobs, ``{name: {"low", "high", "log"}}`` (Budget fields).
        narrowing: the matrix's ``search_space``: ``{name: value}`` fixes a knob, ``{name: {"low", "high"}}``
            narrows it; names are shared knobs or any method's hyperparameters.
        method_cls: the cell's method class; narrowing of other methods' knobs is left out of this cell's id.

    Raises:
        BenchError: a narrowing key that is neither a shared knob nor a hyperparameter of any method.
    """
    if trials == 0:
        return None
    _check_names(narrowing, shared)
    space = {name: _narrow(spec, narrowing.get(name)) for name, spec in shared.items()}
    own = {k: v for k, v in narrowing.items() if k in method_cls.defaults}
    return {"trials": trials, "space": space, "method_space": own, "sampler": SAMPLER, "pruner": PRUNER}


def _check_names(narrowing: dict[str, Any], shared: dict[str, Any]) -> None:
    known = set(shared) | set(method_knobs())
    unknown = sorted(set(narrowing) - known)
    if unknown:
        raise BenchError(f"unknown search knob(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")


def _narrow(spec: dict[str, Any], narrowing: Any) -> Any:
    if narrowing is None:
        return dict(spec)
    if isinstance(narrowing, dict):
        unknown = set(narrowing) - {"low", "high", "log"}
        if unknown:
            raise BenchError(f"a knob range takes low, high, log; got {sorted(unknown)}")
        return {**spec, **narrowing}
    return narrowing  # a fixed value
