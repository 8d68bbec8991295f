"""The approver's commands (`gatekeeper requests|approve|deny|grant|revoke|acknowledgements|
review`): list, approve and deny access requests, grant and revoke without a
request, list Terms-of-Use acknowledgements and print the access review.

The changes themselves are `gatekeeper.approving`'s, shared with the approver's console: this
module parses the options and prints. `approve` writes approvals.yaml first and marks the
request afterwards, so a failure in between leaves a grant in force and the request pending
(said loudly; running the command again finishes it), never a request marked approved without a
grant.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

from gatekeeper import approving, notify
from gatekeeper.approvals_edit import EditError, EditResult
from gatekeeper.approving import AlreadyDecidedError, grant_summary, local_time
from gatekeeper.cli.common import CommandHandler, config_dir_arg, print_problems, state_dir_arg
from gatekeeper.config.loader import load_policy
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.console.password import set_password
from gatekeeper.core.model import Employee, Policy
from gatekeeper.directory.store import office_policy
from gatekeeper.review import format_review_text, review_report
from gatekeeper.statedb import DB_FILE, PENDING, AccessRequest, StateDB, StateError

RELOAD_NOTE = "the running proxy picks this up within a second"
REVIEW_DAYS = 30


class CommandError(Exception):
    """A refusal of this module's own (the others come from the state and edit modules)."""


# --- shared plumbing --------------------------------------------------------------------------


def _parser(sub: argparse._SubParsersAction, name: str, summary: str, description: str,
            run: CommandHandler) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=description)
    config_dir_arg(p)
    state_dir_arg(p)
    p.set_defaults(handler=_reporting(run))
    return p


