"""The value types of matrix options, as pydantic annotated types, and :class:`FieldError`.

Each type carries its whole check, so a field of :class:`bench.config.model.MatrixConfig` is declared once (type,
default, bounds, help) and can be checked alone (a ``bench worker`` flag). Bounds are given on the field with
``Field(gt=..., le=...)``; what pydantic cannot express is written here, each with the reason:

* :data:`Number` keeps an ``int`` an ``int``: pydantic's float type turns ``2`` into ``2.0``, and a value like a
  distillation temperature written ``2`` in a config enters cell ids as ``2`` (ids must not change).
* :func:`comma_list`: ``bench run --seeds 0,1`` and ``seeds: [0, 1]`` are the same field; pydantic has no comma-list
  type, and its lax number parsing would take ``true`` for 1 (a bool is never a seed or a sparsity here).
* names of methods, tasks and presets are checked against the plugin registry and the presets, with "did you mean".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WrapValidator

from bench.core.errors import BenchError

MAX_SEED = 2**32  # numpy's seed range, exclusive


class FieldError(BenchError, ValueError):
    """A bad value of one matrix field (a ``ValueError`` too, so pydantic reports it from inside a validator).

    Attributes:
        keys: where it sits below the value being checked, e.g. ``("movement", "mask_lr")`` inside
            ``method_hparams`` (list positions are ints); used to find its line in a config file.
        problem: what is wrong, naming the value and what is valid (one line).
    """

    def __init__(self, keys: tuple, problem: str):
        self.keys = tuple(keys)
        self.problem = problem
        super().__init__(f"{label(self.keys)}: {problem}" if label(self.keys) else problem)


def label(keys: tuple) -> str:
    """``budget.epochs`` for ``("budget", "epochs")``: the dotted key path, without list positions or pydantic's
    ``[key]`` marks."""
    return ".".join(str(k) for k in keys if isinstance(k, str) and k != "[key]")


def describe(value: Any) -> str:
    """``repr`` of a value with its type, shortened, for messages: ``'one' (str)``."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def checked(check):
    """``check`` as a pydantic validator: a :class:`BenchError` it raises (e.g. the registry's "did you mean")
    becomes a :class:`FieldError` that pydantic collects; pydantic lets other exception types escape."""

    def validator(value: Any) -> Any:
        try:
            return check(value)
        except FieldError:
            raise
        except BenchError as err:
            raise FieldError((), str(err)) from None

    return validator


def _keep_int(value: Any, handler) -> Any:
    out = handler(value)  # type and bounds
    return value if type(value) is int else out


# A finite real number (a bool is not one); an int stays an int.
Number = Annotated[float, Field(allow_inf_nan=False), WrapValidator(_keep_int)]


def _non_empty(value: str) -> str:
    if not value.strip():
        raise FieldError((), f"expected a non-empty string, got {describe(value)}")
    if "\x00" in value:
        raise FieldError((), f"contains a NUL character: {value!r}")
    return value


NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]


def _path(value: Any) -> Any:
    text = str(value) if isinstance(value, Path) else value
    if not isinstance(text, str):
        raise FieldError((), f"expected a non-empty string, got {describe(value)}")
    return Path(_non_empty(text))


# A folder path from a str or Path; an empty one is refused (it would silently mean the current folder).
FolderPath = Annotated[Path, BeforeValidator(_path)]


def comma_list(value: Any, kind: type) -> Any:
    """``"0.5,0.9"`` or ``[0.5, "0.9"]`` → ``[0.5, 0.9]``: a comma string is split, a single value becomes a list,
    strings that read as ``kind`` are read (``int`` also takes a float without fraction). Anything else is left as
    it is, for the item type to refuse with its position. Not a validator on its own: see :func:`items_of`.
    """
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, list):
        items = [items]
    out = []
    for item in items:
        if isinstance(item, str):
            try:
                item = kind(item)
            except (TypeError, ValueError, OverflowError):
                pass
        elif kind is int and isinstance(item, float) and item.is_integer():
            item = int(item)
        out.append(item)
    return out


def items_of(kind: type):
    """A before-validator reading a comma list of ``kind`` (:func:`comma_list`)."""
    return BeforeValidator(lambda value: comma_list(value, kind))


def parse_list(value: Any, kind: type, what: str) -> list:
    """``"0.5,0.9"`` or ``[0.5, 0.9]`` → ``[0.5, 0.9]`` of ``kind``, for flags outside a matrix (the reading
    commands' filters).

    Raises:
        FieldError: an element that is not a ``kind`` (booleans refused), named with ``what`` (e.g. ``--sparsity``).
    """
    out = comma_list(value, kind)
    names = {float: "a float", int: "an integer", str: "a string"}
    for index, item in enumerate(out):
        if isinstance(item, bool) or not isinstance(item, kind if kind is not float else (int, float)):
            raise FieldError((what, index), f"{item!r} is not {names.get(kind, kind.__name__)}")
    return [kind(item) for item in out]


def _unique(one: str, many: str, example: str):
    def check(values: list) -> list:
        if not values:
            raise FieldError((), f"no {one} given; e.g. {example}")
        if len(set(values)) != len(values):
            raise FieldError((), f"duplicate {many} in the matrix: {values}")
        return values

    return check


def _each(check):
    def validator(values: list) -> list:
        for index, value in enumerate(values):
            try:
                check(value)
            except BenchError as err:
                raise FieldError((index,), getattr(err, "problem", str(err))) from None
        return values

    return validator


def _sparsity(value: float) -> float:
    from bench.core.method import check_sparsity  # the one [0, 1) rule, shared with every method's constructor

    return check_sparsity(value)


def _seed(value: int) -> int:
    if not 0 <= value < MAX_SEED:
        raise FieldError((), f"a seed must be an integer in [0, 2**32), got {value!r}")
    return value


Sparsities = Annotated[list[float], items_of(float), AfterValidator(_each(_sparsity)),
                       AfterValidator(_unique("sparsity", "sparsities", "0.5,0.9"))]  # fmt: skip
Seeds = Annotated[list[int], items_of(int), AfterValidator(_each(_seed)),
                  AfterValidator(_unique("seed", "seeds", "0,1"))]  # fmt: skip


def _names(registry_name: str):
    def split(value: Any) -> Any:
        return [v.strip() for v in value.split(",")] if isinstance(value, str) else value

    def resolve(names: list[str]) -> list[str]:
        from bench.core import registry

        return getattr(registry, registry_name).resolve(names)

    return Annotated[list[str], BeforeValidator(split), AfterValidator(checked(resolve))]


MethodNames = _names("methods")
TaskNames = _names("tasks")


def _preset(name: str) -> str:
    from bench.config.presets import get_preset

    get_preset(name)
    return name


PresetName = Annotated[NonEmptyStr, AfterValidator(checked(_preset))]


def _task_or_star(name: str) -> str:
    from bench.core import registry

    if name != "*":
        try:
            registry.tasks.entry(name)
        except BenchError as err:
            raise FieldError((), f"{err} (or '*' for every task)") from None
    return name


TaskOrStar = Annotated[str, AfterValidator(_task_or_star)]
