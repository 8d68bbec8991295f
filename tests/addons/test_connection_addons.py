"""Connection-level addons in process: TLS and raw tunnels that name no host (unnamed)."""

from __future__ import annotations

from types import SimpleNamespace

from mitmproxy.test import tflow
from support.flows import metric

from gatekeeper.addons.unnamed import REFUSED, UnnamedConnections


def client_hello(sni: str | None, address: str) -> SimpleNamespace:
    """What `tls_clienthello` reads of mitmproxy's ClientHelloData."""
    return SimpleNamespace(
        context=SimpleNamespace(server=SimpleNamespace(address=(address, 443))),
        client_hello=SimpleNamespace(sni=sni), ignore_connection=False)


def test_tls_to_an_address_is_relayed_by_a_harmless_name_intercepted_without_one(
        runtime) -> None:
    addon = UnnamedConnections(runtime)
    harmless = client_hello("bank.example", "192.0.2.7")
    addon.tls_clienthello(harmless)
    assert harmless.ignore_connection is True
    nameless = client_hello(None, "192.0.2.7")
    addon.tls_clienthello(nameless)
    assert nameless.ignore_connection is False  # decrypted: each request decided by Host
    governed = client_hello("www.facebook.com", "192.0.2.7")
    addon.tls_clienthello(governed)
    assert governed.ignore_connection is False
    assert metric(runtime, "gatekeeper_unnamed_connections_total", outcome="passthrough") == 1
    assert metric(runtime, "gatekeeper_unnamed_connections_total", outcome="intercepted") == 1


def test_a_raw_tunnel_is_refused_before_its_upstream_connection(runtime) -> None:
    flow = tflow.ttcpflow()
    flow.server_conn.timestamp_start = None
    UnnamedConnections(runtime).tcp_start(flow)
    assert flow.server_conn.error == REFUSED
    assert metric(runtime, "gatekeeper_unnamed_connections_total", outcome="refused") == 1
