"""The approver's changes, the same from the command line and from the console.

Who is approved lives in approvals.yaml only (edited by `gatekeeper.approvals_edit`: byte
preserving, validated, atomic, a concurrent edit refused); the state database holds the
requests and the decisions on them, each with who decided and when. Approving writes the file
first and marks the request afterwards, so a failure in between leaves a grant in force and the
request pending (said loudly; approving again finishes it), never a request marked approved
without a grant.

Each step is its own function because the proxy runs them on different threads (the file edit
in a thread of its own, the database through its state worker); the CLI runs them in turn.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from gatekeeper import approvals_edit
from gatekeeper.approvals_edit import BeforeReplace, EditResult, EmployeeEditResult
from gatekeeper.statedb import APPROVED, DENIED, PENDING, AccessRequest, StateDB


class AlreadyDecidedError(Exception):
    """The request is no longer pending; nothing was changed."""


def local_time(moment: dt.datetime | None) -> str:
    """A stored (UTC) time as the gateway's local `YYYY-MM-DD HH:MM`; "" for none."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else ""


def pending_request(db: StateDB, request_id: str) -> AccessRequest:
    """The request to decide; UnknownRequestError or AlreadyDecidedError when there is none."""
    request = db.get_request(request_id)
    if request.status != PENDING:
        when = local_time(request.decided_on) or "?"
        raise AlreadyDecidedError(
            f"access request {request.id} was already {request.status} by "
            f"{request.decided_by or '?'} on {when}; nothing was changed"
        )
    return request


def pending_for(db: StateDB, employee: str, service: str) -> list[AccessRequest]:
    """The employee's pending requests for the service (at most one)."""
    return [r for r in db.pending_requests() if (r.employee, r.service) == (employee, service)]


def grant(config_dir: Path, state_dir: Path | None, employee: str, service: str, *,
          expires: dt.date | None = None, accounts: Sequence[str] | None = None,
          before_replace: BeforeReplace = None) -> EditResult:
    """Grant (or renew, or extend) in approvals.yaml, approved by the file's approver today;
    `accounts=None` keeps an existing grant's accounts. Raises ConfigError or EditError with
    the file untouched."""
    return approvals_edit.grant(config_dir, employee, service, expires=expires,
                                accounts=accounts, state_dir=state_dir,
                                before_replace=before_replace)


def revoke(config_dir: Path, employee: str, service: str, *,
           before_replace: BeforeReplace = None) -> EditResult:
    """Remove the grant from approvals.yaml (the comments around it stay)."""
    return approvals_edit.revoke(config_dir, employee, service, before_replace=before_replace)


def add_employee(config_dir: Path, state_dir: Path | None, employee: str, email: str, *,
                 addresses: Sequence[str] = (),
                 before_replace: BeforeReplace = None) -> EmployeeEditResult:
    """Add an employee to approvals.yaml (`gatekeeper employee add`); the loader validates the
    id, the company domain and the device addresses."""
    return approvals_edit.add_employee(config_dir, employee, email, addresses=addresses,
                                       state_dir=state_dir, before_replace=before_replace)


def remove_employee(config_dir: Path, state_dir: Path | None, employee: str, *,
                    with_grants: bool = False,
                    before_replace: BeforeReplace = None) -> EmployeeEditResult:
    """Remove an employee from approvals.yaml (`gatekeeper employee remove`): refused while
    they hold grants, naming them, unless `with_grants` (`--force`) removes those too."""
    return approvals_edit.remove_employee(config_dir, employee, force=with_grants,
                                          state_dir=state_dir, before_replace=before_replace)


def mark_approved(db: StateDB, request: AccessRequest, result: EditResult,
                  now: dt.datetime) -> AccessRequest:
    """Mark the request approved once its grant is written, by the grant's approver."""
    assert result.grant is not None  # a grant always leaves one
    return db.decide_request(request.id, APPROVED, result.grant.approved_by, None, now)


def deny(db: StateDB, request_id: str, by: str, reason: str | None,
         now: dt.datetime) -> AccessRequest:
    """Mark a pending request denied by `by`, with the reason the employee will be shown."""
    return db.decide_request(request_id, DENIED, by, reason, now)


def grant_summary(result: EditResult) -> str:
    """`bob may use facebook until 2027-01-31, signing in as bob@clinic.example`."""
    grant = result.grant
    assert grant is not None  # grant() always leaves one
    until = f"until {grant.expires}" if grant.expires else "with no expiry"
    accounts = " or ".join(sorted(grant.accounts))
    return f"{grant.employee} may use {grant.service} {until}, signing in as {accounts}"


def not_marked(request: AccessRequest, result: EditResult, error: Exception) -> str:
    """What to say when the grant is written but the request could not be marked."""
    return (
        f"the grant is written to {result.path} and in force ({grant_summary(result)}), but "
        f"request {request.id} could not be marked approved: {error}\nRun `gatekeeper approve "
        f"{request.id}` to mark it, or `gatekeeper revoke {request.employee} {request.service}` "
        "to withdraw the grant."
    )
