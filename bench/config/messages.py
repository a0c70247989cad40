"""pydantic's validation errors as the one-line messages of ``bench``: the value, what is valid, and where it came
from (the flag, or the config file and its line).

pydantic reports every bad value as ``{type, loc, input, ctx}``; its own text (``Input should be a valid number``)
neither names the bounds nor fits on the line that ``bench: error:`` prints, so each error type is phrased here,
with the bounds read from the field's declaration (``Field(gt=0, le=1000)`` → ``expected a number > 0 and <= 1000``).
A :class:`FieldError` raised inside a validator keeps its own text and points deeper (``method_hparams.movement``).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import annotated_types as at
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from bench.config.types import FieldError, describe, label

TYPE_ERRORS = {"int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
               "float_type": "a number", "float_parsing": "a number", "finite_number": "a number",
               "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a non-empty string",
               "dict_type": "a mapping", "model_type": "a mapping", "list_type": "a list"}  # fmt: skip
ITEM_KINDS = {"an integer": "an integer", "a number": "a float", "a non-empty string": "a string"}
BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def unwrap(annotation: Any) -> Any:
    """The type under ``Annotated[...]`` and ``X | None``: ``Number | None`` → ``float``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _walk(root: type[BaseModel] | None, loc: tuple) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """``(model, field)`` at ``loc`` below ``root``, through sub-models and dict values: the field ``loc`` names,
    or (None for the field) the model whose fields sit at ``loc``; ``(None, None)`` for a list item or a dict key."""
    model, declared = root, None
    for key in loc:
        if declared is not None:  # the previous key named a field: go into its sub-model or its dict values
            kind = unwrap(declared.annotation)
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                model, declared = kind, None
            elif typing.get_origin(kind) is dict and isinstance(key, str) and key != "[key]":
                value = unwrap(typing.get_args(kind)[1])
                model, declared = (value if isinstance(value, type) and issubclass(value, BaseModel) else None), None
                continue
            else:
                return None, None
        if model is None or not isinstance(key, str) or key not in model.model_fields:
            return None, None
        declared = model.model_fields[key]
    return model, declared


def field_at(root: type[BaseModel] | None, loc: tuple) -> FieldInfo | None:
    """The declaration of the value at ``loc`` below model ``root``; None for a list item, a dict key or a place no
    field declares."""
    return _walk(root, loc)[1]


