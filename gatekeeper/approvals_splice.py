"""Splicing grants and employees into the text of `approvals.yaml`: only the bytes of the grant or
employee concerned change.

A YAML round-trip dumper (ruamel.yaml included) re-indents the whole file and respaces flow
lists and comments, so instead the file is parsed with PyYAML's pure-Python composer, whose
marks are exact character offsets, and the new text is spliced in: a value replaced, a key line
added or removed, a list item appended or removed. Everything else (comments, key order,
indentation, quoting, flow style, line endings) stays byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

KEY_ORDER = ("employee", "service", "accounts", "approved_by", "approved_on", "expires")
_PLAIN = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.@+/-]*\Z")
_RESOLVER = yaml.resolver.Resolver()


class EditError(Exception):
    """The edit was refused; the file is unchanged."""


@dataclass(frozen=True, slots=True)
class _Splice:
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class _Style:
    """How the file writes grant items, copied from its last block-style grant."""

    dash_column: int = 2
    key_column: int = 4
    key_order: tuple[str, ...] = KEY_ORDER
    quotes: tuple[tuple[str, str], ...] = ()  # (key, quote character) for quoted values
    accounts_block_offset: int | None = None  # None: flow list; else block list, this indent


class ApprovalsDocument:
    """approvals.yaml text with the node positions of its grants."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.newline = "\r\n" if "\r\n" in text else "\n"
        try:
            self.root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:  # the loader accepted it, so this is unexpected
            raise EditError(f"cannot parse approvals.yaml for editing: {e}") from e
        if not isinstance(self.root, yaml.MappingNode) or self.root.flow_style:
            raise EditError("approvals.yaml must be a block mapping to be edited")
        self.grants_key, self.grants = _lookup(self.root, "grants")
        self.employees_key, self.employees = _lookup(self.root, "employees")

    def find_grant(self, employee: str, service: str) -> yaml.MappingNode | None:
        if not isinstance(self.grants, yaml.SequenceNode):
            return None
        for item in self.grants.value:
            if (
                isinstance(item, yaml.MappingNode)
                and _scalar_value(item, "employee") == employee
                and _scalar_value(item, "service") == service
            ):
                return item
        return None

    # --- add --------------------------------------------------------------------------------

    def add_grant(self, values: dict[str, object]) -> str:
        grants = self.grants
        if self.grants_key is None:  # no `grants:` yet: append one at the end of the file
            body = "grants:" + self.newline + self._block_item(values, _Style())
            return self._apply([self._insert(len(self.text), body)])
        if isinstance(grants, yaml.SequenceNode) and grants.value and grants.flow_style:
            end = _content_end(self.text, grants.value[-1])
            return self._apply([_Splice(end, end, ", " + _flow_mapping(values))])
        if isinstance(grants, yaml.SequenceNode) and grants.value:
            style = self._style(grants)
            at = _line_end(self.text, _content_end(self.text, grants))
            return self._apply([self._insert(at, self._block_item(values, style))])
        if _is_empty(grants):  # `grants:`, `grants: ~` or `grants: []`
            start = grants.start_mark.index
            while start > 0 and self.text[start - 1] == " ":
                start -= 1
            key_end = _line_end(self.text, grants.end_mark.index)
            return self._apply(
                [
                    _Splice(start, grants.end_mark.index, ""),
                    self._insert(key_end, self._block_item(values, _Style())),
                ]
            )
        raise EditError(f"approvals.yaml line {grants.start_mark.line + 1}: grants must be a list")

    def _block_item(self, values: dict[str, object], style: _Style) -> str:
        quotes = dict(style.quotes)
        keys = [k for k in style.key_order if k in values]
        keys += [k for k in KEY_ORDER if k in values and k not in keys]
        entries = []  # one per key; a block list's lines carry their own indentation
        for key in keys:
            value = values[key]
            if isinstance(value, list) and style.accounts_block_offset is not None:
                indent = self.newline + " " * (style.key_column + style.accounts_block_offset)
                entries.append(f"{key}:" + "".join(
                    f"{indent}- {_scalar(v, quotes.get(key))}" for v in value
                ))
            elif isinstance(value, list):
                entries.append(f"{key}: {_flow_list(value, quotes.get(key))}")
            else:
                entries.append(f"{key}: {_scalar(value, quotes.get(key))}")
        dash = " " * style.dash_column + "-" + " " * (style.key_column - style.dash_column - 1)
        lines = [dash + entries[0], *(" " * style.key_column + e for e in entries[1:])]
        return self.newline.join(lines) + self.newline

    def _style(self, grants: yaml.SequenceNode) -> _Style:
        blocks = [i for i in grants.value if isinstance(i, yaml.MappingNode) and not i.flow_style]
        if not blocks:
            return _Style()
        item = blocks[-1]
        dash = _dash_before(self.text, item.start_mark.index)
        key_column = item.value[0][0].start_mark.column
        if dash is None or key_column <= _column(self.text, dash):
            return _Style()
        quotes = []
        offset = None
        for key, value in item.value:
            scalar = value
            if isinstance(value, yaml.SequenceNode):
                if not value.flow_style:
                    offset = value.start_mark.column - key_column
                scalar = value.value[0] if value.value else value
            if isinstance(scalar, yaml.ScalarNode) and scalar.style in ("'", '"'):
                quotes.append((key.value, scalar.style))
        return _Style(
            dash_column=_column(self.text, dash),
            key_column=key_column,
            key_order=tuple(k.value for k, _ in item.value),
            quotes=tuple(quotes),
            accounts_block_offset=offset,
        )

    # --- update -----------------------------------------------------------------------------

    def update_grant(
        self, item: yaml.MappingNode, values: dict[str, object], remove: Sequence[str]
    ) -> str:
        splices: list[_Splice] = []
        present = {k.value: (k, v) for k, v in item.value}
        for key, value in values.items():
            if key in present:
                splices.append(self._replace_value(present[key][1], value))
        missing = {k: v for k, v in values.items() if k not in present}
        if missing:
            splices.append(self._add_keys(item, missing))
        for key in remove:
            if key in present:
                splices.append(self._remove_key(item, key))
        return self._apply(splices)

    def _replace_value(self, node: yaml.Node, value: object) -> _Splice:
        start, end = node.start_mark.index, _content_end(self.text, node)
        quote = node.style if isinstance(node, yaml.ScalarNode) else _first_quote(node)
        if isinstance(value, list):
            if isinstance(node, yaml.SequenceNode) and not node.flow_style:
                indent = self.newline + " " * node.start_mark.column
                text = indent.join(f"- {_scalar(v, quote)}" for v in value)
            else:
                text = _flow_list(value, quote)
        else:
            text = _scalar(value, quote if quote in ("'", '"') else None)
        if self.text[start - 1 : start] == ":":
            text = " " + text  # an empty value right after its colon
        return _Splice(start, end, text)

    def _add_keys(self, item: yaml.MappingNode, values: dict[str, object]) -> _Splice:
        if item.flow_style:
            end = _content_end(self.text, item.value[-1][1])
            pairs = _flow_mapping(values)[1:-1]
            return _Splice(end, end, ", " + pairs)
        key_column = item.value[0][0].start_mark.column
        lines = []
        for key, value in values.items():
            rendered = _flow_list(value) if isinstance(value, list) else _scalar(value)
            lines.append(" " * key_column + f"{key}: {rendered}" + self.newline)
        return self._insert(_line_end(self.text, _content_end(self.text, item)), "".join(lines))

    def _remove_key(self, item: yaml.MappingNode, key: str) -> _Splice:
        pairs = item.value
        index = next(i for i, (k, _) in enumerate(pairs) if k.value == key)
        key_node, value_node = pairs[index]
        if item.flow_style:
            if index > 0:
                start = _content_end(self.text, pairs[index - 1][1])
                return _Splice(start, _content_end(self.text, value_node), "")
            return _Splice(key_node.start_mark.index, pairs[1][0].start_mark.index, "")
        line_start = _line_start(self.text, key_node.start_mark.index)
        if not self.text[line_start : key_node.start_mark.index].strip():
            end = _line_end(self.text, _content_end(self.text, value_node))
            return _Splice(line_start, end, "")
        # the key follows the item's dash: the next key moves up onto the dash line
        return _Splice(key_node.start_mark.index, pairs[index + 1][0].start_mark.index, "")

    # --- remove -----------------------------------------------------------------------------

    def remove_grant(self, item: yaml.MappingNode) -> str:
        return self._apply([self._grant_removal(item)])

    def _grant_removal(self, item: yaml.MappingNode) -> _Splice:
        grants = self.grants
        assert isinstance(grants, yaml.SequenceNode)
        items = grants.value
        index = items.index(item)
        if grants.flow_style:
            if index + 1 < len(items):
                return _Splice(item.start_mark.index, items[index + 1].start_mark.index, "")
            if index > 0:
                start = _content_end(self.text, items[index - 1])
                return _Splice(start, _content_end(self.text, item), "")
            return _Splice(item.start_mark.index, _content_end(self.text, item), "")
        dash = _dash_before(self.text, item.start_mark.index)
        if dash is None:
            raise EditError(
                f"approvals.yaml line {item.start_mark.line + 1}: cannot find this grant's '-'"
            )
        start = _line_start(self.text, dash)
        end = _line_end(self.text, _content_end(self.text, item))
        return _Splice(start, end, "")

    # --- employees --------------------------------------------------------------------------

    def employee_ids(self) -> list[str]:
        if not isinstance(self.employees, yaml.MappingNode):
            return []
        return [k.value for k, _ in self.employees.value if isinstance(k, yaml.ScalarNode)]

    def grants_of(self, employee: str) -> dict[str, yaml.MappingNode]:
        """The employee's grant items by service."""
        if not isinstance(self.grants, yaml.SequenceNode):
            return {}
        return {
            str(_scalar_value(item, "service")): item for item in self.grants.value
            if isinstance(item, yaml.MappingNode) and _scalar_value(item, "employee") == employee
        }

    def add_employee(self, employee: str, values: dict[str, object]) -> str:
        """`employee:` with `values` (email, addresses) after the last employee."""
        employees = self.employees
        if self.employees_key is None:  # no `employees:` yet: append one at the end
            body = "employees:" + self.newline + self._employee_block(employee, values, 2, 4)
            return self._apply([self._insert(len(self.text), body)])
        if isinstance(employees, yaml.MappingNode) and employees.value and employees.flow_style:
            end = _content_end(self.text, employees.value[-1][1])
            entry = f"{_scalar(employee)}: {_flow_mapping(values, ('email', 'addresses'))}"
            return self._apply([_Splice(end, end, ", " + entry)])
        if isinstance(employees, yaml.MappingNode) and employees.value:
            last_key, last_value = employees.value[-1]
            key_column = last_key.start_mark.column
            field_column = key_column + 2
            if isinstance(last_value, yaml.MappingNode) and not last_value.flow_style:
                field_column = last_value.value[0][0].start_mark.column
            at = _line_end(self.text, _content_end(self.text, employees))
            block = self._employee_block(employee, values, key_column, field_column)
            return self._apply([self._insert(at, block)])
        if _is_empty(employees) or (
            isinstance(employees, yaml.MappingNode) and not employees.value
        ):  # `employees:`, `employees: ~` or `employees: {}`
            assert employees is not None
            start = employees.start_mark.index
            while start > 0 and self.text[start - 1] == " ":
                start -= 1
            key_end = _line_end(self.text, employees.end_mark.index)
            return self._apply([
                _Splice(start, employees.end_mark.index, ""),
                self._insert(key_end, self._employee_block(employee, values, 2, 4)),
            ])
        line = employees.start_mark.line + 1 if employees is not None else 0
        raise EditError(f"approvals.yaml line {line}: employees must be a mapping")

    def _employee_block(self, employee: str, values: dict[str, object], key_column: int,
                        field_column: int) -> str:
        lines = [" " * key_column + f"{_scalar(employee)}:"]
        for key, value in values.items():
            rendered = _flow_list(value) if isinstance(value, list) else _scalar(value)
            lines.append(" " * field_column + f"{key}: {rendered}")
        return self.newline.join(lines) + self.newline

    def remove_employee(self, employee: str, grants: Sequence[yaml.MappingNode] = ()) -> str:
        """Remove the employee's entry (its lines, their comments included) and `grants`."""
        employees = self.employees
        assert isinstance(employees, yaml.MappingNode)
        pairs = employees.value
        index = next(i for i, (k, _) in enumerate(pairs) if k.value == employee)
        key_node, value_node = pairs[index]
        splices = [self._grant_removal(item) for item in grants]
        if employees.flow_style:
            if index + 1 < len(pairs):
                end = pairs[index + 1][0].start_mark.index
                splices.append(_Splice(key_node.start_mark.index, end, ""))
            elif index > 0:
                start = _content_end(self.text, pairs[index - 1][1])
                splices.append(_Splice(start, _content_end(self.text, value_node), ""))
            else:
                start, end = key_node.start_mark.index, _content_end(self.text, value_node)
                splices.append(_Splice(start, end, ""))
        else:
            start = _line_start(self.text, key_node.start_mark.index)
            end = _line_end(self.text, _content_end(self.text, value_node))
            splices.append(_Splice(start, end, ""))
        return self._apply(splices)

    # --- text -------------------------------------------------------------------------------

    def _insert(self, at: int, text: str) -> _Splice:
        """Insert whole lines at a line start (a file without a final newline gets one)."""
        if at > 0 and not self.text[:at].endswith("\n"):
            text = self.newline + text
        return _Splice(at, at, text)

    def _apply(self, splices: list[_Splice]) -> str:
        text = self.text
        for splice in sorted(splices, key=lambda s: (s.start, s.end), reverse=True):
            text = text[: splice.start] + splice.text + text[splice.end :]
        return text


