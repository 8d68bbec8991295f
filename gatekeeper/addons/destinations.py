"""The proxy never connects to the gateway itself, nor to link-local or metadata addresses.

Without this, `curl -x PROXY http://127.0.0.1:9464/metrics` from the LAN reads whatever listens
on the gateway's loopback. The rules are in `gatekeeper.core.destinations`; this adapter applies
them at two points:

- early, when the target is an IP literal in any spelling (`2130706433`, `[::1]`): a CONNECT
  gets a 403 in `http_connect`, a plain request a 403 with `X-Gatekeeper-Reason:
  destination_refused` in `requestheaders`; no DNS is involved;
- at `server_connect`, which mitmproxy awaits before every upstream connection (relayed
  tunnels included): a name is resolved off the event loop with a deadline and every address
  checked. The connection is then pinned to the checked address, so a second resolution cannot
  hand mitmproxy another one (DNS rebinding); the name is put back once connected, so TLS and
  connection reuse see it as before. A refused connection is killed before its SYN.

`gatekeeper_allowed_destinations` lists exceptions (`ADDRESS[/PREFIX][:PORT]`); the proxy's own
listening ports stay refused unless an entry names that exact port.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
import weakref
from collections.abc import Coroutine, Sequence
from typing import Any

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.proxy import server_hooks

from gatekeeper.addons.context import context_of
from gatekeeper.addons.responses import REASON_HEADER
from gatekeeper.addons.runtime import Runtime, log
from gatekeeper.core.destinations import AllowedDestination, DestinationRules, Refusal
from gatekeeper.core.hosts import IPAddress, ip_literal, normalize_host

RESOLVE_TIMEOUT = 10.0  # seconds for a name to resolve before the connection is refused
REFUSED = "destination_refused"  # X-Gatekeeper-Reason of the 403
Address = tuple[str, int]


class GatewayDestinations:
    """Refuses requests, tunnels and upstream connections that lead to the gateway itself."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.rules = DestinationRules()
        self.is_local = LocalAddresses()
        # Upstream connections pinned to a checked address -> the address they were asked for.
        self._pinned: weakref.WeakKeyDictionary[connection.Server, Address] = (
            weakref.WeakKeyDictionary()
        )

    def load(self, loader) -> None:
        loader.add_option(
            "gatekeeper_allowed_destinations", Sequence[str], [],
            "Addresses the proxy may connect to although they are loopback, link-local, "
            "metadata or the gateway's own: ADDRESS[/PREFIX][:PORT], IPv6 in brackets when a "
            "port follows (e.g. 127.0.0.1:8443, 10.0.0.5, [::1]:8443). The proxy's own "
            "listening ports stay refused unless an entry names that exact port.",
        )

    def configure(self, updated: set[str]) -> None:
        if "gatekeeper_allowed_destinations" in updated:
            entries = [
                part for item in ctx.options.gatekeeper_allowed_destinations
                for part in item.split(",") if part.strip()
            ]
            try:
                allowed = tuple(AllowedDestination.parse(entry) for entry in entries)
            except ValueError as e:
                raise exceptions.OptionsError(f"gatekeeper_allowed_destinations: {e}") from None
            self.rules = DestinationRules(allowed)

    def running(self) -> None:
        if not self.is_local.usable:
            log.warning(
                "gateway_addresses_unknown",
                hint="non-local bind is enabled (net.ipv4.ip_nonlocal_bind), so the gateway's "
                     "own non-loopback addresses cannot be recognized; loopback, link-local and "
                     "metadata addresses are still refused",
            )

    # --- early refusals: IP literals, before any connection ---------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._refuse_literal(flow, "connect")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        context = context_of(flow)
        if context is None or context.portal is None:  # the portal answers its own
            self._refuse_literal(flow, "request")

    def _refuse_literal(self, flow: http.HTTPFlow, via: str) -> None:
        if flow.response is not None:
            return
        request = flow.request
        try:
            ip = ip_literal(normalize_host(request.host))
            reason = self._check(ip, request.port) if ip is not None else None
        except Exception:
            log.exception("internal_error", hook=f"GatewayDestinations.{via}")
            ip, reason = None, Refusal.INTERNAL_ERROR
        if reason is None:
            return
        self._record(flow.client_conn, request.host, ip, request.port, reason, via)
        flow.request.stream = False
        flow.response = http.Response.make(
            403,
            f"gatekeeper: the proxy does not connect to this address ({reason.value}).\n",
            {REASON_HEADER: REFUSED, "Content-Type": "text/plain; charset=utf-8",
             "Cache-Control": "no-store"},
        )

    # --- every upstream connection --------------------------------------------------------

    def server_connect(
        self, data: server_hooks.ServerConnectionHookData
    ) -> Coroutine[Any, Any, None] | None:
        """Synchronous for an IP address; a coroutine (resolution) only for a name."""
        address = data.server.address
        if address is None or data.server.error:
            return None
        host, port = str(address[0]), int(address[1])
        try:
            ip = ip_literal(normalize_host(host))
        except Exception:
            self._kill(data, host, None, port, Refusal.INTERNAL_ERROR)
            log.exception("internal_error", hook="GatewayDestinations.server_connect")
            return None
        if ip is not None:
            self._decide(data, host, port, [ip])
            return None
        return self._resolve_and_decide(data, host, port)

    async def _resolve_and_decide(self, data: server_hooks.ServerConnectionHookData,
                                  host: str, port: int) -> None:
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                RESOLVE_TIMEOUT,
            )
        except TimeoutError:
            self._kill(data, host, None, port, Refusal.RESOLVE_TIMEOUT)
            return
        except OSError as e:  # no such name: the same error mitmproxy would have met
            data.server.error = str(e)
            return
        try:
            found = [ip for info in infos if (ip := ip_literal(str(info[4][0]))) is not None]
            self._decide(data, host, port, found)
        except Exception:
            log.exception("internal_error", hook="GatewayDestinations.server_connect")
            self._kill(data, host, None, port, Refusal.INTERNAL_ERROR)

    def _decide(self, data: server_hooks.ServerConnectionHookData, host: str, port: int,
                candidates: list[IPAddress]) -> None:
        """Pin the connection to the first acceptable address, or kill it."""
        first_refusal: Refusal | None = None
        for ip in candidates:
            reason = self._check(ip, port)
            if reason is None:
                self._pin(data.server, (str(ip), port))
                return
            first_refusal = first_refusal or reason
        if first_refusal is None:
            data.server.error = f"no address for {host}"
            return
        self._kill(data, host, candidates[0], port, first_refusal)

    def _pin(self, server: connection.Server, address: Address) -> None:
        asked = server.address
        if asked is not None and (asked[0], asked[1]) != address:
            self._pinned[server] = (asked[0], asked[1])
            server.address = address

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._unpin(data.server)

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._unpin(data.server)

    def _unpin(self, server: connection.Server) -> None:
        asked = self._pinned.pop(server, None)
        if asked is not None:
            # mitmproxy refuses a new address on an open connection (it would not reconnect);
            # this restores the name the connection was made for, so it is set directly.
            object.__setattr__(server, "address", asked)

    # --- shared ---------------------------------------------------------------------------

    def _check(self, ip: IPAddress, port: int) -> Refusal | None:
        return self.rules.check(ip, port, is_local=self.is_local,
                                own_ports=lambda: own_ports(self.runtime))

    def _kill(self, data: server_hooks.ServerConnectionHookData, host: str,
              ip: IPAddress | None, port: int, reason: Refusal) -> None:
        data.server.error = f"gatekeeper refused the destination ({reason.value})"
        self._record(data.client, host, ip, port, reason, "connection")

    def _record(self, client: connection.Client, host: str, ip: IPAddress | None, port: int,
                reason: Refusal, via: str) -> None:
        """Count and log a refusal: who, which host and address; never a path."""
        self.runtime.metrics.destinations_refused.labels(reason.value).inc()
        peer = client.peername
        log.warning(
            "destination_refused", client=peer[0] if peer else None, host=host,
            address=str(ip) if ip is not None else None, port=port, reason=reason.value,
            via=via,
        )