def model_at(root: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The (sub-)model whose fields sit at ``loc`` (``()`` is ``root`` itself), or None."""
    model, declared = _walk(root, loc)
    if declared is None:
        return model
    kind = unwrap(declared.annotation)
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def expects(declared: FieldInfo | None, error_type: str) -> str:
    """What the field takes, as a phrase: its ``json_schema_extra["expects"]``, else from its type."""
    extra = declared.json_schema_extra if declared is not None and isinstance(declared.json_schema_extra, dict) else {}
    if "expects" in extra:
        return str(extra["expects"])
    kind = unwrap(declared.annotation) if declared is not None else None
    if kind is bool:
        return "true or false"
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind in (str, Path):
        return "a non-empty string"
    if typing.get_origin(kind) is dict or (isinstance(kind, type) and issubclass(kind, BaseModel)):
        return "a mapping"
    return TYPE_ERRORS.get(error_type, "a valid value")


def bounds(declared: FieldInfo | None) -> str:
    """`` > 0 and <= 1000`` from the field's ``gt``/``ge``/``lt``/``le``; empty without bounds."""
    low = high = ""
    for item in declared.metadata if declared is not None else []:
        if isinstance(item, at.Gt):
            low = f" > {plain(item.gt)}"
        elif isinstance(item, at.Ge):
            low = f" >= {plain(item.ge)}"
        elif isinstance(item, at.Lt):
            high = f" < {plain(item.lt)}"
        elif isinstance(item, at.Le):
            high = f" <= {plain(item.le)}"
    return f"{low} and{high}" if low and high else low or high


def plain(bound: float) -> str:
    """A bound as people write it: ``2592000``, not ``2.592e+06``; ``1e-05`` stays."""
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e15 else f"{bound:g}"


def problem(error: dict[str, Any], root: type[BaseModel] | None) -> tuple[tuple, str]:
    """``(loc, one-line problem)`` of one pydantic error of a value checked against ``root``."""
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    raised = (error.get("ctx") or {}).get("error")
    if isinstance(raised, FieldError):
        return loc + raised.keys, raised.problem
    if isinstance(raised, Exception):
        return loc, str(raised).splitlines()[0] if str(raised) else type(raised).__name__
    if kind == "extra_forbidden":
        from bench.core.registry import unknown_name_message

        model = model_at(root, loc[:-1])
        valid = list(model.model_fields) if model is not None else []
        return loc, unknown_name_message(getattr(model, "what", "key"), str(loc[-1]), valid)
    if kind == "missing":
        return loc, "needs a value"
    declared = field_at(root, loc)
    if loc and isinstance(loc[-1], int) and declared is None:  # a list item
        return loc, f"{value!r} is not {ITEM_KINDS.get(TYPE_ERRORS.get(kind, ''), 'valid')}"
    phrase = f"{expects(declared, kind)}{bounds(declared)}"
    if kind in BOUND_ERRORS:
        return loc, f"expected {phrase}, got {value!r}"
    if kind in TYPE_ERRORS:
        return loc, f"expected {phrase}, got {describe(value)}"
    return loc, f"{error['msg'].splitlines()[0]}, got {describe(value)}"


def validate_part(model: type[BaseModel], data: Any, keys: tuple = (), inside: bool = True) -> BaseModel:
    """``model`` validated from ``data`` inside another validator: a bad value raises a :class:`FieldError` at
    ``keys`` + its place in ``data`` (at ``keys`` alone when not ``inside``: ``data`` only wraps the value checked),
    which the outer validation reports like its own.

    Raises:
        FieldError: the first bad value, in the one-line phrasing of :func:`problem`.
    """
    try:
        return model.model_validate(data)
    except ValidationError as err:
        loc, text = problem(err.errors()[0], model)
        raise FieldError(keys + loc if inside else keys, text) from None


@dataclass
class Sources:
    """Where the values of a validated mapping came from, to name them in messages.

    Attributes:
        flags: ``{key path: flag}`` of values given on the command line, e.g. ``{("budget", "epochs"): "--epochs"}``.
        config: the config file the other values came from, if any.
        lines: ``{key path: line}`` of every key and list item of that file.
        replaced: ``{key path: value}`` of the file's values that a flag replaced (still checked: a bad file is
            refused whatever the flags say).
    """

    flags: dict[tuple, str] = field(default_factory=dict)
    config: Path | None = None
    lines: dict[tuple, int] = field(default_factory=dict)
    replaced: dict[tuple, Any] = field(default_factory=dict)

    def where(self, loc: tuple) -> tuple[str | None, int | None]:
        """``(flag, None)`` when ``loc`` or a key above it came from a flag, else ``(None, line in the file)``."""
        keys = tuple(k for k in loc if k != "[key]")
        for end in range(len(keys), 0, -1):
            if keys[:end] in self.flags:
                return self.flags[keys[:end]], None
        for end in range(len(keys), 0, -1):
            if keys[:end] in self.lines:
                return None, self.lines[keys[:end]]
        return None, None

    def message(self, err: ValidationError, root: type[BaseModel]) -> str:
        """The one line for ``err`` (the first of its errors in flag, then file, order)."""
        found = []
        for error in err.errors():
            loc, text = problem(error, root)
            flag, line = self.where(loc)
            if flag is not None:
                found.append(((0, 0), f"{flag}: {text}"))
            elif error["type"] == "extra_forbidden" and len(loc) == 1 and self.config is not None:
                from bench.core.registry import did_you_mean

                keys = list(root.model_fields)
                found.append(((1, line or 0), f"unknown key {loc[0]!r} in config {self.config} at line {line}."
                              f"{did_you_mean(loc[0], keys)} Valid keys: {', '.join(keys)}"))  # fmt: skip
            elif error["type"] == "missing" and len(loc) == 1:
                flag = flag_of(root, str(loc[0]))
                found.append(((2, 0), f"missing {flag} (or '{loc[0]}:' in the --config file)"))
            elif line is not None and self.config is not None:
                found.append(((1, line), f"bad value in config {self.config} at line {line}: {label(loc)}: {text}"))
            else:
                found.append(((1, 0), f"{label(loc)}: {text}" if label(loc) else text))
        return min(found, key=lambda item: item[0])[1]


def flag_of(root: type[BaseModel], name: str) -> str:
    """The command-line flag of field ``name`` (its ``json_schema_extra["flag"]``), else ``--name``."""
    declared = root.model_fields.get(name)
    extra = declared.json_schema_extra if declared is not None and isinstance(declared.json_schema_extra, dict) else {}
    return str(extra.get("flag") or f"--{name.replace('_', '-')}")
