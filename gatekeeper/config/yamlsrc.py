"""Safe YAML reading that remembers where every value came from.

The files are composed (not constructed) with libyaml's `CSafeLoader`, and the node tree is
turned into `Node` values by hand so that every value keeps its line for `path:line: message`
errors. Tags, anchors/aliases (the "billion laughs" expansion) and duplicate keys are refused.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, NamedTuple

import yaml

try:
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader  # type: ignore[assignment]

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str": "str",
    "tag:yaml.org,2002:int": "int",
    "tag:yaml.org,2002:bool": "bool",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:float": "float",
    "tag:yaml.org,2002:timestamp": "timestamp",
    "tag:yaml.org,2002:map": "map",
    "tag:yaml.org,2002:seq": "seq",
}
MAX_FILE_BYTES = 16 * 1024 * 1024  # 50,000 grants take about 6 MiB


class Problem(NamedTuple):
    """One configuration error, printed as `path:line: message`."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; `problems` says where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class Node(NamedTuple):
    """A YAML value with its source line. `value` holds dict[str, Node], list[Node] or a scalar
    (str, int, float, bool, None, datetime.date). A tuple: a large file has hundreds of
    thousands of them, and a tuple is built three times faster than a frozen dataclass."""

    value: Any
    line: int
    kind: str
    key_lines: dict[str, int] | None = None  # for mappings: the line of each key

    def get(self, key: str) -> Node | None:
        return self.value.get(key) if self.kind == "map" else None

    def key_line(self, key: str) -> int:
        """The line a mapping key stands on (errors about an entry point at its key)."""
        return (self.key_lines or {}).get(key, self.line)


def read_yaml(path: Path, text: str | None = None) -> Node:
    """Parse one file (or `text` standing for it) into a `Node` tree; raises `ConfigError`."""
    name = str(path)
    if text is None:
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise ConfigError([Problem(name, None, f"cannot read: {e.strerror or e}")]) from e
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError([Problem(name, None, f"file larger than {MAX_FILE_BYTES} bytes")])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError([Problem(name, None, f"not UTF-8 text: {e}")]) from e
    try:
        root = yaml.compose(text, Loader=SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        message = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise ConfigError([Problem(name, line, f"YAML syntax error: {message}")]) from e
    except yaml.YAMLError as e:
        raise ConfigError([Problem(name, None, f"YAML error: {e}")]) from e
    if root is None:
        raise ConfigError([Problem(name, None, "file is empty")])
    problems: list[Problem] = []
    node = _convert(root, name, problems, set())
    if problems:
        raise ConfigError(problems)
    return node


def _convert(node: yaml.Node, name: str, problems: list[Problem], seen: set[int]) -> Node:
    line = node.start_mark.line + 1
    if id(node) in seen:
        problems.append(Problem(name, line, "anchors and aliases (*name) are not allowed"))
        return Node(None, line, "null")
    seen.add(id(node))
    kind = _PLAIN_TAGS.get(node.tag)
    if kind is None:
        problems.append(Problem(name, line, f"YAML tag {node.tag} is not allowed"))
        return Node(None, line, "null")
    if isinstance(node, yaml.MappingNode):
        items: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, name, problems, seen)
            if key.kind == "str" and key.value == "<<":
                problems.append(Problem(name, key.line, "merge keys (<<) are not allowed"))
                continue
            if key.kind not in ("str", "int", "bool", "null", "float", "timestamp"):
                problems.append(Problem(name, key.line, "mapping keys must be plain strings"))
                continue
            text = str(key_node.value)
            if text in items:
                problems.append(Problem(name, key.line, f"duplicate key {text!r}"))
                continue
            items[text] = _convert(value_node, name, problems, seen)
            key_lines[text] = key.line
        return Node(items, line, "map", key_lines)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(v, name, problems, seen) for v in node.value], line, "seq")
    if kind == "str":  # most scalars: no conversion
        return Node(node.value, line, kind)
    return Node(_scalar(node, kind, name, problems), line, kind)


def _scalar(node: yaml.ScalarNode, kind: str, name: str, problems: list[Problem]) -> Any:
    text = node.value
    line = node.start_mark.line + 1
    try:
        if kind == "str":
            return text
        if kind == "null":
            return None
        if kind == "bool":
            return text.lower() in ("true", "yes", "on")
        if kind == "int":
            return int(text.replace("_", ""), 0)
        if kind == "float":
            return float(text.replace("_", ""))
        if kind == "timestamp":  # a bad date stays text: the schema says what it must be
            return dt.date.fromisoformat(text) if len(text) == 10 else text
    except ValueError:
        if kind == "timestamp":
            return text
        problems.append(Problem(name, line, f"not a valid {kind}: {text!r}"))
    return text
