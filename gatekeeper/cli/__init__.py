"""The `gatekeeper` command: run the proxy, check and explain the policy, the approver's
commands and setting up the gateway. One module per group of subcommands; exit status 0 is
success, 1 a problem with what was asked (invalid config, unknown id), 2 a usage or start-up
error.

Nothing below the CLI imports this package: the commands call into the modules, never back.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gatekeeper import __version__
from gatekeeper.cli.common import AddCommand, CommandHandler
from gatekeeper.cli.serve import add_serve


def all_commands() -> list[AddCommand]:
    """Every command, in the order `gatekeeper --help` lists them."""
    from gatekeeper.cli.activity import add_activity
    from gatekeeper.cli.approver import APPROVER_COMMANDS
    from gatekeeper.cli.ca import add_ca
    from gatekeeper.cli.check import add_check, add_explain
    from gatekeeper.cli.employees import add_employee
    from gatekeeper.cli.firewall import add_firewall
    from gatekeeper.cli.pac import add_pac

    return [add_serve, add_check, add_explain, *APPROVER_COMMANDS, add_employee, add_activity,
            add_firewall, add_pac, add_ca]


def build_parser(commands: Sequence[AddCommand] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper",
        description="Enforce the office social-media policy on the gateway: social media is "
        "blocked unless the approver granted an exception in approvals.yaml; every other "
        "site passes through untouched.",
        epilog="Run `gatekeeper COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"gatekeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in all_commands() if commands is None else commands:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `serve` alone skips the other commands' imports: the proxy listens sooner.
    args = build_parser([add_serve] if argv[:1] == ["serve"] else None).parse_args(argv)
    handler: CommandHandler = args.handler
    return handler(args)

