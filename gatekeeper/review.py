"""The monthly access review: the grants in `approvals.yaml` combined with what the proxy
recorded in the state database.

`review_report` is pure (policy + `ReviewData` + today -> JSON-serializable dict), so the
same report backs `gatekeeper review --json` and the text `format_review_text` prints.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from gatekeeper.activity import activity_report, summarize, summary_lines
from gatekeeper.core.model import Grant, Policy
from gatekeeper.statedb import ReviewData

EXPIRING_WITHIN_DAYS = 30
UNUSED_AFTER_DAYS = 90


def review_report(policy: Policy, data: ReviewData, today: dt.date) -> dict[str, Any]:
    """What the approver and the business unit look at each month.

    A grant is unused when it has not been used for `UNUSED_AFTER_DAYS` days while in force
    (counted from its last use, or from its approval if that is later: a renewal restarts it).
    """
    active: list[dict[str, Any]] = []
    expired: list[dict[str, Any]] = []
    leavers: list[dict[str, Any]] = []
    for key in sorted(policy.grants):
        grant = policy.grants[key]
        entry = _grant_entry(policy, grant, data.last_use.get(key), today)
        if grant.employee not in policy.employees:
            leavers.append(entry)  # only with a directory: someone who left its group
        else:
            (expired if grant.expired(today) else active).append(entry)
    current_terms = {s.id: s.terms_url for s in policy.services.values()}
    return {
        "today": today.isoformat(),
        "since": data.since.date().isoformat(),
        "grants": active,
        "expiring_soon": [
            g for g in active
            if g["days_left"] is not None and g["days_left"] <= EXPIRING_WITHIN_DAYS
        ],
        "unused": [g for g in active if g["unused_days"] >= UNUSED_AFTER_DAYS],
        "expired_grants": expired,
        "leaver_grants": leavers,
        "pending_requests": [
            {**r.to_json(), "age_days": (today - r.created.date()).days} for r in data.pending
        ],
        "decided_requests": [r.to_json() for r in data.decided],
        "blocked_attempts": [b.to_json() for b in data.blocked],
        "audited_actions": [a.to_json() for a in data.audited],
        "acknowledgements": [
            {**a.to_json(), "current": current_terms.get(a.service) == a.terms_url}
            for a in data.acknowledgements
        ],
        "undelivered_notifications": data.undelivered_notifications,
        # The activity of company IDs (`gatekeeper activity` lists each event), and how long
        # the proxy keeps events (approvals.yaml `event_retention_days`).
        "activity": summarize(activity_report(data.audited, policy.employees,
                                              data.since.date(), today,
                                              policy.event_retention_days)),
        "retention_days": policy.event_retention_days,
    }


def _grant_entry(
    policy: Policy, grant: Grant, last_use: dt.datetime | None, today: dt.date
) -> dict[str, Any]:
    idle_since = max(grant.approved_on, last_use.date()) if last_use else grant.approved_on
    person = policy.employees.get(grant.employee)
    return {
        "employee": grant.employee,
        "employee_name": person.display_name if person else "",
        "employee_email": person.email if person else "",
        "service": grant.service,
        "accounts": sorted(grant.accounts),
        "approved_by": grant.approved_by,
        "approved_on": grant.approved_on.isoformat(),
        "expires": grant.expires.isoformat() if grant.expires else None,
        "days_left": (grant.expires - today).days if grant.expires else None,
        "last_used": last_use.isoformat(timespec="seconds") if last_use else None,
        "unused_days": (today - idle_since).days,
        "terms_required": policy.terms_required(grant),
    }


def format_review_text(report: dict[str, Any]) -> str:
    """The report for a person: one section per question, an explicit "none" when empty."""
    lines = [f"Access review on {report['today']} (events since {report['since']})",
             f"Retention: the proxy deletes blocked attempts and activity older than "
             f"{report['retention_days']} days (approvals.yaml event_retention_days)"]

    def section(title: str, items: list[Any], render: Any) -> None:
        lines.extend(["", f"{title} ({len(items)})"])
        lines.extend(f"  {render(item)}" for item in items)
        if not items:
            lines.append("  none")

    section("Active grants", report["grants"], _grant_line)
    section(
        f"Expiring within {EXPIRING_WITHIN_DAYS} days", report["expiring_soon"],
        lambda g: f"{g['employee']} {g['service']}: expires {g['expires']} "
        f"(in {g['days_left']} days)",
    )
    section(
        f"Unused for {UNUSED_AFTER_DAYS} days or more", report["unused"],
        lambda g: f"{g['employee']} {g['service']}: last used {g['last_used'] or 'never'} "
        f"({g['unused_days']} days idle)",
    )
    section(
        "Expired grants still in approvals.yaml", report["expired_grants"],
        lambda g: f"{g['employee']} {g['service']}: expired {g['expires']}",
    )
    section(
        "Grants of leavers (not employees any more: revoke them)", report["leaver_grants"],
        lambda g: f"{g['employee']} {g['service']}: gatekeeper revoke {g['employee']} "
        f"{g['service']}",
    )
    section(
        "Pending requests", report["pending_requests"],
        lambda r: f"{r['id']}  {r['employee']} {r['service']} ({r['age_days']} days old): "
        f"{r['justification']}",
    )
    section(
        "Decided requests", report["decided_requests"],
        lambda r: f"{r['id']}  {r['employee']} {r['service']}: {r['status']} by "
        f"{r['decided_by']} on {r['decided_on']}"
        + (f" ({r['decision_reason']})" if r["decision_reason"] else ""),
    )
    section(
        "Blocked attempts", report["blocked_attempts"],
        lambda b: f"{b['employee'] or '(unknown)'} {b['service']} {b['reason']}: "
        f"{b['count']} (last {b['last_at']})",
    )
    section(
        "Audited actions", report["audited_actions"],
        lambda a: f"{a['at']}  {a['employee']} {a['service']} {a['action']}",
    )
    section(
        "Activity of company IDs (details: gatekeeper activity)",
        summary_lines(report["activity"]), str,
    )
    section(
        "Terms-of-Use acknowledgements", report["acknowledgements"],
        lambda a: f"{a['acknowledged_at']}  {a['employee']} {a['service']} {a['terms_url']}"
        + ("" if a["current"] else " (terms changed since)"),
    )
    if report["undelivered_notifications"]:
        lines.extend(
            ["", f"Notifications to the approver not yet delivered: "
                 f"{report['undelivered_notifications']}"]
        )
    return "\n".join(lines) + "\n"


def _grant_line(grant: dict[str, Any]) -> str:
    until = f"until {grant['expires']}" if grant["expires"] else "no expiry"
    who = grant["employee"]
    if grant["employee_name"]:
        who += f" ({grant['employee_name']})"
    return (
        f"{who} {grant['service']}: {until}; accounts "
        f"{', '.join(grant['accounts'])}; approved {grant['approved_on']} by "
        f"{grant['approved_by']}; last used {grant['last_used'] or 'never'}"
    )
