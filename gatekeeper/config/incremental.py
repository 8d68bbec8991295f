"""Reloading a large approvals.yaml by parsing only the entries that changed.

A clinic group's file can list 10,000 employees and 50,000 grants (6 MiB): reading all of it
takes a second or more, while an edit (a grant added, revoked or extended) touches a few
lines. The reloader therefore keeps a `LoadCache`: the text of every employee and grant entry
of the last good load with what it was built into. The next load splits the new text the
same way, reuses the entries whose text is unchanged, parses only the new ones, and redoes the
checks that span entries (duplicates, unknown names, address overlaps, account owners).

The shortcut is taken only when it cannot differ from a full load, and never reports a
problem itself: whenever anything is unusual (the rest of the file or services.yaml changed,
a quote, a flow collection over several lines, an anchor, a tag, a tab, a problem of any
kind) `load_policy` does the full load, which reports every problem with its line, and
refills the cache from it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from gatekeeper.config.loader import (
    APPROVALS_FILE,
    SERVICES_FILE,
    _Builder,
    _overlapping_pairs,
)
from gatekeeper.config.yamlsrc import ConfigError, Node, read_yaml
from gatekeeper.core.model import AddressIndex, Employee, Grant, Policy

# The two sections that grow with the office, as block collections under a top-level key.
_SECTION = re.compile(r"\n(employees|grants)[ ]*:[ ]*(?:#[^\n]*)?(?=\n|\Z)")
_SECTION_ANY_FORM = re.compile(r"\n(?:employees|grants)\b")
# The next top-level key ends a section; a `- ` at the margin does not: PyYAML's default dump
# puts a list's items at its key's column.
_TOP_LEVEL = re.compile(r"\n(?=[^ \n#-]|-[^ \n])")
_FIRST_CONTENT = re.compile(r"\n( *)([^ \n#])")
_COMMENT = re.compile(r"(?:^|[ ])#[^\n]*", re.M)
# What may make a line's meaning depend on lines around it, or is simply rare in this file:
# quotes, flow mappings, anchors, aliases, tags, directives, block scalars, tabs, CR, complex
# keys, document markers, a flow sequence not closed on its line.
_UNUSUAL = re.compile(
    r"[\"'{}&*!%`|>\\\t\r]|^[ -]*\?(?: |$)|^(?:---|\.\.\.)|\[[^\]\n]*$", re.M
)


def _unusual(text: str) -> bool:
    return _UNUSUAL.search(_COMMENT.sub("", text)) is not None


@dataclass(frozen=True)
class _Split:
    """approvals.yaml cut into the entries of its two large sections and everything else."""

    rest: str  # the text outside the entries, with a marker (and indent) where they were
    employees: list[str]  # the text of each `employees:` entry, in file order
    grants: list[str]


def _split(text: str) -> _Split | None:
    """Cut the text at the entries of `employees:` and `grants:`, or None if they are not laid
    out as block collections under their top-level key. (Every pattern starts with a newline,
    which lets the regular expression engine skip ahead: 6 MiB are cut in a few milliseconds.)
    """
    text = "\n" + text
    rest: list[str] = []
    sections: dict[str, list[str]] = {"employees": [], "grants": []}
    position = 0
    for match in _SECTION.finditer(text):
        chunks = sections[match.group(1)]
        if chunks:
            return None  # the section twice
        end_match = _TOP_LEVEL.search(text, match.end())
        body_end = end_match.start() if end_match else len(text)
        first = _FIRST_CONTENT.search(text, match.end(), body_end)
        if first is None:
            continue  # empty section: stays in the rest
        indent = len(first.group(1))
        item = _item_start(indent, is_list=match.group(1) == "grants")
        if not item.match(text, first.start()):
            return None
        rest.append(text[position:first.start() + 1])
        rest.append(f"\0{match.group(1)}:{indent}\0")
        chunks.extend(item.split(text[first.start() + 1:body_end]))  # without their last newline
        position = body_end
    rest.append(text[position:])
    return _Split("".join(rest), sections["employees"], sections["grants"])


@functools.cache
def _item_start(indent: int, *, is_list: bool) -> re.Pattern[str]:
    """The newline before an entry: `- ` at the list's indent, or a key at the mapping's."""
    return re.compile(rf"\n(?= {{{indent}}}-[ \n])" if is_list else rf"\n(?= {{{indent}}}[^ \n#-])")


def _entry_lines(text: str, split: _Split) -> tuple[list[int], list[int]]:
    """The line each employee and grant entry starts on (entries follow each other)."""
    found: list[list[int]] = []
    for chunks in (split.employees, split.grants):
        lines: list[int] = []
        if chunks:
            line = text.count("\n", 0, text.index(chunks[0])) + 1
            for chunk in chunks:
                lines.append(line)
                line += chunk.count("\n") + 1
        found.append(lines)
    return found[0], found[1]


@dataclass(frozen=True)
class _Remembered:
    services_text: str
    rest: str
    policy: Policy
    employee_chunks: list[str]
    employees: dict[str, Employee]  # entry text -> employee
    grants: dict[str, tuple[Grant, str]]  # entry text -> grant, its employee's e-mail then


class LoadCache:
    """What the last good load was built from, entry by entry (one per reloader; loads that
    use it are serialized by the reloader's lock)."""

    def __init__(self) -> None:
        self._last: _Remembered | None = None

    @classmethod
    def shared(cls, config_dir: Path) -> LoadCache:
        """The process's cache for `config_dir`: `serve` checks the files with it before it
        starts, and the reloader's first load then reuses every entry (one directory is
        remembered; another one replaces it)."""
        key = config_dir.absolute()
        cache = _SHARED.get(key)
        if cache is None:
            _SHARED.clear()
            cache = _SHARED[key] = cls()
        return cache

    def remember(self, texts: dict[str, str], approvals_root: Node, policy: Policy) -> None:
        """After a full load: cut the text into entries and pair each with what it built."""
        self._last = None
        text = texts[APPROVALS_FILE]
        split = _split(text)
        if (
            split is None
            or len(_SECTION_ANY_FORM.findall("\n" + text))  # not `grants: []` and the like
            != len(_SECTION.findall("\n" + text))
            or _unusual(text)
            or not _same_entries(text, split, approvals_root, policy)
        ):
            return
        emails = {e.id: e.email for e in policy.employees.values()}
        if any(g.employee not in emails for g in policy.grants.values()):
            return  # grants of the office directory's people: their checks need the directory
        self._last = _Remembered(
            services_text=texts[SERVICES_FILE],
            rest=split.rest,
            policy=policy,
            employee_chunks=split.employees,
            employees=dict(zip(split.employees, policy.employees.values(), strict=True)),
            grants={
                chunk: (grant, emails[grant.employee])
                for chunk, grant in zip(split.grants, policy.grants.values(), strict=True)
            },
        )

    def reuse(self, config_dir: Path, texts: dict[str, str], sha256: str) -> Policy | None:
        """The policy for `texts` built from the remembered entries, or None (load in full)."""
        last = self._last
        if last is None or texts[SERVICES_FILE] != last.services_text:
            return None
        split = _split(texts[APPROVALS_FILE])
        if split is None or split.rest != last.rest:
            return None
        builder = _EntryBuilder(config_dir, last.policy)
        employees: dict[str, Employee] = {}
        employee_memo: dict[str, Employee] = {}
        for chunk in split.employees:
            employee = last.employees.get(chunk) or builder.employee(chunk)
            if employee is None or employee.id in employees:
                return None
            employees[employee.id] = employee_memo[chunk] = employee
        same_employees = split.employees == last.employee_chunks
        entries = list(map(last.grants.get, split.grants))
        # An entry from the last load stays valid while its employee (and e-mail, the default
        # account) does; the rest of both files, services included, is unchanged.
        if not same_employees:
            to_build: Iterable[int] = range(len(entries))
        elif None in entries:
            to_build = [position for position, entry in enumerate(entries) if entry is None]
        else:
            to_build = ()
        for position in to_build:
            entry = entries[position]
            if entry is not None:
                employee = employees.get(entry[0].employee)
                if employee is not None and employee.email == entry[1]:
                    continue
            entry = builder.grant(split.grants[position], employees)
            if entry is None:
                return None
            entries[position] = entry
        grants = {(grant.employee, grant.service): grant for grant, _ in entries}
        if len(grants) != len(entries):
            return None  # a duplicate grant: the full load says where
        grant_memo = dict(zip(split.grants, entries, strict=True))
        if same_employees:
            addresses = last.policy.addresses
        else:
            claims = [(n, e.id) for e in employees.values() for n in e.addresses]
            if _overlapping_pairs([network for network, _ in claims]):
                return None
            addresses = AddressIndex.build(claims)
        accounts = _account_owners(employees, grants)
        if accounts is None:
            return None
        policy = dataclasses.replace(
            last.policy,
            employees=MappingProxyType(employees),
            grants=MappingProxyType(grants),
            addresses=addresses,
            accounts=MappingProxyType(accounts),
            sha256=sha256,
        )
        self._last = dataclasses.replace(
            last, policy=policy, employee_chunks=split.employees, employees=employee_memo,
            grants=grant_memo,
        )
        return policy


_SHARED: dict[Path, LoadCache] = {}  # at most one directory


def _same_entries(text: str, split: _Split, root: Node, policy: Policy) -> bool:
    """Whether the cut found exactly the entries the full load read, line for line. (A later
    load compares the text outside the entries with this one's, so the layout holds then.)"""
    if len(split.employees) != len(policy.employees) or len(split.grants) != len(policy.grants):
        return False
    split_employee_lines, split_grant_lines = _entry_lines(text, split)
    employees = root.get("employees")
    employee_lines = list(employees.key_lines.values()) if employees and employees.key_lines else []
    grants = root.get("grants")
    grant_lines = [item.line for item in grants.value] if grants and grants.kind == "seq" else []
    return employee_lines == split_employee_lines and grant_lines == split_grant_lines


def _account_owners(
    employees: dict[str, Employee], grants: dict[tuple[str, str], Grant]
) -> dict[str, str] | None:
    """Company account -> employee, or None when two employees claim one account."""
    owners = {e.email: e.id for e in employees.values() if e.email}
    claim = owners.setdefault
    for grant in grants.values():
        employee = grant.employee
        for account in grant.accounts:
            if claim(account, employee) != employee:
                return None
    return owners


class _EntryBuilder:
    """Builds one new entry with the full loader's own checks, in the last policy's context
    (approver, company domains, services: the rest of the files is unchanged)."""

    def __init__(self, config_dir: Path, policy: Policy) -> None:
        self.config_dir = config_dir
        self.policy = policy
        self._known: dict[str, tuple[Employee, Node]] | None = None

    def _parse(self, chunk: str) -> tuple[_Builder, Node] | None:
        if _unusual(chunk):
            return None
        indent = len(chunk) - len(chunk.lstrip(" "))
        for later in chunk.split("\n")[1:]:  # continuation lines belong to the entry
            stripped = later.lstrip(" ")
            if stripped and not stripped.startswith("#") and len(later) - len(stripped) <= indent:
                return None
        try:
            node = read_yaml(self.config_dir / APPROVALS_FILE, chunk)
        except ConfigError:
            return None
        return _Builder(self.config_dir), node

    def employee(self, chunk: str) -> Employee | None:
        parsed = self._parse(chunk)
        if parsed is None or parsed[1].kind != "map" or len(parsed[1].value) != 1:
            return None
        builder, node = parsed
        built = builder._employees(node, self.policy.company_domains)
        if builder.problems or len(built) != 1:
            return None
        return next(iter(built.values()))[0]

    def grant(self, chunk: str, employees: dict[str, Employee]) -> tuple[Grant, str] | None:
        parsed = self._parse(chunk)
        if parsed is None or parsed[1].kind != "seq" or len(parsed[1].value) != 1:
            return None
        builder, node = parsed
        policy = self.policy
        if self._known is None:  # the same employees for every new grant of one load
            self._known = {e.id: (e, node) for e in employees.values()}
        built = builder._grants(
            node, policy.approver, self._known, dict(policy.services), policy.company_domains
        )
        if builder.problems or len(built) != 1:
            return None
        grant = next(iter(built.values()))
        return grant, employees[grant.employee].email
