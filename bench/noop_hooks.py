"""mitmdump script for the benchmark: one addon with the hooks gatekeeper's chain entry has
(`gatekeeper.addons.dispatch.Addons`), each doing nothing.

    mitmdump --set connection_strategy=lazy -s bench/noop_hooks.py

With gatekeeper's connection strategy (lazy), the proxy it makes does what gatekeeper's
mitmproxy does plus mitmproxy's own work of calling those hooks, so gatekeeper against it
shows what gatekeeper's hook code itself costs, and it against `mitmdump --set
connection_strategy=lazy` what any addon with these hooks costs, whatever it does.
"""

from __future__ import annotations

from typing import Any


class NoopHooks:
    """Every hook of gatekeeper's chain entry that mitmproxy calls for traffic."""

    def http_connect(self, flow: Any) -> None:
        pass

    def tls_clienthello(self, data: Any) -> None:
        pass

    def server_connect(self, data: Any) -> None:
        pass

    def server_connected(self, data: Any) -> None:
        pass

    def server_connect_error(self, data: Any) -> None:
        pass

    def requestheaders(self, flow: Any) -> None:
        pass

    def request(self, flow: Any) -> None:
        pass

    def response(self, flow: Any) -> None:
        pass

    def tcp_start(self, flow: Any) -> None:
        pass


addons = [NoopHooks()]