def own_ports(runtime: Runtime) -> set[int]:
    """Every port this gatekeeper process listens on: proxy modes, metrics and PAC listeners."""
    ports: set[int] = set()
    proxyserver = ctx.master.addons.get("proxyserver")
    if proxyserver is not None:
        ports.update(int(address[1]) for address in proxyserver.listen_addrs())
    options = ctx.options
    for name in ("listen_port", "gatekeeper_metrics_port", "gatekeeper_pac_port"):
        value = getattr(options, name, None)
        if isinstance(value, int) and value > 0:
            ports.add(value)
    ports.update(listener.address[1] for listener in runtime.listeners)  # also when 0 was asked
    ports.update(runtime.group_ports)  # with workers: the supervisor's, worker 0's PAC
    return ports


class LocalAddresses:
    """Whether an address belongs to this machine: binding a socket to it succeeds only then.

    Answers are cached for a short while (interfaces change rarely: DHCP, VPN); the cache is
    bounded. With non-local binds enabled every bind succeeds: `usable` is then False and only
    the fixed ranges (loopback, link-local, ...) are recognized.
    """

    TTL = 30.0
    MAX_ENTRIES = 1024
    PROBES = ("240.0.0.1", "100::1")  # reserved and discard-only: never an interface address

    def __init__(self) -> None:
        self._known: dict[IPAddress, tuple[bool, float]] = {}
        self.usable = not any(_binds(probe) for probe in self.PROBES)

    def __call__(self, ip: IPAddress) -> bool:
        if not self.usable:
            return False
        now = time.monotonic()
        known = self._known.get(ip)
        if known is not None and now - known[1] < self.TTL:
            return known[0]
        local = _binds(str(ip))
        if len(self._known) >= self.MAX_ENTRIES:
            self._known.clear()
        self._known[ip] = (local, now)
        return local


def _binds(address: str) -> bool:
    """True if a socket can be bound to `address` (port 0: nothing is taken).

    Only "address not available" means not local; any other failure counts as local, so an
    unexpected error refuses rather than opens."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except OSError as e:
        return e.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
    return True
