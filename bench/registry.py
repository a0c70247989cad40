"""Lazy plugin registries over the ``bench.methods`` and ``bench.tasks`` entry-point groups.

Built-in methods and tasks register through the project's own pyproject entry points, so they are found
exactly as a third-party package's are. An entry is imported only when it is first used (``get`` or
``describe``); an unknown name gets a "did you mean" error that lists the valid choices.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from bench.errors import BenchError


@dataclass(frozen=True)
class Entry:
    """One registered plugin: its name, the distribution that provides it, and its entry point."""

    name: str
    package: str
    entry_point: EntryPoint

    def load(self) -> Any:
        return self.entry_point.load()

    def describe(self) -> str:
        """The plugin's one-line ``description`` (imports it); a plugin that fails to import says so."""
        try:
            obj = self.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin must not break the listing
            return f"(cannot be loaded: {type(err).__name__}: {err})"
        text = getattr(obj, "description", None) or (obj.__doc__ or "").strip()
        return text.splitlines()[0] if text else ""


class Registry:
    """Plugins of one entry-point group, loaded lazily.

    Args:
        group: the entry-point group, e.g. ``"bench.methods"``.
        kind: what to call an entry in messages, e.g. ``"method"``.
    """

    def __init__(self, group: str, kind: str):
        self.group = group
        self.kind = kind
        self._loaded: dict[str, Any] = {}

    @cached_property
    def entries(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for ep in entry_points(group=self.group):
            package = ep.dist.name if ep.dist is not None else "?"
            found.setdefault(ep.name, Entry(ep.name, package, ep))
        return dict(sorted(found.items()))

    def names(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> Any:
        """The loaded plugin class registered as ``name``.

        Raises:
            BenchError: unknown name; the message suggests close names and lists all valid ones.
        """
        if name not in self._loaded:
            self._loaded[name] = self.entry(name).load()
        return self._loaded[name]

    def entry(self, name: str) -> Entry:
        if name not in self.entries:
            raise BenchError(unknown_name_message(self.kind, name, self.names()))
        return self.entries[name]

    def resolve(self, spec: str | list[str]) -> list[str]:
        """Names from a comma list or ``"all"``, validated, duplicates refused.

        Raises:
            BenchError: an unknown or duplicated name.
        """
        if not isinstance(spec, (str, list, tuple)):
            raise BenchError(f"expected a comma list or a list of {self.kind} names, got {spec!r}")
        names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else [str(n).strip() for n in spec]
        names = [n for n in names if n]
        if names == ["all"]:
            return self.names()
        for name in names:
            self.entry(name)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise BenchError(f"duplicate {self.kind}(s) in the matrix: {', '.join(duplicates)}")
        if not names:
            raise BenchError(f"no {self.kind} given; valid: all, {', '.join(self.names())}")
        return names


def unknown_name_message(kind: str, name: str, valid: list[str], plural: str | None = None) -> str:
    """``unknown KIND 'name'. Did you mean 'close'? Valid KINDs: ...`` (the hint only when a name is close)."""
    hint = did_you_mean(name, valid)
    return f"unknown {kind} {name!r}.{hint} Valid {plural or kind + 's'}: {', '.join(valid) or '(none registered)'}"


def did_you_mean(name: Any, valid: list[str]) -> str:
    """`` Did you mean 'x' or 'y'?`` for the names of ``valid`` close to ``name``; empty when none is close."""
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


methods = Registry("bench.methods", "method")
tasks = Registry("bench.tasks", "task")

def is_reference(method: str) -> bool:
    """True for a registered method that prunes nothing (its class's ``prunes`` is False: the dense reference row
    and the distillation teacher); False for any other name, a foreign method in old records included. Readers
    and the runner ask this instead of comparing names with "dense"."""
    return method in methods.names() and not methods.get(method).prunes
