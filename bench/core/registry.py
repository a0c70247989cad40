"""Lazy plugin registries over the ``bench.methods``, ``bench.tasks`` and ``bench.architectures`` entry-point groups.

Built-in methods, tasks and architecture tables register through the project's own pyproject entry points, so they
are found exactly as a third-party package's are. An entry is imported only when it is first used (``get`` or
``describe``); an unknown name gets a "did you mean" error that lists the valid choices.

A name registered by two distributions is refused (naming both) unless the user picks one in the environment
variable :data:`PREFER_ENV`: ``BENCH_PLUGIN_PREFER="random=my-plugins,mnli=prune-bench"`` (``name=distribution``,
comma-separated; it applies in every group where that name is contested). The same distribution seen twice (one
install on two ``sys.path`` entries) is not a conflict.
"""

from __future__ import annotations

import difflib
import sys
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any

from bench.core.errors import BenchError
from bench.core.plugin_entries import PREFER_ENV, Entry, LocalEntry, canonical_name, preferences

__all__ = ["PREFER_ENV", "Entry", "LocalEntry", "Registry", "canonical_name", "is_reference", "reference_method"]


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
        """``{name: Entry}`` of every plugin of the group, sorted by name.

        Raises:
            BenchError: a name registered by two or more distributions and not settled by :data:`PREFER_ENV`, or a
                malformed :data:`PREFER_ENV`.
        """
        candidates: dict[str, list[Entry]] = {}
        for ep in entry_points(group=self.group):
            package, version = (ep.dist.name, ep.dist.version) if ep.dist is not None else ("?", "?")
            entry = Entry(ep.name, package, ep, version)
            known = candidates.setdefault(ep.name, [])
            if all(canonical_name(e.package) != canonical_name(entry.package) for e in known):
                known.append(entry)  # one distribution found twice on sys.path is one registration
        prefer = preferences()
        return {name: self._choose(name, candidates[name], prefer) for name in sorted(candidates)}

    def _choose(self, name: str, candidates: list[Entry], prefer: dict[str, str]) -> Entry:
        """The one entry of ``name``: the only one, or the one :data:`PREFER_ENV` picks among several."""
        if len(candidates) == 1:
            return candidates[0]
        candidates = sorted(candidates, key=lambda e: canonical_name(e.package))
        listed = " and ".join(e.where() for e in candidates)
        wanted = prefer.get(name)
        if wanted is None:
            example = f"{name}={candidates[0].package}"
            raise BenchError(
                f"{self.kind} name {name!r} is registered by {len(candidates)} distributions: {listed}; uninstall "
                f"one, or choose one with the environment variable {PREFER_ENV}, e.g. {PREFER_ENV}={example}"
            )
        chosen = [e for e in candidates if canonical_name(e.package) == canonical_name(wanted)]
        if not chosen:
            raise BenchError(
                f"{PREFER_ENV} picks {wanted!r} for {self.kind} {name!r}, but {name!r} is registered by {listed}; "
                f"name one of these distributions"
            )
        return chosen[0]

    def names(self) -> list[str]:
        return list(self.entries)

    def add(self, entry: LocalEntry) -> None:
        """Register ``entry`` in this process (``bench run --include-tasks``); a name already taken is refused.

        Raises:
            BenchError: the name is registered already (both sources named).
        """
        if entry.name in self.entries and self.entries[entry.name].where() != entry.where():
            raise BenchError(f"{self.kind} name {entry.name!r} from {entry.where()} is already registered by "
                             f"{self.entries[entry.name].where()}; rename it in its file")  # fmt: skip
        self.entries[entry.name] = entry
        self.__dict__["entries"] = dict(sorted(self.entries.items()))
        self._loaded.pop(entry.name, None)

    def groups(self) -> dict[str, list[str]]:
        """``{group: [member names]}`` from the plugins' ``groups`` class attribute (loads every plugin)."""
        found: dict[str, list[str]] = {}
        for name in self.names():
            for group in getattr(self.get(name), "groups", ()):
                found.setdefault(group, []).append(name)
        return found

    def expand_group(self, group: str, members: list[str]) -> list[str]:
        """The members of ``group`` that can run here: for tasks, those whose train split exists in their dataset
        (QNLI's is missing from an eval-only cache); each one left out is named on stderr."""
        if self.kind != "task":
            return members
        kept = []
        for name in members:
            task = self.get(name)()
            sizes = task.split_sizes()
            base = task.train_split.split("[")[0]
            if sizes is None or base in sizes:
                kept.append(name)
            else:
                print(f"bench: note: --tasks {group} leaves out {name}: its dataset has no {base!r} split here "
                      f"(it has {', '.join(sizes) or 'none'})", file=sys.stderr)  # fmt: skip
        return kept

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
        if any(name not in self.entries for name in names):
            groups = self.groups()
            for name in names:
                if name not in self.entries and name not in groups:
                    raise BenchError(unknown_name_message(self.kind, name, [*self.names(), *sorted(groups)],
                                                          f"{self.kind}s and groups" if groups else None))  # fmt: skip
            names = [m for n in names for m in (self.expand_group(n, groups[n]) if n not in self.entries else [n])]
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
architectures = Registry("bench.architectures", "architecture")


def plugin_origins(method: str, task: str, model_type: str | None = None) -> dict[str, dict[str, str]]:
    """``{role: {"name", "distribution", "version"}}`` for the plugins of a cell (its ``method``, ``task`` and, when
    given, the architecture table of ``model_type``) that come from a distribution other than prune-bench: what enters
    the cell's id, so that a new version of an outside plugin makes new cells. Empty for built-in plugins only."""
    found: dict[str, dict[str, str]] = {}
    for role, registry, name in (("method", methods, method), ("task", tasks, task),
                                 ("architecture", architectures, model_type)):  # fmt: skip
        entry = registry.entries.get(name) if name is not None else None
        origin = entry.origin() if entry is not None else None
        if origin is not None:
            found[role] = {"name": name, **origin}
    return found


def is_reference(method: str) -> bool:
    """True for a registered method that prunes nothing (its class's ``prunes`` is False: the dense reference row
    and the distillation teacher); False for any other name, a foreign method in old records included. Readers
    and the runner ask this instead of comparing names with "dense"."""
    return method in methods.names() and not methods.get(method).prunes


def reference_method() -> str:
    """The name of the one registered method that prunes nothing (its class's ``prunes`` is False): the dense
    reference that ``--distill`` trains as the teacher and every pruned cell is compared with. Decided by the
    registry, not by the name "dense", so a renamed or third-party reference is found the same way.

    Raises:
        BenchError: no registered method, or more than one, has ``prunes = False`` (the teacher would be ambiguous).
    """
    found = [name for name in methods.names() if not methods.get(name).prunes]
    if len(found) != 1:
        which = f"{len(found)} do ({', '.join(found)})" if found else "none does"
        raise BenchError(
            f"exactly one registered method must prune nothing (prunes = False) to be the dense reference and "
            f"distillation teacher, but {which}; uninstall the extra one or register one"
        )
    return found[0]
