"""The values the state database stores and returns: access requests, acknowledgements,
session bindings, review events and notifications, and the checks on what a person typed."""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Any

MAX_JUSTIFICATION = 500
PRIORITY_REASONS = ("personal_account", "account_mismatch")  # listed first in the review
PENDING, APPROVED, DENIED, WITHDRAWN = "pending", "approved", "denied", "withdrawn"
DECISIONS = (APPROVED, DENIED, WITHDRAWN)
# The outbox channel of the message telling an employee of the decision on their request.
EMPLOYEE_CHANNEL = "employee"
# Request ids are typed by a person: Crockford's base32 (no i, l, o, u), 8 characters.
ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
ID_LENGTH = 8
_ID_TYPOS = str.maketrans({"i": "1", "l": "1", "o": "0", "-": None, " ": None})


@dataclass(frozen=True, slots=True)
class AccessRequest:
    id: str
    employee: str
    service: str
    justification: str
    created: dt.datetime
    updated: dt.datetime  # last submitted or updated by the employee (not by the decision)
    status: str
    decided_by: str | None = None
    decided_on: dt.datetime | None = None
    decision_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The object `gatekeeper requests --json` prints."""
        return {
            "id": self.id,
            "employee": self.employee,
            "service": self.service,
            "justification": self.justification,
            "created": iso(self.created),
            "updated": iso(self.updated),
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_on": iso(self.decided_on),
            "decision_reason": self.decision_reason,
        }


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    employee: str
    service: str
    terms_url: str
    acknowledged_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "employee": self.employee,
            "service": self.service,
            "terms_url": self.terms_url,
            "acknowledged_at": iso(self.acknowledged_at),
        }


@dataclass(frozen=True, slots=True)
class Binding:
    """A session cookie value (as its keyed hash) bound to the employee who signed in."""

    service: str
    digest: bytes
    employee: str
    bound_at: dt.datetime


@dataclass(frozen=True, slots=True)
class BlockedAttempt:
    """A blocked request; `employee` is None when the proxy could not tell who it was."""

    employee: str | None
    service: str
    reason: str
    at: dt.datetime


RECORDED, REFUSED, REPORTED, UNREADABLE = "recorded", "refused", "reported", "unreadable"
ACCOUNT_CREATED = "account_created"  # the action of a checked company sign-up


@dataclass(frozen=True, slots=True)
class AuditedAction:
    """An activity of a company ID: an audited action, an account creation, or a prohibited
    action or sign-up that was refused. `target` is what it was about as the site names it
    (a group or profile id; a masked address for an account creation), never a body."""

    employee: str
    service: str
    action: str
    at: dt.datetime
    target: str | None = None
    outcome: str = RECORDED  # RECORDED, REFUSED, REPORTED (report mode) or UNREADABLE

    def to_json(self) -> dict[str, Any]:
        return {
            "employee": self.employee,
            "service": self.service,
            "action": self.action,
            "at": iso(self.at),
            "target": self.target,
            "outcome": self.outcome,
        }


@dataclass(frozen=True, slots=True)
class GrantUse:
    """An allowed request under a grant: only the latest per (employee, service) is kept."""

    employee: str
    service: str
    at: dt.datetime


Event = BlockedAttempt | AuditedAction | GrantUse


@dataclass(frozen=True, slots=True)
class BlockedSummary:
    """Blocked attempts of one employee on one service for one reason, over a period."""

    employee: str | None
    service: str
    reason: str
    count: int
    first_at: dt.datetime
    last_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "employee": self.employee,
            "service": self.service,
            "reason": self.reason,
            "count": self.count,
            "first_at": iso(self.first_at),
            "last_at": iso(self.last_at),
        }


@dataclass(frozen=True, slots=True)
class Notification:
    """One message in the outbox until it is sent: to the approver about a new request, to the
    employee about its decision, or to IT (`request_id` None)."""

    id: int
    request_id: str | None
    channel: str
    payload: str  # JSON text, built by the notifier
    created: dt.datetime
    attempts: int
    next_attempt: dt.datetime
    sent_at: dt.datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class ReviewData:
    """What `gatekeeper review` needs from the database; `gatekeeper.review` adds the policy."""

    since: dt.datetime
    pending: tuple[AccessRequest, ...]
    decided: tuple[AccessRequest, ...]  # decided since `since`
    blocked: tuple[BlockedSummary, ...]  # per UTC day from since's day; priority reasons first
    audited: tuple[AuditedAction, ...]  # since `since`, oldest first
    acknowledgements: tuple[Acknowledgement, ...]
    last_use: dict[tuple[str, str], dt.datetime]  # (employee, service) -> last allowed request
    undelivered_notifications: int


# --- the database ---------------------------------------------------------------------------


def normalize_request_id(text: str) -> str:
    """What a person typed as a request id, in the stored form (lowercase, typos forgiven)."""
    return text.strip().lower().translate(_ID_TYPOS)


def clean_justification(text: str) -> str:
    """One line of printable text (it is shown in the approver's terminal), at most 500
    characters; raises ValueError when empty or too long."""
    cleaned = clean_line(text)
    if not cleaned:
        raise ValueError("the justification is empty: say why you need access")
    if len(cleaned) > MAX_JUSTIFICATION:
        raise ValueError(f"the justification is longer than {MAX_JUSTIFICATION} characters")
    return cleaned


def iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def clean_line(text: str) -> str:
    """Control and format characters (terminal escapes, newlines, bidi overrides) become
    spaces; runs of white space collapse."""
    chars = (" " if unicodedata.category(c).startswith(("C", "Z")) else c for c in text)
    return " ".join("".join(chars).split())
