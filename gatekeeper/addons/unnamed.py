"""Connections that name no host: TLS without SNI to an IP address, and raw tunnels.

mitmproxy's `allow_hosts` decides passthrough on the names a connection carries. A CONNECT to
an IP address (`1.2.3.4`, also `2130706433`) with no SNI names nothing governed and would be
relayed undecrypted, with `Host: www.facebook.com` inside. So gatekeeper's pattern also
matches IP literals (`DomainIndex.allow_hosts_pattern`), and such connections come here:

- TLS whose SNI names a non-governed host is relayed undecrypted after all, as it would have
  been by name (in transparent mode every connection targets an address, so all non-social
  TLS passes this hook once, at its ClientHello).
- TLS without SNI, or with an IP address as SNI, is intercepted: each request inside is then
  decided on its Host header by the `Enforcer`, like any governed request.
- Plain HTTP in such a tunnel needs nothing here: mitmproxy parses it and the `Enforcer`
  decides each request on its Host header.
- Anything else (neither TLS nor HTTP) names no host and nothing can be decided on it: the
  tunnel is closed before an upstream connection is opened, counted and logged. That includes
  raw tunnels to a governed name, which would otherwise be relayed unchecked.

Connections by a non-governed name never reach this addon: `allow_hosts` relays them first.
"""

from __future__ import annotations

from mitmproxy import tcp, tls

from gatekeeper.addons.runtime import Runtime, log
from gatekeeper.core.hosts import ip_literal, normalize_host

REFUSED = "refused by gatekeeper: the tunnel carries neither TLS nor HTTP, so it names no host"


class UnnamedConnections:
    """Decides, per connection, the TLS and raw tunnels that `allow_hosts` could not."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        policy = self.runtime.policy
        address = data.context.server.address
        if policy is None or address is None:
            return  # intercepted: the Enforcer fails closed without a policy
        # Not the memoized `lookup`: in transparent mode every address and every non-social
        # name passes here, and they would crowd the social hosts out of its memo.
        domains = policy.domains
        sni = normalize_host(data.client_hello.sni or "")
        if sni and domains.service_for(sni) is not None:
            return  # a governed name: intercepted, decided per request
        if domains.service_for(normalize_host(address[0])) is not None:
            return  # a governed connect target: the same
        if sni and ip_literal(sni) is None:
            data.ignore_connection = True  # names a non-governed host: relayed as is
            self.runtime.metrics.unnamed_connections.labels("passthrough").inc()
            return
        # No name at all: decrypted, and each request decided on its Host header.
        self.runtime.metrics.unnamed_connections.labels("intercepted").inc()

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        server = flow.server_conn
        if server.timestamp_start is not None:
            return  # already connected: an HTTP upgrade whose request the Enforcer decided
        # Only tunnels `allow_hosts` intercepted get here (a relayed one has no flow): the
        # upstream connection this layer is about to open is refused; mitmproxy then closes
        # the client's side.
        server.error = REFUSED
        self.runtime.metrics.unnamed_connections.labels("refused").inc()
        client = flow.client_conn.peername
        target = server.address
        log.warning(
            "connection_refused",
            reason="no_host",
            client=client[0] if client else None,
            target=target[0] if target else None,
            port=target[1] if target else None,
        )
