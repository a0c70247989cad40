"""Plugin entries: one registered method, task or architecture table, where it comes from, and the user's choice
among distributions that register the same name (:data:`PREFER_ENV`). Used by :mod:`bench.core.registry`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

from bench.core.errors import BenchError

PREFER_ENV = "BENCH_PLUGIN_PREFER"
BUILTIN_DISTRIBUTION = "prune-bench"


def canonical_name(distribution: str) -> str:
    """A distribution name as PEP 503 compares them: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


@dataclass(frozen=True)
class Entry:
    """One registered plugin: its name, the distribution that provides it (name and version), and its entry point."""

    name: str
    package: str
    entry_point: EntryPoint
    version: str = "?"

    def load(self) -> Any:
        return self.entry_point.load()

    @property
    def builtin(self) -> bool:
        """True for a plugin of prune-bench itself."""
        return canonical_name(self.package) == BUILTIN_DISTRIBUTION

    def origin(self) -> dict[str, str] | None:
        """``{"distribution": ..., "version": ...}`` for a plugin from another distribution (what enters the id of a
        cell that uses it); None for a built-in one, so built-in cells keep their ids."""
        return None if self.builtin else {"distribution": self.package, "version": self.version}

    def where(self) -> str:
        """``distribution version (module:attr)``, for messages."""
        return f"{self.package} {self.version} ({self.entry_point.value})"

    def describe(self) -> str:
        """The plugin's one-line ``description``: read from its source when the class states it as a literal (so
        that ``bench ls`` does not import torch), else by importing it; a plugin that fails to import says so."""
        text = static_description(self.entry_point)
        if text is not None:
            return text
        try:
            obj = self.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin must not break the listing
            return f"(cannot be loaded: {type(err).__name__}: {err})"
        text = getattr(obj, "description", None) or (obj.__doc__ or "").strip()
        return text.splitlines()[0] if text else ""


def static_description(entry_point: EntryPoint) -> str | None:
    """The first line of ``description = "..."`` in the class body that ``entry_point`` names, read with ``ast``
    from the module's source without importing it (the package above it is imported to find the file); None when
    the source cannot be found or the class does not state its description as one string literal."""
    import ast
    import importlib.util

    module, _, attr = entry_point.value.partition(":")
    try:
        spec = importlib.util.find_spec(module.strip())
        source = Path(spec.origin).read_text(encoding="utf-8") if spec is not None and spec.origin else None
    except (ImportError, ValueError, OSError, UnicodeDecodeError):
        return None
    if source is None:
        return None
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == attr.strip():
            for item in node.body:
                target = item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else None
                if isinstance(target, ast.Name) and target.id == "description":
                    value = item.value
                    if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value.strip():
                        return value.value.strip().splitlines()[0]
    return None


@dataclass(frozen=True)
class LocalEntry:
    """A plugin registered in the running process, not through an entry point: a YAML task of ``--include-tasks``.

    Its definition enters the ids of its cells itself (``describe()``), so it has no :meth:`origin`."""

    name: str
    obj: Any
    source: str  # the file that defines it
    package: str = "yaml"
    version: str = "-"
    builtin = False

    def load(self) -> Any:
        return self.obj

    def origin(self) -> None:
        return None

    def where(self) -> str:
        return self.source

    def describe(self) -> str:
        return getattr(self.obj, "description", "")


def preferences() -> dict[str, str]:
    """``{plugin name: distribution}`` from :data:`PREFER_ENV` (``"name=distribution,name=distribution"``).

    Raises:
        BenchError: an item that is not ``name=distribution``, or a name given twice.
    """
    text = os.environ.get(PREFER_ENV, "")
    chosen: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, distribution = (s.strip() for s in item.partition("="))
        if not sep or not name or not distribution:
            raise BenchError(f"{PREFER_ENV}: expected name=distribution[,name=distribution...], got {item!r}")
        if name in chosen and canonical_name(chosen[name]) != canonical_name(distribution):
            raise BenchError(f"{PREFER_ENV}: {name!r} is given twice ({chosen[name]!r} and {distribution!r})")
        chosen[name] = distribution
    return chosen
