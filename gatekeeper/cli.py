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

from gatekeeper import __version__
from gatekeeper.config.loader import load_policy
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.decision import decide
from gatekeeper.core.model import REASON_TEXT, Mode, Policy, Verdict

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


def load_or_report(config_dir: Path) -> Policy | None:
    """The policy, or None after printing every problem as `path:line: message` to stderr."""
    try:
        return load_policy(config_dir)
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
    p.add_argument("--listen-port", type=int, default=8080, metavar="P",
                   help="proxy port (default: 8080)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="H",
                   help="metrics, health and PAC listener address (default: 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, default=9464, metavar="P",
                   help="metrics, health and PAC listener port (default: 9464)")
    p.add_argument("--mode", default="regular", choices=("regular", "transparent"),
                   help="regular: explicit proxy (PAC, proxy auth); transparent: traffic "
                   "redirected by nftables, employees identified by source address")
    p.add_argument("--metrics-employee-label", action="store_true",
                   help="add an employee label to the decision counters (off by default)")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto",
                   help="log format (default: console on a terminal, JSON otherwise)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
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
    return serve(
        ServeSettings(
            config_dir=args.config_dir,
            state_dir=args.state_dir,
            listen_host=args.listen_host,
            listen_port=args.listen_port,
            metrics_host=args.metrics_host,
            metrics_port=args.metrics_port,
            mode=args.mode,
            metrics_employee_label=args.metrics_employee_label,
            mitmproxy_options=args.mitmproxy_options,
        )
    )


# --- check ---------------------------------------------------------------------------------


def add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="validate the configuration",
        description="Validate services.yaml and approvals.yaml. Exit 0 with a one-line "
        "summary, or exit 1 with one `path:line: message` line per problem.",
    )
    config_dir_arg(p)
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
    return 0


# --- explain -------------------------------------------------------------------------------


def add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="say what the proxy would do with a request",
        description="Say what the proxy would do with a request by EMPLOYEE (a proxy-auth "
        "user name, or - for unknown) to URL, and why.",
    )
    config_dir_arg(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--method", default="GET", help="request method (default: GET)")
    p.add_argument("--source-ip", metavar="IP",
                   help="client address, to identify the employee by device")
    p.add_argument("employee", metavar="EMPLOYEE")
    p.add_argument("url", metavar="URL")
    p.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    policy = load_or_report(args.config_dir)
    if policy is None:
        return 1
    url = urllib.parse.urlsplit(args.url if "//" in args.url else f"//{args.url}")
    if not url.hostname:
        print(f"gatekeeper explain: not a URL: {args.url!r}", file=sys.stderr)
        return 2
    user = None if args.employee == "-" else args.employee
    employee = policy.identify(user, args.source_ip)
    decision = decide(policy, employee, (url.hostname,), dt.date.today())
    report_only = decision.blocked and policy.mode is Mode.REPORT
    if args.json:
        print(json.dumps({
            "decision": decision.verdict.value,
            "service": decision.service,
            "reason": decision.reason.value,
            "employee": decision.employee,
            "enforced": not report_only,
        }))
        return 0
    if decision.verdict is Verdict.PASS:
        print(f"pass: {url.hostname} is not in the catalog; relayed untouched and undecrypted")
        return 0
    service = policy.services[decision.service or ""]
    who = decision.employee or "unknown employee"
    line = f"{decision.verdict.value}: {service.name} ({service.id}) for {who}: {decision.reason}"
    if decision.reason in REASON_TEXT:
        line += f" - {REASON_TEXT[decision.reason]}"
    if report_only:
        line += " (mode report: logged and counted, let through)"
    print(line)
    return 0


# --- main ----------------------------------------------------------------------------------

COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_serve, add_check, add_explain]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper",
        description="Enforce the office social-media policy on the gateway: social media is "
        "blocked unless the approver granted an exception in approvals.yaml; every other "
        "site passes through untouched.",
        epilog="Run `gatekeeper COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"gatekeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
