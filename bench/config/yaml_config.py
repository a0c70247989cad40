"""Reading a matrix config file (YAML): its values and the line of every key, so that a bad value is named by its
line (:class:`bench.config.messages.Sources`).

Numbers may be written ``1e-5`` (read as a float, as in YAML 1.2; plain PyYAML would read a string). A key given
twice in one mapping is refused (PyYAML would keep the last silently), and so are a top level that is not a mapping
and a file too large to be a matrix config. The values are checked by :class:`bench.config.model.MatrixConfig`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bench.config.messages import Sources
from bench.core.errors import BenchError

MAX_CONFIG_BYTES = 2**20  # a matrix config is a small YAML file


def _loader_class():
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        """SafeLoader that also reads ``1e-5`` (exponent without a dot) as a float, as YAML 1.2 does."""

    ConfigLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return ConfigLoader


def read_config(path: str | Path) -> tuple[dict[str, Any], Sources]:
    """The values of a matrix config file and where each sits (``Sources.lines``), unchecked.

    Raises:
        BenchError: unreadable file (see :func:`config_file`), YAML syntax error (with its line), a key given twice
            in one mapping (both lines), a top level that is not a mapping.
    """
    import yaml

    path = config_file(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise BenchError(f"cannot read config {path}: {reason}") from err
    loader = _loader_class()
    try:
        node = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BenchError(f"malformed config {path}{where}: {getattr(err, 'problem', None) or err}") from err
    except RecursionError as err:
        raise BenchError(f"malformed config {path}: nested too deeply") from err
    if data is None:
        return {}, Sources(config=path)
    if not isinstance(data, dict):
        raise BenchError(f"config {path} must be a mapping of matrix fields, got {type(data).__name__}")
    lines: dict[tuple, int] = {}
    _collect_lines(node, (), lines, loader, path, set())
    return data, Sources(config=path, lines=lines)


def config_file(path: str | Path) -> Path:
    """``path`` if it names a readable regular file of at most :data:`MAX_CONFIG_BYTES`.

    Raises:
        BenchError: an empty path, a missing file or a dangling link, a folder, a device, pipe or socket (reading
            one would hang or never end), a file too large to be a matrix config.
    """
    if str(path).strip() in ("", "."):
        raise BenchError(f"--config: expected the path of a YAML file, got {str(path)!r}")
    path = Path(path)
    try:
        if path.is_symlink() and not path.exists():
            raise BenchError(f"cannot read config {path}: it is a dangling symbolic link (to {os.readlink(path)})")
        if not path.exists():
            raise BenchError(f"cannot read config {path}: no such file")
        if path.is_dir():
            raise BenchError(f"cannot read config {path}: it is a folder; give the path of a YAML file")
        if not path.is_file():
            raise BenchError(f"cannot read config {path}: not a regular file (a device, pipe or socket); give the "
                             "path of a YAML file")  # fmt: skip
        size = path.stat().st_size
    except OSError as err:
        raise BenchError(f"cannot read config {path}: {err.strerror or err}") from err
    if size > MAX_CONFIG_BYTES:
        raise BenchError(f"cannot read config {path}: it has {size} bytes; a matrix config is a small YAML file "
                         f"(at most {MAX_CONFIG_BYTES} bytes)")  # fmt: skip
    return path


def _collect_lines(node: Any, path: tuple, lines: dict, loader: type, source: Path, seen: set) -> None:
    """``{key path: line}`` of every mapping key and list item; a key given twice in one mapping is refused."""
    import yaml

    if id(node) in seen:  # an alias of a node already walked (possibly recursive)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = loader("").construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first:
                where = ".".join(str(k) for k in (*path, key))
                raise BenchError(
                    f"malformed config {source}: key {where!r} given twice, at lines {first[key]} and {line}"
                )
            first[key] = line
            lines[(*path, key)] = line
            _collect_lines(value_node, (*path, key), lines, loader, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _collect_lines(item, (*path, index), lines, loader, source, seen)


def load_config(path: str | Path) -> dict[str, Any]:
    """A matrix config file checked on its own (no flags): its values, keys given as null left out.

    Raises:
        BenchError: any problem :func:`read_config` names, or a bad value or unknown key, naming its line.
    """
    from bench.config.model import MatrixConfig

    values, sources = read_config(path)
    given = {k: v for k, v in values.items() if v is not None}
    partial = {"methods": "all", "tasks": "all", "sparsities": [0.5], **given}  # so that a partial file is checked
    MatrixConfig.build(partial, sources)
    return given
