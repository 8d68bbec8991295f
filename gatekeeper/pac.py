"""The proxy auto-configuration (PAC) file: governed domains to the proxy, the rest DIRECT.

It is rendered from the policy in force at each request, so a catalog change reaches browsers
the next time they fetch it. Every value enters the script JSON-encoded (Jinja's `tojson`),
never as raw text. Served on the metrics listener and, optionally, on a LAN-facing listener of
its own (`--pac-host/--pac-port`) so the metrics can stay on loopback; `gatekeeper pac` prints it.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.model import Policy
from gatekeeper.metrics import Reply, Route
from gatekeeper.pages import render

CONTENT_TYPE = "application/x-ns-proxy-autoconfig"
PATHS = ("/proxy.pac", "/wpad.dat")
DEFAULT_PROXY = "127.0.0.1:8080"  # `gatekeeper serve`'s default listener
WILDCARD_HOSTS = ("", "0.0.0.0", "::")
# mitmproxy's certificate onboarding page: the proxy answers it itself, so it must go there.
ONBOARDING_HOST = "mitm.it"
# A DNS name as a browser may reach the gateway, single-label intranet names included.
HOST_NAME = re.compile(r"\A(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*\Z")


def proxy_address(text: str) -> str:
    """Validate `HOST:PORT` (IPv6 as `[addr]:port`) for a PAC `PROXY` line; argparse type."""
    host = ""
    try:
        parts = urllib.parse.urlsplit(f"//{text.strip()}")
        port = parts.port
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{ipaddress.IPv6Address(host)}]"
        elif host[-1:].isdigit():
            host = str(ipaddress.IPv4Address(host))
    except ValueError:
        port = None
    if not port or not (host.startswith("[") or host[-1:].isdigit() or HOST_NAME.match(host)):
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    return f"{host}:{port}"


def render_pac(policy: Policy, proxy: str) -> bytes:
    """The PAC script sending `policy`'s catalog domains to `proxy` (`host:port`)."""
    return render(
        "proxy.pac",
        proxy=f"PROXY {proxy}",
        domains=sorted({*policy.domains.domains(), ONBOARDING_HOST}),
        policy=policy.sha256[:12],
    )


def routes(policy: Callable[[], Policy | None], proxy: str | None) -> dict[str, Route]:
    """`/proxy.pac` and `/wpad.dat` for an `AdminServer`, rendered from the live policy."""

    def reply() -> Reply:
        current = policy()
        if proxy is None or current is None:
            why = ("no policy loaded" if current is None else
                   "proxy address unknown: set proxy.address in gateway.yaml or --pac-proxy")
            return Reply(503, "text/plain; charset=utf-8", f"PAC unavailable: {why}\n".encode())
        return Reply(200, CONTENT_TYPE, render_pac(current, proxy))

    return dict.fromkeys(PATHS, reply)


def proxy_for(options) -> str | None:
    """The proxy a PAC names: `gatekeeper_pac_proxy`, else the first regular listener with a
    specific address (a wildcard address is no use to a browser), else None."""
    from mitmproxy.proxy.mode_specs import ProxyMode, RegularMode

    configured = getattr(options, "gatekeeper_pac_proxy", "")
    if configured:
        return configured
    for spec in options.mode:
        mode = ProxyMode.parse(spec)
        host = mode.listen_host(options.listen_host)
        if isinstance(mode, RegularMode) and host not in WILDCARD_HOSTS:
            return proxy_address(f"{host}:{mode.listen_port(options.listen_port)}")
    return None


# --- command line ---------------------------------------------------------------------------


def add_pac_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """`gatekeeper serve` options for the PAC file."""
    parser.add_argument(
        "--pac-proxy", type=proxy_address, metavar="HOST:PORT",
        help="proxy address the PAC file names (default: proxy.address:port from gateway.yaml, "
        "else the regular listener)")
    parser.add_argument(
        "--pac-host", default="", metavar="H",
        help="address of a separate listener serving only the PAC file (default: --listen-host)")
    parser.add_argument(
        "--pac-port", type=int, metavar="P",
        help="port of that listener (default: proxy.pac_port in gateway.yaml, else none: the "
        "PAC file is served on the metrics listener only)")


def add_pac_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`gatekeeper pac [--config-dir DIR] [--proxy HOST:PORT]`."""
    from gatekeeper.cli import config_dir_arg

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
    return parser


def run_pac(args: argparse.Namespace) -> int:
    from gatekeeper.cli import load_or_report
    from gatekeeper.gateway import GatewayMode, gateway_file, load_gateway

    policy = load_or_report(args.config_dir)
    if policy is None:
        return 1
    proxy = args.proxy
    if proxy is None and gateway_file(Path(args.config_dir)).exists():
        try:
            gateway = load_gateway(args.config_dir)
        except ConfigError as e:
            for problem in e.problems:
                print(problem, file=sys.stderr)
            return 1
        if gateway.mode is GatewayMode.TRANSPARENT:
            print("gatekeeper pac: gateway.yaml is in transparent mode: browsers need no PAC "
                  "file (give --proxy to print one anyway)", file=sys.stderr)
            return 1
        proxy = gateway.pac_proxy()
    sys.stdout.write(render_pac(policy, proxy or DEFAULT_PROXY).decode())
    return 0
