"""Edit `approvals.yaml` the way a careful person would: `grant` and `revoke`, `add_employee`
and `remove_employee`.

Only the bytes of the grant or employee concerned change (`gatekeeper.approvals_splice`).

An edit is refused, with the file untouched, when:
- the employee or service is unknown, the expiry is not after today, or there is no grant to
  revoke; an employee to add exists already, one to remove holds grants (unless they go
  too) or is not in the file (`EditError`);
- the resulting file does not load (`InvalidResultError`, with the loader's problems);
- the file changed since it was read (`ConcurrentEditError`): someone saved it in an editor,
  for example. gatekeeper commands also lock the file against each other while editing.

The write is atomic and locked (`gatekeeper.lockedfile`). The running proxy picks the
change up through its live reload.

`approve REQUEST_ID` is `grant(...)` for the request's employee and service, followed by
`StateDB.decide_request(..., "approved", ...)`; `deny` only touches the state database.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gatekeeper.approvals_splice import ApprovalsDocument, EditError
from gatekeeper.config.loader import APPROVALS_FILE
from gatekeeper.config.yamlsrc import ConfigError, Problem
from gatekeeper.core.model import Grant, Policy
from gatekeeper.directory.store import office_policy
from gatekeeper.lockedfile import (
    FileChangedError,
    LockedFileError,
    locked_snapshot,
    replace_unless_changed,
)

LOCK_WAIT_SECONDS = 10.0


class InvalidResultError(EditError):
    """The edited file would not load; `problems` says why (lines refer to the edited text)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(
            "refused: approvals.yaml would be invalid after this change:\n"
            + "\n".join(str(p) for p in problems)
        )
        self.problems = problems


class ConcurrentEditError(EditError):
    """The file changed between reading and writing it; nothing was written."""


@contextmanager
def _refusals() -> Iterator[None]:
    """The locked file's refusals as edit refusals (the message says what happened)."""
    try:
        yield
    except FileChangedError as e:
        raise ConcurrentEditError(str(e)) from e
    except LockedFileError as e:
        raise EditError(str(e)) from e


@dataclass(frozen=True, slots=True)
class EditResult:
    action: str  # "added", "updated" or "revoked"
    employee: str
    service: str
    path: Path
    grant: Grant | None  # the grant as the new file defines it; None after a revoke


@dataclass(frozen=True, slots=True)
class EmployeeEditResult:
    action: str  # "added" or "removed"
    employee: str
    path: Path
    email: str  # the employee's e-mail address (before the removal, for a removal)
    revoked: tuple[str, ...] = ()  # services whose grants were removed with the employee


BeforeReplace = Callable[[], None] | None


def grant(
    config_dir: Path,
    employee: str,
    service: str,
    *,
    expires: dt.date | None = None,
    accounts: Sequence[str] | None = None,
    today: dt.date | None = None,
    before_replace: BeforeReplace = None,
    state_dir: Path | None = None,
) -> EditResult:
    """Grant `employee` access to `service`, approved by the file's approver today.

    An existing grant is updated in place: `approved_by`, `approved_on` and `expires` are
    set (`expires=None` removes an expiry: the decision made now has none); `accounts`
    replaces the grant's accounts when given and is left as it is when None (a new grant
    then defaults to the employee's e-mail). `before_replace` runs just before the file is
    checked for concurrent changes and replaced (tests use it to make one). With an office
    directory, its employees (the last list the proxy saved in `state_dir`) can be granted.
    """
    today = today or dt.date.today()
    if expires is not None and expires <= today:
        raise EditError(f"the expiry {expires} is not in the future (today is {today})")
    account_list = _accounts(accounts) if accounts is not None else None

    def change(doc: ApprovalsDocument, policy: Policy) -> tuple[str, str]:
        _known(policy, employee, service)
        values: dict[str, object] = {"approved_by": policy.approver, "approved_on": today}
        if expires is not None:
            values["expires"] = expires
        if account_list is not None:
            values["accounts"] = account_list
        found = doc.find_grant(employee, service)
        if found is None:
            return doc.add_grant({"employee": employee, "service": service, **values}), "added"
        remove = ("expires",) if expires is None else ()
        return doc.update_grant(found, values, remove), "updated"

    return _edit(config_dir, employee, service, change, before_replace, state_dir)


def revoke(
    config_dir: Path, employee: str, service: str, *, before_replace: BeforeReplace = None
) -> EditResult:
    """Remove the grant of `employee` for `service` (the comments around it stay)."""

    def change(doc: ApprovalsDocument, _policy: Policy) -> tuple[str, str]:
        found = doc.find_grant(employee, service)
        if found is None:
            raise EditError(f"there is no grant for employee {employee!r} and service {service!r}")
        return doc.remove_grant(found), "revoked"

    return _edit(config_dir, employee, service, change, before_replace)


