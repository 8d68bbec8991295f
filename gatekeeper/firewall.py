"""`gatekeeper firewall render|check|apply`: the gateway's nftables table, handed to `nft`.

The rules come from `gatekeeper.gateway.render_ruleset()` (pure); this module only runs `nft`.
`check` asks the kernel to validate the script without applying it (`nft -c`); `apply` loads it
in one transaction, so the gateway is never left with half a table.
Also runs standalone: `python -m gatekeeper.firewall render --config-dir config`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.gateway import GatewayConfig, load_gateway, render_ruleset

NFT_FALLBACK = "/usr/sbin/nft"  # Debian's nftables; /usr/sbin is not on every user's PATH
NFT_TIMEOUT_SECONDS = 30


class FirewallError(Exception):
    """`nft` refused the ruleset or could not run; the message is nft's own."""


def nft_binary() -> str:
    return shutil.which("nft") or NFT_FALLBACK


def run_nft(ruleset: str, *, check_only: bool) -> None:
    """Feed `ruleset` to `nft -f -` (with `-c`: validate only); raises `FirewallError`."""
    command = [nft_binary(), *(["-c"] if check_only else []), "-f", "-"]
    try:
        result = subprocess.run(
            command, input=ruleset, capture_output=True, text=True,
            timeout=NFT_TIMEOUT_SECONDS, check=False,
        )
    except FileNotFoundError as e:
        raise FirewallError(f"{command[0]} not found: install Debian's nftables package") from e
    except subprocess.TimeoutExpired as e:
        raise FirewallError(f"nft did not finish within {NFT_TIMEOUT_SECONDS} s") from e
    if result.returncode != 0:
        raise FirewallError(result.stderr.strip() or f"nft exited with {result.returncode}")


def check(cfg: GatewayConfig) -> str:
    """Render and validate against the running kernel without changing anything."""
    ruleset = render_ruleset(cfg)
    run_nft(ruleset, check_only=True)
    return ruleset


def apply(cfg: GatewayConfig) -> str:
    """Render and load atomically, replacing any earlier `inet gatekeeper` table."""
    ruleset = render_ruleset(cfg)
    run_nft(ruleset, check_only=False)
    return ruleset


def add_firewall_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `firewall render|check|apply [--config-dir DIR]`; its handler is `args.handler`."""
    parser = subparsers.add_parser(
        "firewall",
        help="render, check or apply the gateway's nftables table (from gateway.yaml)",
        description="The nftables table `inet gatekeeper`, made from gateway.yaml.",
    )
    _add_arguments(parser)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("render", "check", "apply"),
        help="render: print the nft script; check: validate it with `nft -c`; "
        "apply: load it with `nft -f` in one transaction",
    )
    parser.add_argument(
        "--config-dir", type=Path, metavar="DIR",
        default=Path(os.environ.get("GATEKEEPER_CONFIG_DIR", "config")),
        help="directory holding gateway.yaml (default: $GATEKEEPER_CONFIG_DIR or ./config)",
    )
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
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return 1
    except FirewallError as e:
        print(f"firewall {args.action} failed: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gatekeeper firewall")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    return run_firewall(args)


if __name__ == "__main__":
    sys.exit(main())
