"""`gatekeeper check` and `gatekeeper explain`: validate the configuration, and say what the
proxy would do with a request and why."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from gatekeeper.cli.common import config_dir_arg, load_or_report, print_problems, state_dir_arg
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.decision import decide
from gatekeeper.core.hosts import normalize_host
from gatekeeper.core.logins import accounts_of, login_rule, make_target, signup_rule
from gatekeeper.core.model import REASON_TEXT, Decision, Policy, Verdict
from gatekeeper.gateway import gateway_file, load_gateway

# --- check ---------------------------------------------------------------------------------


def add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="validate the configuration",
        description="Validate services.yaml, approvals.yaml and gateway.yaml (if any, its "
        "directory: section included). Exit 0 with a one-line summary, or exit 1 with one "
        "`path:line: message` line per problem.",
    )
    config_dir_arg(p)
    p.add_argument("--online", action="store_true",
                   help="also sign in to the office directory (gateway.yaml directory:) and "
                   "report how many employees it sees")
    p.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    policy = load_or_report(args.config_dir)
    gateway_valid = _check_gateway(args.config_dir)
    if policy is None or not gateway_valid:
        return 1
    print(
        f"{args.config_dir}: OK: {len(policy.services)} services, "
        f"{len(policy.employees)} employees, {len(policy.grants)} grants, "
        f"mode {policy.mode.value}, policy {policy.sha256[:12]}"
    )
    for placeholder in policy.unfilled:
        print(f"warning: placeholder {placeholder} is not filled in: header not sent",
              file=sys.stderr)
    from gatekeeper.directory.check import check_directory

    return check_directory(args.config_dir, policy, online=args.online)


def _check_gateway(config_dir: Path) -> bool:
    """gateway.yaml, as `serve` and `firewall` read it; False after printing its problems."""
    if not gateway_file(config_dir).exists():
        return True
    try:
        load_gateway(config_dir)
    except ConfigError as e:
        print_problems(e)
        return False
    return True


# --- explain -------------------------------------------------------------------------------


def add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="say what the proxy would do with a request",
        description="Say what the proxy would do with a request by EMPLOYEE (a proxy-auth "
        "user name, or - for unknown) to URL, and why.",
    )
    config_dir_arg(p)
    state_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--method", default="GET", help="request method (default: GET)")
    p.add_argument("--source-ip", metavar="IP",
                   help="client address, to identify the employee by device")
    p.add_argument("employee", metavar="EMPLOYEE")
    p.add_argument("url", metavar="URL")
    p.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    policy = load_or_report(args.config_dir, args.state_dir)
    if policy is None:
        return 1
    url = urllib.parse.urlsplit(args.url if "//" in args.url else f"//{args.url}")
    if not url.hostname:
        print(f"gatekeeper explain: not a URL: {args.url!r}", file=sys.stderr)
        return 2
    user = None if args.employee == "-" else args.employee
    employee = policy.identify(user, args.source_ip)
    decision = decide(policy, employee, (url.hostname,), dt.date.today())
    enforced = decision.enforced(policy.mode)
    person = policy.employees.get(decision.employee or "")
    if args.json:
        print(json.dumps({
            "decision": decision.verdict.value,
            "service": decision.service,
            "reason": decision.reason.value,
            "employee": decision.employee,
            "employee_name": person.display_name if person else "",
            "employee_email": person.email if person else "",
            "enforced": enforced,
            "login_rule": _login_rule_json(policy, decision, args.method, url),
            "signup_rule": _login_rule_json(policy, decision, args.method, url, signup=True),
        }))
        return 0
    if decision.verdict is Verdict.PASS:
        print(f"pass: {url.hostname} is not in the catalog; relayed untouched and undecrypted")
        return 0
    service = policy.services[decision.service or ""]
    who = decision.employee or "unknown employee"
    if person is not None and person.display_name:
        who += f" ({person.display_name} <{person.email}>)"
    line = f"{decision.verdict.value}: {service.name} ({service.id}) for {who}: {decision.reason}"
    if decision.reason in REASON_TEXT:
        line += f" - {REASON_TEXT[decision.reason]}"
    if not enforced:
        line += " (mode report: logged and counted, let through)"
    print(line)
    for kind, signup in (("login", False), ("sign-up", True)):
        login = _login_rule_json(policy, decision, args.method, url, signup=signup)
        if login is not None:
            accounts = ", ".join(login["accounts"]) or "none"
            print(f"{kind} rule matches ({login['method']} {login['path']}): every value of "
                  f"{', '.join(login['fields'])} must be one of {who}'s accounts: {accounts}")
    return 0


def _login_rule_json(
    policy: Policy, decision: Decision, method: str, url: urllib.parse.SplitResult,
    *, signup: bool = False,
) -> dict[str, Any] | None:
    """The catalog login (or sign-up) rule this request would be checked by, and the
    accepted accounts."""
    if decision.service is None:
        return None
    target = make_target(method, (normalize_host(url.hostname or ""),), url.path or "/", url.query)
    rule = (signup_rule if signup else login_rule)(policy.services[decision.service], target)
    if rule is None:
        return None
    return {
        "method": rule.method,
        "path": rule.path.pattern,
        "fields": list(rule.fields),
        "accounts": sorted(accounts_of(policy, decision.employee, decision.service)),
    }
