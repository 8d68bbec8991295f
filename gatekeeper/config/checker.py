"""Schema checks for one YAML file, as every config file needs them (services.yaml,
approvals.yaml, gateway.yaml, the directory section): each check returns the value or None and
records a `path:line: message` problem, so one pass reports every problem at once. The policy
itself is built in `gatekeeper.config.loader`."""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from gatekeeper.config.yamlsrc import Node, Problem

E = TypeVar("E", bound=enum.Enum)


@dataclass
class FileChecker:
    """Schema checks for one YAML file, collecting `path:line` problems (shared by every
    config file: services.yaml, approvals.yaml, gateway.yaml)."""

    path: str
    problems: list[Problem]

    def error(self, node: Node | None, message: str, line: int | None = None) -> None:
        self.problems.append(Problem(self.path, node.line if node else line, message))

    def mapping(
        self, node: Node | None, what: str, required: Iterable[str], optional: Iterable[str]
    ) -> dict[str, Node] | None:
        """The node's items if it is a mapping with only known keys and all required ones."""
        if node is None or node.kind != "map":
            self.error(node, f"{what} must be a mapping")
            return None
        required, optional = tuple(required), tuple(optional)
        for key in node.value:
            if key not in required and key not in optional:
                known = ", ".join(sorted((*required, *optional)))
                self.error(
                    None, f"unknown key {key!r} in {what} (known keys: {known})",
                    line=node.key_line(key),
                )
        for key in required:
            if key not in node.value:
                self.error(node, f"{what} is missing required key {key!r}")
        return node.value

    def string(self, node: Node | None, what: str, pattern: re.Pattern[str] | None = None) -> str:
        if node is None or node.kind != "str" or not node.value.strip():
            self.error(node, f"{what} must be a non-empty string")
            return ""
        if pattern is not None and not pattern.match(node.value):
            self.error(node, f"{what} {node.value!r} is not valid")
            return ""
        return node.value

    def strings(self, node: Node | None, what: str, *, allow_empty: bool = False) -> list[Node]:
        """The items of a list of strings (one-string shorthand is refused: be explicit)."""
        if node is None or node.kind != "seq":
            self.error(node, f"{what} must be a list")
            return []
        if not node.value and not allow_empty:
            self.error(node, f"{what} must not be empty")
        good = []
        for item in node.value:
            if item.kind != "str" or not item.value.strip():
                self.error(item, f"{what} items must be non-empty strings")
            else:
                good.append(item)
        return good

    def date(self, node: Node | None, what: str) -> dt.date | None:
        if node is not None and isinstance(node.value, str):
            try:
                return dt.date.fromisoformat(node.value)
            except ValueError:
                pass
        if node is not None and isinstance(node.value, dt.date):
            return node.value
        self.error(node, f"{what} must be a date (YYYY-MM-DD)")
        return None

    def choice(self, node: Node | None, what: str, choices: type[E], default: E) -> E:
        """One of an enum's values; `default` when the key is absent."""
        if node is None:
            return default
        try:
            return choices(node.value)
        except ValueError:
            allowed = " or ".join(repr(c.value) for c in choices)
            self.error(node, f"{what} must be {allowed}, not {node.value!r}")
            return default

    def boolean(self, node: Node, what: str) -> bool:
        if node.kind != "bool":
            self.error(node, f"{what} must be true or false")
            return False
        return bool(node.value)

    def regex(self, node: Node | None, what: str) -> re.Pattern[str] | None:
        text = self.string(node, what)
        if not text:
            return None
        try:
            return re.compile(text)
        except re.error as e:
            self.error(node, f"{what} is not a valid regular expression: {e}")
            return None

    def seq(self, node: Node | None, what: str) -> list[Node]:
        if node is None or node.kind != "seq":
            self.error(node, f"{what} must be a list")
            return []
        return node.value
