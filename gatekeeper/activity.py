"""The business unit's activity report: what company IDs did on each service, per employee.

The policy allows company accounts for business use only (item 5: no groups joined or friends
added for personal reasons) and asks the business unit to moderate the groups it creates (item
6). The proxy cannot tell a personal friend from a business contact; it records each account
creation, group or page created or joined, friend, follow or connection request, and each
refused app authorization, so that the person who can tell sees them.

`activity_report` is pure (activity rows from the state database + the policy's people ->
JSON-serializable dict): it backs `gatekeeper activity` (gatekeeper.cli.activity) and the
summary in the monthly review (`summarize`, `summary_lines`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from gatekeeper.core.model import Employee
from gatekeeper.statedb import ACCOUNT_CREATED, RECORDED, REFUSED, REPORTED, AuditedAction

# Report columns, in order: (key, heading). An action the catalog audits that is none of these
# (a rule IT added) is counted under `other`, as are refused sign-ups, other refused actions
# and requests whose body could not be read (`unreadable`).
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("account_creations", "ACCOUNTS CREATED"),
    ("groups_created", "GROUPS/PAGES CREATED"),
    ("groups_joined", "GROUPS JOINED"),
    ("friends_and_connections", "FRIENDS/CONNECTIONS"),
    ("app_authorizations_refused", "APPS REFUSED"),
    ("other", "OTHER"),
)
_RECORDED_CATEGORY: Mapping[str, str] = {
    ACCOUNT_CREATED: "account_creations",
    "group_created": "groups_created",
    "page_created": "groups_created",
    "board_created": "groups_created",
    "group_joined": "groups_joined",
    "friend_request_sent": "friends_and_connections",
    "friend_request_accepted": "friends_and_connections",
    "friend_added": "friends_and_connections",
    "connection_request_sent": "friends_and_connections",
    "connection_accepted": "friends_and_connections",
    "followed": "friends_and_connections",
    "follow_request_approved": "friends_and_connections",
}
APP_AUTHORIZATION = "app_authorization"


def category(event: AuditedAction) -> str:
    """The report column an event counts in."""
    if event.outcome == RECORDED:
        return _RECORDED_CATEGORY.get(event.action, "other")
    if event.action == APP_AUTHORIZATION and event.outcome in (REFUSED, REPORTED):
        return "app_authorizations_refused"
    return "other"


def activity_report(
    events: Iterable[AuditedAction],
    people: Mapping[str, Employee],
    since: dt.date,
    today: dt.date,
    retention_days: int,
) -> dict[str, Any]:
    """Per (employee, service), oldest first within each: the count per category and every
    event with its time, action, target and outcome."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    totals = dict.fromkeys((key for key, _ in CATEGORIES), 0)
    for event in events:
        row = rows.get((event.employee, event.service))
        if row is None:
            person = people.get(event.employee)
            row = rows[(event.employee, event.service)] = {
                "employee": event.employee,
                "employee_name": person.display_name if person else "",
                "service": event.service,
                "counts": dict.fromkeys((key for key, _ in CATEGORIES), 0),
                "events": [],
            }
        kind = category(event)
        row["counts"][kind] += 1
        totals[kind] += 1
        row["events"].append({**event.to_json(), "category": kind})
    return {
        "since": since.isoformat(),
        "today": today.isoformat(),
        "retention_days": retention_days,
        "totals": totals,
        "activity": [rows[key] for key in sorted(rows)],
    }


def summarize(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The counts per (employee, service) without the events: the monthly review's part."""
    return [{k: row[k] for k in ("employee", "service", "counts")} for row in report["activity"]]


def summary_lines(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per (employee, service) for the review: the non-zero counts, in words."""
    words = dict(CATEGORIES)
    return [
        f"{row['employee']} {row['service']}: " + ", ".join(
            f"{words[key].lower()} {count}" for key, count in row["counts"].items() if count)
        for row in rows
    ]