def add_employee(
    config_dir: Path,
    employee: str,
    email: str,
    *,
    addresses: Sequence[str] = (),
    before_replace: BeforeReplace = None,
    state_dir: Path | None = None,
) -> EmployeeEditResult:
    """Add `employee` under `employees:` with their company e-mail and, optionally, the
    addresses (IPs or networks) of their own devices. The loader validates the result (id,
    company domain, overlapping addresses)."""
    values: dict[str, object] = {"email": email.strip()}
    if addresses:
        values["addresses"] = [a.strip() for a in addresses]

    def change(doc: ApprovalsDocument, _policy: Policy) -> tuple[str, str]:
        if employee in doc.employee_ids():
            raise EditError(f"employee {employee!r} is already in approvals.yaml")
        return doc.add_employee(employee, values), "added"

    policy, path, action = _transaction(config_dir, change, before_replace, state_dir)
    return EmployeeEditResult(action, employee, path, policy.employees[employee].email)


def remove_employee(
    config_dir: Path,
    employee: str,
    *,
    force: bool = False,
    before_replace: BeforeReplace = None,
    state_dir: Path | None = None,
) -> EmployeeEditResult:
    """Remove `employee` from `employees:`. While they hold grants this is refused, naming
    them; with `force` their grants are removed in the same edit."""
    before: list[Policy] = []  # the policy the change was made to (for the e-mail)
    revoked: list[str] = []

    def change(doc: ApprovalsDocument, policy: Policy) -> tuple[str, str]:
        if employee not in doc.employee_ids():
            raise EditError(
                f"employee {employee!r} is not under 'employees:' in approvals.yaml"
                + (" (people of the office directory leave through its group)"
                   if employee in policy.employees else "")
            )
        grants = doc.grants_of(employee)
        if grants and not force:
            raise EditError(
                f"employee {employee!r} holds grants for {', '.join(grants)}: revoke them "
                "first, or remove the employee with --force to remove the grants too"
            )
        before.append(policy)
        revoked.extend(grants)
        return doc.remove_employee(employee, list(grants.values())), "removed"

    _, path, action = _transaction(config_dir, change, before_replace, state_dir)
    email = before[0].employees[employee].email
    return EmployeeEditResult(action, employee, path, email, tuple(revoked))


def _known(policy: Policy, employee: str, service: str) -> None:
    if employee not in policy.employees:
        raise EditError(
            f"unknown employee {employee!r}: add them under 'employees:' in approvals.yaml "
            "first (or, with an office directory, to its employee group)"
        )
    if service not in policy.services:
        known = ", ".join(sorted(policy.services))
        raise EditError(f"unknown service {service!r} (services.yaml has: {known})")


def _accounts(accounts: Sequence[str]) -> list[str]:
    result: list[str] = []
    for account in accounts:
        cleaned = account.strip() if isinstance(account, str) else ""
        if not cleaned:
            raise EditError("an account must be a non-empty string")
        if cleaned not in result:
            result.append(cleaned)
    if not result:
        raise EditError("a grant needs at least one account (or none given: the e-mail)")
    return result


# --- the edit transaction -------------------------------------------------------------------


Change = Callable[[ApprovalsDocument, Policy], tuple[str, str]]


def _edit(
    config_dir: Path,
    employee: str,
    service: str,
    change: Change,
    before_replace: BeforeReplace,
    state_dir: Path | None = None,
) -> EditResult:
    new_policy, path, action = _transaction(config_dir, change, before_replace, state_dir)
    return EditResult(action, employee, service, path, new_policy.grants.get((employee, service)))


def _transaction(
    config_dir: Path, change: Change, before_replace: BeforeReplace, state_dir: Path | None
) -> tuple[Policy, Path, str]:
    """Read under the lock, change, validate and atomically replace the file: the new policy,
    the file's path and what `change` says it did."""
    config_dir = Path(config_dir)
    path = Path(os.path.realpath(config_dir / APPROVALS_FILE))  # edit a symlink's target
    with _refusals(), locked_snapshot(path, LOCK_WAIT_SECONDS) as snapshot:
        try:
            text = snapshot.data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise EditError(f"{path} is not UTF-8 text: {e}") from e
        policy = office_policy(config_dir, state_dir, {APPROVALS_FILE: text})  # ConfigError
        new_text, action = change(ApprovalsDocument(text), policy)
        try:
            new_policy = office_policy(config_dir, state_dir, {APPROVALS_FILE: new_text})
        except ConfigError as e:
            raise InvalidResultError(e.problems) from e
        if before_replace is not None:
            before_replace()
        replace_unless_changed(path, new_text.encode("utf-8"), snapshot)
    return new_policy, path, action


