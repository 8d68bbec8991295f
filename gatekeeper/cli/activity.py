"""`gatekeeper activity`: the business unit's report of what company IDs did (gatekeeper.activity):
account creations, groups and pages created and joined, friend, follow and connection requests,
and refused app authorizations, per employee and service, with times. Changes nothing."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Mapping
from typing import Any

from gatekeeper.activity import CATEGORIES, activity_report
from gatekeeper.cli.approver import (
    REVIEW_DAYS,
    _date,
    _open_state,
    _parser,
    _print_json,
    _table,
)
from gatekeeper.directory.store import office_policy
from gatekeeper.statedb import RECORDED


def add_activity(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub, "activity", "report what company IDs did on each service",
        "Per employee and service: accounts created, groups and pages created and joined, "
        "friend, follow and connection requests, and refused app authorizations, each with "
        "its time (UTC) and what it was about (the group or profile id as the site names it; "
        "a masked address for an account creation). Message contents are never recorded. "
        "Changes nothing.",
        run_activity,
    )
    p.add_argument("--since", type=_date, metavar="YYYY-MM-DD",
                   help=f"first day (UTC) of the activity shown (default: {REVIEW_DAYS} days "
                   "ago)")
    p.add_argument("--employee", metavar="EMPLOYEE", help="only this employee id")
    p.add_argument("--service", metavar="SERVICE", help="only this service id")
    p.add_argument("--json", action="store_true", help="print a JSON object")


def run_activity(args: argparse.Namespace) -> int:
    policy = office_policy(args.config_dir, args.state_dir)
    today = dt.date.today()
    since = args.since or today - dt.timedelta(days=REVIEW_DAYS)
    with _open_state(args) as db:
        events = db.activity(dt.datetime.combine(since, dt.time(), dt.UTC),
                             employee=args.employee, service=args.service)
    report = activity_report(events, policy.employees, since, today,
                             policy.event_retention_days)
    if args.json:
        _print_json(report)
    else:
        sys.stdout.write(format_activity_text(report))
    return 0


def format_activity_text(report: Mapping[str, Any]) -> str:
    """A table of counts per employee and service, then each one's events with their times
    (UTC), so that a moderator can look at the group or contact named."""
    lines = [f"Activity of company IDs from {report['since']} to {report['today']} (events are "
             f"kept {report['retention_days']} days)"]
    if not report["activity"]:
        return "\n".join([*lines, "", "no activity recorded"]) + "\n"
    table = [("EMPLOYEE", "SERVICE", *(heading for _, heading in CATEGORIES))]
    table += [
        (row["employee"], row["service"], *(str(row["counts"][key]) for key, _ in CATEGORIES))
        for row in report["activity"]
    ]
    lines += ["", _table(table)]
    for row in report["activity"]:
        who = row["employee"] + (f" ({row['employee_name']})" if row["employee_name"] else "")
        lines += ["", f"{who} on {row['service']}:"]
        lines += [f"  {_event_line(event)}" for event in row["events"]]
    return "\n".join(lines) + "\n"


def _event_line(event: Mapping[str, Any]) -> str:
    at = dt.datetime.fromisoformat(event["at"]).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
    outcome = "" if event["outcome"] == RECORDED else f" ({event['outcome']})"
    target = f"  {event['target']}" if event["target"] else ""
    return f"{at}Z  {event['action']}{outcome}{target}"
