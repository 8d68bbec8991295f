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
import urllib.parse
from collections.abc import Callable

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
