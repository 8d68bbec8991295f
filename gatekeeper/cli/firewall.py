"""`gatekeeper firewall render|check|apply`: the gateway's nftables table from gateway.yaml.

Also runs standalone: `python -m gatekeeper.cli.firewall render --config-dir config`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gatekeeper.cli.common import CONFIG_DIR_HELP, config_dir_arg, print_problems
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.firewall import FirewallError, apply, check
from gatekeeper.gateway import load_gateway, render_ruleset


def add_firewall(subparsers: argparse._SubParsersAction) -> None:
    """Add `firewall render|check|apply [--config-dir DIR]`; its handler is `args.handler`."""
    parser = subparsers.add_parser(
        "firewall",
        help="render, check or apply the gateway's nftables table (from gateway.yaml)",
        description="The nftables table `inet gatekeeper`, made from gateway.yaml.",
    )
    _add_arguments(parser)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("render", "check", "apply"),
        help="render: print the nft script; check: validate it with `nft -c`; "
        "apply: load it with `nft -f` in one transaction",
    )
    config_dir_arg(parser, CONFIG_DIR_HELP.replace("services.yaml and approvals.yaml",
                                                   "gateway.yaml"))
    parser.set_defaults(handler=run_firewall)


def run_firewall(args: argparse.Namespace) -> int:
    """The `firewall` command: exit 0, or 1 with the problem on stderr."""
    try:
        cfg = load_gateway(args.config_dir)
        if args.action == "render":
            sys.stdout.write(render_ruleset(cfg))
        elif args.action == "check":
            check(cfg)
            print(f"firewall: ruleset for table inet gatekeeper is valid ({cfg.mode} mode)")
        else:
            apply(cfg)
            print(f"firewall: table inet gatekeeper applied ({cfg.mode} mode)")
    except ConfigError as e:
        print_problems(e)
        return 1
    except FirewallError as e:
        print(f"firewall {args.action} failed: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gatekeeper firewall")
    _add_arguments(parser)
    return run_firewall(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
