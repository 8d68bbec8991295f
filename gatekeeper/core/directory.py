"""Employees from the office directory, merged into a `Policy` (pure: no I/O, no LDAP).

The directory adapter (`gatekeeper.directory`) reads a `DirectoryList` from LDAP or Active
Directory; `compose` merges it with the policy built from the files. People in the employee
group whose e-mail is in a company domain become employees without an `approvals.yaml` entry;
entries there still work and win on conflict. A grant naming someone who is in neither is a
leaver's grant: it stays in the file, grants nothing (nobody is identified as them) and
`leaver_grants` lists it for the review.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gatekeeper.core.identifiers import normalize_user
from gatekeeper.core.model import Employee, Grant, Policy

# What an employee id may look like (as in approvals.yaml, but ids from the directory are
# case-folded: sign-in to a directory is case-insensitive).
DIRECTORY_ID = re.compile(r"\A[a-z0-9][a-z0-9._@+-]{0,127}\Z")


@dataclass(frozen=True, slots=True)
class Person:
    """One account of the employee group, as the directory describes it."""

    id: str  # the employee id attribute (sAMAccountName, uid), case-folded
    email: str  # lower-case
    display_name: str
    dn: str  # what the sign-in binds as


@dataclass(frozen=True, slots=True)
class DirectoryList:
    """Everyone the directory counts as an employee at one moment."""

    people: Mapping[str, Person]  # id -> person
    realms: frozenset[str]  # case-folded `DOMAIN` of `DOMAIN\\user` and `realm` of `user@realm`
    fetched_at: float  # Unix time of the search


@dataclass(frozen=True, slots=True)
class Composition:
    """The merged policy and what was left out of it, for the log and `gatekeeper check`."""

    policy: Policy
    skipped: tuple[tuple[str, str], ...]  # (directory id, why)


def compose(policy: Policy, directory: DirectoryList) -> Composition:
    """`policy` with the directory's employees added (the file's entries win)."""
    realms = directory.realms | {d.casefold() for d in policy.company_domains}
    employees: dict[str, Employee] = {}
    file_ids = {normalize_user(e, realms): e for e in policy.employees}
    owners = dict(policy.accounts)
    skipped: list[tuple[str, str]] = []
    for employee in policy.employees.values():
        person = directory.people.get(normalize_user(employee.id, realms))
        name = person.display_name if person else ""
        employees[employee.id] = dataclasses.replace(employee, display_name=name)
    for person in directory.people.values():
        why = _unusable(person, policy, file_ids, owners)
        if why:
            if person.id not in file_ids:
                skipped.append((person.id, why))
            continue
        employees[person.id] = Employee(person.id, person.email, (), person.display_name)
        owners[person.email] = person.id
    user_ids = {normalize_user(e, realms): e for e in employees}
    user_ids.update((key, e) for key, e in file_ids.items())  # the file wins
    grants = {key: _with_default_account(g, employees)
              for key, g in _resolve_grants(policy.grants, employees, user_ids, realms).items()}
    for grant in grants.values():
        if grant.employee in employees and grant.employee not in policy.employees:
            for account in grant.accounts:
                owners.setdefault(account, grant.employee)
    merged = dataclasses.replace(
        policy,
        employees=MappingProxyType(employees),
        grants=MappingProxyType(grants),
        accounts=MappingProxyType(owners),
        user_ids=MappingProxyType(user_ids),
        realms=frozenset(realms),
    )
    return Composition(merged, tuple(sorted(skipped)))


def _unusable(
    person: Person, policy: Policy, file_ids: Mapping[str, str], owners: Mapping[str, str]
) -> str:
    """Why a directory account is not made an employee ("" when it is)."""
    if person.id in file_ids:
        return "in approvals.yaml"
    if not DIRECTORY_ID.match(person.id):
        return "its id is not a valid employee id"
    domain = person.email.rpartition("@")[2]
    if not person.email or domain not in policy.company_domains:
        return "no e-mail in a company domain"
    owner = owners.get(person.email)
    if owner is not None:
        return f"its e-mail belongs to employee {owner!r} in approvals.yaml"
    return ""


def _resolve_grants(
    grants: Mapping[tuple[str, str], Grant], employees: Mapping[str, Employee],
    user_ids: Mapping[str, str], realms: frozenset[str],
) -> dict[tuple[str, str], Grant]:
    """Grants that spell an employee as a sign-in name (`CLINIC\\erin`, `erin@clinic.local`,
    `Erin`) are the employee's, when the name's domain is one of the office's realms and no
    other grant of that employee and service exists (then the spelling is ambiguous and the
    grant stays a leaver's grant, granting nothing)."""
    resolved = {key: g for key, g in grants.items() if g.employee in employees}
    spelled: dict[tuple[str, str], list[Grant]] = {}
    for (employee, service), grant in grants.items():
        if employee not in employees:
            owner = user_ids.get(normalize_user(employee, realms))
            spelled.setdefault((owner or "", service), []).append(grant)
    for (owner, service), found in spelled.items():
        if owner and len(found) == 1 and (owner, service) not in resolved:
            resolved[(owner, service)] = dataclasses.replace(found[0], employee=owner)
            continue
        for grant in found:  # unknown or ambiguous: a leaver's grant, granting nothing
            resolved[(grant.employee, service)] = grant
    return resolved


def _with_default_account(grant: Grant, employees: Mapping[str, Employee]) -> Grant:
    """A grant without `accounts:` for someone the file does not list signs in with the
    e-mail the directory gives."""
    if grant.accounts or grant.employee not in employees:
        return grant
    return dataclasses.replace(grant, accounts=frozenset({employees[grant.employee].email}))


def leaver_grants(policy: Policy) -> list[Grant]:
    """Grants of people who are no longer employees (left the directory's employee group)."""
    return [g for key, g in sorted(policy.grants.items()) if g.employee not in policy.employees]