def _lookup(mapping: yaml.MappingNode, name: str) -> tuple[yaml.Node | None, yaml.Node | None]:
    for key, value in mapping.value:
        if isinstance(key, yaml.ScalarNode) and key.value == name:
            return key, value
    return None, None


def _scalar_value(mapping: yaml.MappingNode, name: str) -> str | None:
    _, value = _lookup(mapping, name)
    return value.value if isinstance(value, yaml.ScalarNode) else None


def _is_empty(node: yaml.Node | None) -> bool:
    if isinstance(node, yaml.SequenceNode):
        return not node.value
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _first_quote(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.SequenceNode) and node.value:
        first = node.value[0]
        return first.style if isinstance(first, yaml.ScalarNode) else None
    return None


def _content_end(text: str, node: yaml.Node) -> int:
    """Where the node's own text ends: block collections end at their last value (PyYAML's
    end mark lies at the next token, past comments), block scalars before trailing newlines."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style:
        return _content_end(text, node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return _content_end(text, node.value[-1])
    end = node.end_mark.index
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        while end > node.start_mark.index and text[end - 1] in " \t\r\n":
            end -= 1
    return end


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """The start of the line after the one `index` is on (or the end of the text)."""
    newline = text.find("\n", index)
    return len(text) if newline < 0 else newline + 1


def _column(text: str, index: int) -> int:
    return index - _line_start(text, index)


def _dash_before(text: str, index: int) -> int | None:
    """The position of the '-' that introduces a block sequence item starting at `index`."""
    i = index - 1
    while i >= 0 and text[i] in " \t\r\n":
        i -= 1
    return i if i >= 0 and text[i] == "-" else None


def _scalar(value: object, quote: str | None = None) -> str:
    """A scalar as YAML text: plain when it reads back as itself, else double-quoted."""
    is_date = isinstance(value, dt.date)
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    if quote == "'":
        return "'" + text.replace("'", "''") + "'"
    if quote != '"' and _PLAIN.match(text):
        tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))
        if tag == "tag:yaml.org,2002:str" or (is_date and tag == "tag:yaml.org,2002:timestamp"):
            return text
    return json.dumps(text, ensure_ascii=False)


def _flow_list(values: list[str], quote: str | None = None) -> str:
    return "[" + ", ".join(_scalar(v, quote) for v in values) + "]"


def _flow_mapping(values: dict[str, object], order: Sequence[str] = KEY_ORDER) -> str:
    keys = [k for k in order if k in values]
    parts = [
        f"{k}: {_flow_list(values[k]) if isinstance(values[k], list) else _scalar(values[k])}"
        for k in keys
    ]
    return "{" + ", ".join(parts) + "}"
