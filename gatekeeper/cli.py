"""The `gatekeeper` command: run the proxy, check and explain the policy, and the approver's
commands. Each subcommand is a small function; exit status 0 is success, 1 a problem with
what was asked (invalid config, unknown id), 2 a usage or start-up error."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gatekeeper import __version__
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.decision import decide
from gatekeeper.core.hosts import normalize_host
from gatekeeper.core.logins import accounts_of, login_rule, make_target
from gatekeeper.core.model import REASON_TEXT, Decision, Policy, Verdict
from gatekeeper.gateway import apply_serve_defaults
from gatekeeper.logs import LEVELS, LOG_FORMATS
from gatekeeper.pac import add_pac_serve_arguments

DEFAULT_CONFIG_DIR = "config"
DEFAULT_STATE_DIR = "state"

Handler = Callable[[argparse.Namespace], int]


def config_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=Path(os.environ.get("GATEKEEPER_CONFIG_DIR", DEFAULT_CONFIG_DIR)),
        metavar="DIR",
        help="directory with services.yaml and approvals.yaml "
        "(default: $GATEKEEPER_CONFIG_DIR or ./config)",
    )


def state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("GATEKEEPER_STATE_DIR", DEFAULT_STATE_DIR)),
        metavar="DIR",
        help="directory for the state database, keys and the proxy CA "
        "(default: $GATEKEEPER_STATE_DIR or ./state)",
    )


def load_or_report(config_dir: Path, state_dir: Path | None = None) -> Policy | None:
    """The policy, or None after printing every problem as `path:line: message` to stderr.
    With an office directory, its employees are those of the last list the proxy saved in
    `state_dir` (none: only approvals.yaml's)."""
    from gatekeeper.directory.store import office_policy

    try:
        return office_policy(config_dir, state_dir)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return None


# --- serve ---------------------------------------------------------------------------------


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the proxy",
        description="Run the enforcing proxy. Social-media hosts from the catalog are "
        "intercepted and checked against approvals.yaml; every other site is relayed "
        "undecrypted. Configuration changes are picked up live; SIGHUP forces a reload.",
    )
    config_dir_arg(p)
    state_dir_arg(p)
    p.add_argument("--listen-host", default="127.0.0.1", metavar="H",
                   help="proxy address (default: 127.0.0.1)")
    p.add_argument("--listen-port", type=int, metavar="P",
                   help="proxy port (default: proxy.port in gateway.yaml, else 8080)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="H",
                   help="metrics, health and PAC listener address (default: 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, metavar="P",
                   help="metrics, health and PAC listener port (default: proxy.metrics_port "
                   "in gateway.yaml, else 9464)")
    p.add_argument("--mode", action="append", metavar="MODE",
                   help="mitmproxy mode spec, repeatable: regular (explicit proxy: PAC, proxy "
                   "auth), transparent (redirected by nftables, employees known by source "
                   "address), or with a port: transparent@8081 (default: from gateway.yaml, "
                   "else regular)")
    add_pac_serve_arguments(p)
    p.add_argument("--metrics-employee-label", action="store_true",
                   help="add an employee label to the decision counters (off by default)")
    p.add_argument("--log-format", choices=LOG_FORMATS, default="auto",
                   help="log format (default: console on a terminal, JSON otherwise)")
    p.add_argument("--log-level", choices=LEVELS,
                   default="info", help="lowest level logged (default: info)")
    p.add_argument("--set", dest="mitmproxy_options", action="append", default=[],
                   metavar="OPTION=VALUE",
                   help="set any mitmproxy option, e.g. proxyauth=@/etc/gatekeeper/users.htpasswd "
                   "(repeatable)")
    p.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from gatekeeper import logs
    from gatekeeper.serve import ServeSettings, serve

    logs.configure(args.log_format, args.log_level)
    if not apply_serve_defaults(args):
        return 2
    return serve(
        ServeSettings(
            config_dir=args.config_dir,
            state_dir=args.state_dir,
            listen_host=args.listen_host,
            listen_port=args.listen_port,
            metrics_host=args.metrics_host,
            metrics_port=args.metrics_port,
            modes=args.mode,
            pac_proxy=args.pac_proxy or "",
            pac_host=args.pac_host,
            pac_port=-1 if args.pac_port is None else args.pac_port,
            metrics_employee_label=args.metrics_employee_label,
            mitmproxy_options=args.mitmproxy_options,
        )
    )


# --- check ---------------------------------------------------------------------------------


def add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="validate the configuration",
        description="Validate services.yaml and approvals.yaml (and the directory: section "
        "of gateway.yaml, if any). Exit 0 with a one-line summary, or exit 1 with one "
        "`path:line: message` line per problem.",
    )
    config_dir_arg(p)
    p.add_argument("--online", action="store_true",
                   help="also sign in to the office directory (gateway.yaml directory:) and "
                   "report how many employees it sees")
    p.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    policy = load_or_report(args.config_dir)
    if policy is None:
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
    login = _login_rule_json(policy, decision, args.method, url)
    if login is not None:
        accounts = ", ".join(login["accounts"]) or "none"
        print(f"login rule matches ({login['method']} {login['path']}): every value of "
              f"{', '.join(login['fields'])} must be one of {who}'s accounts: {accounts}")
    return 0


def _login_rule_json(
    policy: Policy, decision: Decision, method: str, url: urllib.parse.SplitResult
) -> dict[str, Any] | None:
    """The catalog login rule this request would be checked by, and the accepted accounts."""
    if decision.service is None:
        return None
    target = make_target(method, (normalize_host(url.hostname or ""),), url.path or "/", url.query)
    rule = login_rule(policy.services[decision.service], target)
    if rule is None:
        return None
    return {
        "method": rule.method,
        "path": rule.path.pattern,
        "fields": list(rule.fields),
        "accounts": sorted(accounts_of(policy, decision.employee, decision.service)),
    }


# --- main ----------------------------------------------------------------------------------

def add_approver_commands(sub: argparse._SubParsersAction) -> None:
    """requests, approve, deny, grant, revoke, acknowledgements, review (imported here:
    gatekeeper.approver_cli uses this module's helpers)."""
    from gatekeeper.approver_cli import APPROVER_COMMANDS

    for add in APPROVER_COMMANDS:
        add(sub)


def add_gateway_commands(sub: argparse._SubParsersAction) -> None:
    """`firewall`, `pac` and `ca`: setting up the office gateway (docs/deployment.md)."""
    from gatekeeper.ca import add_ca_parser
    from gatekeeper.firewall import add_firewall_parser
    from gatekeeper.pac import add_pac_parser

    for add in (add_firewall_parser, add_pac_parser, add_ca_parser):
        add(sub)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_serve, add_check, add_explain, add_approver_commands, add_gateway_commands,
]


def build_parser(
    commands: Sequence[Callable[[argparse._SubParsersAction], None]] = COMMANDS,
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper",
        description="Enforce the office social-media policy on the gateway: social media is "
        "blocked unless the approver granted an exception in approvals.yaml; every other "
        "site passes through untouched.",
        epilog="Run `gatekeeper COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"gatekeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in commands:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `serve` alone skips the other commands' imports: the proxy listens sooner.
    commands = [add_serve] if argv[:1] == ["serve"] else COMMANDS
    args = build_parser(commands).parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
