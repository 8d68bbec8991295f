"""Several proxy processes on one listening address: SO_REUSEPORT, spread by the kernel.

Why this way: every worker binds the same address with SO_REUSEPORT and Linux hands each new
connection to one of the listening sockets (a hash of the connection's addresses). Nothing sits
in front of the workers, so each sees the client's own source address (identity by address
keeps working) and, in transparent mode, the connection's original destination. It works the
same for the regular and the transparent listener, on the gateway or anywhere else, without a
firewall rule (an nftables `numgen` redirect would only cover traffic that passes the gateway's
table: not loopback, not a container).

mitmproxy 11 opens its TCP listeners with `asyncio.start_server` (proxy/mode_servers.py,
`AsyncioServerInstance.listen`) and has no option for SO_REUSEPORT. Rather than patch mitmproxy,
a worker runs it on an event loop whose `create_server` always asks for `reuse_port`: the
documented asyncio API, used by every asyncio listener of the process (mitmproxy's only; the
admin listener is a thread of its own). tests/test_workers.py checks that mitmproxy's listener
really goes through the loop, so a mitmproxy that stops doing so fails loudly there.

UDP modes (dns, wireguard, http3) are listened by mitmproxy_rs and cannot share a port: the
supervisor refuses them (`shareable`).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from mitmproxy.proxy.mode_specs import ProxyMode


class SharedPortLoop(asyncio.SelectorEventLoop):
    """An event loop whose TCP listeners share their port with the other workers."""

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:  # type: ignore[override]
        kwargs["reuse_port"] = True
        return await super().create_server(*args, **kwargs)


def shareable(spec: str) -> str | None:
    """Why the mitmproxy mode `spec` cannot run in several workers; None when it can."""
    mode = ProxyMode.parse(spec)
    if mode.transport_protocol != "tcp":
        return f"mode {spec} listens on UDP, which workers cannot share; run it with --workers 1"
    return None


def listen_addresses(specs: list[str], host: str, port: int) -> list[tuple[str, int]]:
    """The (host, port) each mode listens on, as mitmproxy derives them from its options."""
    addresses: list[tuple[str, int]] = []
    for spec in specs:
        mode = ProxyMode.parse(spec)
        address = (mode.listen_host(host), mode.listen_port(port) or 0)
        if address not in addresses:
            addresses.append(address)
    return addresses


def reserve(host: str, port: int) -> list[socket.socket]:
    """Bind `host:port` with SO_REUSEPORT without listening; port 0 picks a free one.

    The supervisor holds these for its whole life: the port stays the group's while a worker
    restarts, and another user's process cannot take it (Linux shares a port only between
    sockets of the same user). Connections go to listening sockets only, never to these.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:  # as asyncio does: one socket per family
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