def _reporting(run: CommandHandler) -> CommandHandler:
    """Every refusal becomes a message on stderr and exit status 1, never a traceback."""

    def handle(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (ConfigError, EditError, StateError, sqlite3.Error, CommandError,
                AlreadyDecidedError) as e:
            _report(args, e)
            return 1

    return handle


def _report(args: argparse.Namespace, error: Exception) -> None:
    if isinstance(error, ConfigError):
        print(f"gatekeeper {args.command}: the configuration is invalid, so nothing was changed; "
              "fix these problems first (`gatekeeper check` lists them too):", file=sys.stderr)
        print_problems(error)
    else:
        print(f"gatekeeper {args.command}: {error}", file=sys.stderr)


def _open_state(args: argparse.Namespace) -> StateDB:
    """The proxy's state database; a missing one is an error (most likely a wrong
    --state-dir), not a reason to create an empty one."""
    path = args.state_dir / DB_FILE
    if args.state_dir.is_dir() and not os.access(args.state_dir, os.R_OK | os.X_OK):
        raise CommandError(f"{args.state_dir} cannot be read as this user: run the command "
                           "as root (sudo) or as the proxy's user")
    if not path.exists():
        raise CommandError(
            f"no state database at {path}: pass the proxy's --state-dir "
            "(or set GATEKEEPER_STATE_DIR)"
        )
    return StateDB(args.state_dir)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _grant_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--expires", type=_date, metavar="YYYY-MM-DD",
                   help="the first day the grant no longer applies (must be in the future); "
                   "without it the grant has no expiry, and an existing expiry is removed")
    p.add_argument("--account", dest="accounts", action="extend", nargs="+", metavar="ID",
                   help="the company account(s) the employee may sign in with (repeatable); "
                   "default: an existing grant's accounts, or the employee's e-mail")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _table(rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned on their widest cell; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _people(args: argparse.Namespace) -> dict[str, Employee]:
    """The employees by id, with the directory's names, for showing who is who (empty when
    the configuration does not load: listing still works)."""
    try:
        return dict(office_policy(args.config_dir, args.state_dir).employees)
    except ConfigError:
        return {}


def _person(employee: Employee | None) -> dict[str, str]:
    return {
        "employee_name": employee.display_name if employee else "",
        "employee_email": employee.email if employee else "",
    }


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _mark_approved(args: argparse.Namespace, db: StateDB, request: AccessRequest,
                   result: EditResult) -> bool:
    """Mark the request approved after its grant was written; False (said on stderr) when
    the database refuses: the grant is in force all the same."""
    try:
        approving.mark_approved(db, request, result, _now())
    except (StateError, sqlite3.Error) as e:
        print(f"gatekeeper {args.command}: {approving.not_marked(request, result, e)}",
              file=sys.stderr)
        return False
    return True


# --- requests ---------------------------------------------------------------------------------


def add_requests(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub, "requests", "list access requests",
        "List the employees' access requests, oldest first: pending ones only unless --all, "
        "each with the command that approves it. Changes nothing.",
        run_requests,
    )
    p.add_argument("--all", action="store_true",
                   help="also list approved, denied and withdrawn requests")
    p.add_argument("--json", action="store_true", help="print a JSON array of objects")


def run_requests(args: argparse.Namespace) -> int:
    with _open_state(args) as db:
        found = db.all_requests() if args.all else db.pending_requests()
    people = _people(args)
    if args.json:
        _print_json([{**r.to_json(), **_person(people.get(r.employee))} for r in found])
        return 0
    if not found:
        print("no access requests" if args.all else "no pending access requests")
        return 0
    names = {r.employee: _name(people.get(r.employee)) for r in found}
    named = any(names.values())  # the NAME column only when someone has one (a directory)
    rows = [("ID", "EMPLOYEE", *(("NAME",) if named else ()), "SERVICE", "CREATED", "STATUS",
             "TO APPROVE", "JUSTIFICATION")]
    rows += [
        (
            r.id, r.employee, *((names[r.employee],) if named else ()), r.service,
            local_time(r.created), r.status,
            f"gatekeeper approve {r.id}" if r.status == PENDING else "",
            r.justification,
        )
        for r in found
    ]
    print(_table(rows))
    return 0


def _name(employee: Employee | None) -> str:
    """`Erin Example <erin@clinic.example>` when the directory names the person."""
    if employee is None or not employee.display_name:
        return ""
    return f"{employee.display_name} <{employee.email}>"


# --- approve / deny ---------------------------------------------------------------------------


def add_approve(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub, "approve", "approve an access request",
        "Approve a pending access request: grant its employee the service in approvals.yaml "
        "(approved by the file's approver, today; comments and formatting are kept), then "
        "mark the request approved in the state database. The running proxy picks the grant "
        "up through its live reload. If approvals.yaml cannot be changed, the request stays "
        "pending.",
        run_approve,
    )
    p.add_argument("request_id", metavar="REQUEST_ID", help="the id `gatekeeper requests` shows")
    _grant_options(p)


def run_approve(args: argparse.Namespace) -> int:
    with _open_state(args) as db:
        request = approving.pending_request(db, args.request_id)
        try:
            result = approving.grant(
                args.config_dir, args.state_dir, request.employee, request.service,
                expires=args.expires, accounts=args.accounts,
            )
        except (ConfigError, EditError) as e:
            _report(args, e)
            print(f"request {request.id} is still pending", file=sys.stderr)
            return 1
        if not _mark_approved(args, db, request, result):
            return 1
    print(f"approved: {grant_summary(result)} (request {request.id}); {RELOAD_NOTE}")
    return 0


def add_deny(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub, "deny", "deny an access request",
        "Deny a pending access request: mark it denied (by the approver named in "
        "approvals.yaml) in the state database. approvals.yaml is not changed.",
        run_deny,
    )
    p.add_argument("request_id", metavar="REQUEST_ID", help="the id `gatekeeper requests` shows")
    p.add_argument("--reason", metavar="TEXT", help="why, kept with the decision for the review")


def run_deny(args: argparse.Namespace) -> int:
    approver = load_policy(args.config_dir).approver
    with _open_state(args) as db:
        request = approving.deny(db, args.request_id, approver, args.reason, _now())
    reason = f": {request.decision_reason}" if request.decision_reason else ""
    print(f"denied: request {request.id} of {request.employee} for {request.service}{reason}")
    return 0


# --- grant / revoke ---------------------------------------------------------------------------


def add_grant(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub, "grant", "grant an employee a service without a request",
        "Grant EMPLOYEE access to SERVICE in approvals.yaml, or renew their grant (approved by "
        "the file's approver, today; comments and formatting are kept). No request is "
        "needed; a pending request of the employee for the service is marked approved too. "
        "The running proxy picks the grant up through its live reload.",
        run_grant,
    )
    p.add_argument("employee", metavar="EMPLOYEE", help="an employee id from approvals.yaml")
    p.add_argument("service", metavar="SERVICE", help="a service id from services.yaml")
    _grant_options(p)


def run_grant(args: argparse.Namespace) -> int:
    result = approving.grant(
        args.config_dir, args.state_dir, args.employee, args.service,
        expires=args.expires, accounts=args.accounts,
    )
    verb = "granted" if result.action == "added" else "grant renewed"
    print(f"{verb}: {grant_summary(result)}; {RELOAD_NOTE}")
    if not (args.state_dir / DB_FILE).exists():
        return 0  # no database, so no request to mark
    with _open_state(args) as db:
        for request in approving.pending_for(db, args.employee, args.service):
            if not _mark_approved(args, db, request, result):
                return 1
            print(f"pending request {request.id} of {request.employee} for {request.service} "
                  "marked approved")
    return 0


def add_revoke(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub, "revoke", "remove an employee's grant for a service",
        "Remove the grant of EMPLOYEE for SERVICE from approvals.yaml (the comments around it "
        "stay). The running proxy blocks the service for them again after its live reload. "
        "The state database is not changed.",
        run_revoke,
    )
    p.add_argument("employee", metavar="EMPLOYEE", help="an employee id from approvals.yaml")
    p.add_argument("service", metavar="SERVICE", help="a service id from services.yaml")


def run_revoke(args: argparse.Namespace) -> int:
    result = approving.revoke(args.config_dir, args.employee, args.service)
    print(f"revoked: {result.employee} may no longer use {result.service} "
          f"(grant removed from {result.path}); {RELOAD_NOTE}")
    return 0


# --- acknowledgements / review ----------------------------------------------------------------


def add_acknowledgements(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub, "acknowledgements", "list Terms-of-Use acknowledgements",
        "List who accepted which service's Terms of Use (the terms URL they were shown) and "
        "when, oldest first. Changes nothing.",
        run_acknowledgements,
    )
    p.add_argument("--json", action="store_true", help="print a JSON array of objects")


def run_acknowledgements(args: argparse.Namespace) -> int:
    with _open_state(args) as db:
        found = db.acknowledgements()
    if args.json:
        _print_json([a.to_json() for a in found])
        return 0
    if not found:
        print("no Terms-of-Use acknowledgements")
        return 0
    rows = [("ACKNOWLEDGED", "EMPLOYEE", "SERVICE", "TERMS")]
    rows += [(local_time(a.acknowledged_at), a.employee, a.service, a.terms_url) for a in found]
    print(_table(rows))
    return 0


def add_review(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub, "review", "print the access review",
        "Print the monthly access review: active grants and their expiry (those expiring "
        "within 30 days, those unused for 90 days), pending and decided requests, blocked "
        "attempts per employee and service (personal-account logins first), audited actions "
        "and Terms-of-Use acknowledgements. Changes nothing.",
        run_review,
    )
    p.add_argument("--since", type=_date, metavar="YYYY-MM-DD",
                   help=f"first day (UTC) of the events shown (default: {REVIEW_DAYS} days ago)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--notify", action="store_true",
                   help="instead of printing it, queue the review as an e-mail to IT "
                   "(approvals.yaml notify: it:); the running proxy sends it (the monthly "
                   "timer gatekeeper-review.timer runs this)")


def run_review(args: argparse.Namespace) -> int:
    policy = office_policy(args.config_dir, args.state_dir)
    today = dt.date.today()
    since = args.since or today - dt.timedelta(days=REVIEW_DAYS)
    with _open_state(args) as db:
        data = db.review(dt.datetime.combine(since, dt.time(), dt.UTC))
        report = review_report(policy, data, today)
        if args.notify:
            return queue_review(db, policy, format_review_text(report))
    if args.json:
        _print_json(report)
    else:
        sys.stdout.write(format_review_text(report))
    return 0


def queue_review(db: StateDB, policy: Policy, text: str) -> int:
    """`review --notify`: the review e-mail to IT in the outbox, for the proxy to send."""
    messages = notify.review_messages(policy, text)
    if not messages:
        raise CommandError("approvals.yaml names no IT addresses (notify: it:): "
                           "nobody to send the review to")
    db.queue_notifications(messages, _now())
    print(f"access review queued for {', '.join(policy.notify['it'])}; the running proxy "
          f"sends it within {notify.POLL_SECONDS:g} seconds")
    return 0


# --- the console's password -------------------------------------------------------------------


def add_approver_password(sub: argparse._SubParsersAction) -> None:
    p = _parser(
        sub, "approver-password", "set the approver's password for the console",
        "Set the password the approver (approvals.yaml `approver`) signs in to the console "
        "with, for offices whose employees do not sign in to the proxy. Stored hashed "
        "(sha256-crypt) in STATE_DIR/approver.htpasswd, mode 0600; the running proxy uses it "
        "within seconds. With proxy sign-in, the approver's proxy password works as well.",
        run_approver_password,
    )
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input")


def run_approver_password(args: argparse.Namespace) -> int:
    approver = load_policy(args.config_dir).approver
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"New console password for {approver}: ")
        if getpass.getpass("Again: ") != password:
            raise CommandError("the two passwords differ; nothing was changed")
    try:
        path = set_password(args.state_dir, approver, password)
    except ValueError as e:
        raise CommandError(f"{e}; nothing was changed") from e
    print(f"console password set for {approver} in {path}")
    return 0


APPROVER_COMMANDS = (
    add_requests, add_approve, add_deny, add_grant, add_revoke, add_acknowledgements, add_review,
    add_approver_password,
)
