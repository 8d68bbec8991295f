"""Safe YAML reading that remembers where every value came from.

The files are read with libyaml's `CSafeLoader` (never constructed into Python objects by
PyYAML), and turned into `Node` values by hand so that every value keeps its line for
`path:line: message` errors: an ordinary file straight from the parser's events, anything
unusual by composing PyYAML's node tree first. Tags, anchors/aliases (the "billion laughs"
expansion) and duplicate keys are refused.
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
    fast = _from_events(text)
    if fast is not None:
        return fast
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


class _UnusualInputError(Exception):
    """Something the event reader leaves to the composing reader, which reports it exactly."""


_KEY_KINDS = frozenset({"str", "int", "bool", "null", "float", "timestamp"})


def _from_events(text: str) -> Node | None:
    """The `Node` tree of an ordinary file, built straight from libyaml's parse events.

    Composing a node tree first (PyYAML's `compose`), with two position marks per node, and
    then converting it cost twice the time and three times the peak memory on a 6 MiB file.
    Returns None for anything unusual (a syntax error, a tag, an anchor or alias, a merge or
    duplicate key, a bad scalar, an empty file, several documents): `read_yaml` then takes
    the composing path, which reports every such problem with its line, as before.
    """
    parser = SafeLoader(text)
    try:
        return _build_from_events(parser)
    except (_UnusualInputError, yaml.YAMLError):
        return None
    finally:
        parser.dispose()


def _build_from_events(parser: Any) -> Node:
    get_event = parser.get_event
    resolvers = parser.yaml_implicit_resolvers
    resolve = parser.resolve
    wildcard = None in resolvers  # resolvers for any first character (none in PyYAML's own)
    resolved: dict[str, str] = {}  # plain scalar -> kind: dates and names repeat thousands of times
    problems: list[Problem] = []
    # each open collection: [kind, line, items (dict or list), key_lines, pending key]
    stack: list[list[Any]] = []
    root: Node | None = None
    get_event()  # stream start
    if not isinstance(get_event(), yaml.DocumentStartEvent):
        raise _UnusualInputError  # an empty stream
    while True:
        event = get_event()
        cls = type(event)
        if cls is yaml.ScalarEvent:
            if event.tag not in (None, "!") or event.anchor is not None:
                raise _UnusualInputError
            text = event.value
            if event.implicit[0] and (text[:1] in resolvers or wildcard):
                kind = resolved.get(text)
                if kind is None:
                    kind = _PLAIN_TAGS.get(resolve(yaml.ScalarNode, text, event.implicit))
                    if kind is None:
                        raise _UnusualInputError
                    resolved[text] = kind
            else:
                kind = "str"
            line = event.start_mark.line + 1
            value = text if kind == "str" else _scalar(text, kind, line, "", problems)
            if problems:
                raise _UnusualInputError
            if stack and stack[-1][0] == "map" and stack[-1][4] is None:
                top = stack[-1]
                if kind not in _KEY_KINDS or text == "<<" or text in top[2]:
                    raise _UnusualInputError
                top[4] = (text, line)  # keys are kept as written, as `_convert` does
                continue
            node = Node(value, line, kind)
        elif cls is yaml.MappingStartEvent or cls is yaml.SequenceStartEvent:
            if event.tag not in (None, "!") or event.anchor is not None:
                raise _UnusualInputError
            if stack and stack[-1][0] == "map" and stack[-1][4] is None:
                raise _UnusualInputError  # a collection as a mapping key
            line = event.start_mark.line + 1
            if cls is yaml.MappingStartEvent:
                stack.append(["map", line, {}, {}, None])
            else:
                stack.append(["seq", line, [], None, None])
            continue
        elif cls is yaml.MappingEndEvent or cls is yaml.SequenceEndEvent:
            kind, line, items, key_lines, _ = stack.pop()
            node = Node(items, line, kind, key_lines)
        elif cls is yaml.DocumentEndEvent:
            if not isinstance(get_event(), yaml.StreamEndEvent) or root is None:
                raise _UnusualInputError  # several documents
            return root
        else:
            raise _UnusualInputError  # an alias
        if not stack:
            root = node
        elif stack[-1][0] == "seq":
            stack[-1][2].append(node)
        else:
            top = stack[-1]
            key, key_line = top[4]
            top[2][key] = node
            top[3][key] = key_line
            top[4] = None


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
    return Node(_scalar(node.value, kind, line, name, problems), line, kind)


def _scalar(text: str, kind: str, line: int, name: str, problems: list[Problem]) -> Any:
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
