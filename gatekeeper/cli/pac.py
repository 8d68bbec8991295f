"""`gatekeeper pac`: print the proxy auto-configuration file the proxy serves."""

from __future__ import annotations

import argparse
import sys

from gatekeeper.cli.common import config_dir_arg, load_or_report, print_problems
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.gateway import GatewayMode, gateway_file, load_gateway
from gatekeeper.pacfile import DEFAULT_PROXY, proxy_address, render_pac


def add_pac(subparsers: argparse._SubParsersAction) -> None:
    """`gatekeeper pac [--config-dir DIR] [--proxy HOST:PORT]`."""
    parser = subparsers.add_parser(
        "pac", help="print the proxy auto-configuration (PAC) file",
        description="Print the PAC file `gatekeeper serve` serves at /proxy.pac and /wpad.dat: "
        "the catalog's domains go to the proxy, everything else DIRECT.",
    )
    config_dir_arg(parser)
    parser.add_argument(
        "--proxy", type=proxy_address, metavar="HOST:PORT",
        help=f"proxy address (default: proxy.address:port from gateway.yaml, else {DEFAULT_PROXY})")
    parser.set_defaults(handler=run_pac)


def run_pac(args: argparse.Namespace) -> int:
    policy = load_or_report(args.config_dir)
    if policy is None:
        return 1
    proxy = args.proxy
    if proxy is None and gateway_file(args.config_dir).exists():
        try:
            gateway = load_gateway(args.config_dir)
        except ConfigError as e:
            print_problems(e)
            return 1
        if gateway.mode is GatewayMode.TRANSPARENT:
            print("gatekeeper pac: gateway.yaml is in transparent mode: browsers need no PAC "
                  "file (give --proxy to print one anyway)", file=sys.stderr)
            return 1
        proxy = gateway.pac_proxy()
    sys.stdout.write(render_pac(policy, proxy or DEFAULT_PROXY).decode())
    return 0
