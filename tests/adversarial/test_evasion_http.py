"""Evasion inside an intercepted connection: an HTTP/2 `:authority` that names another service
than the TLS SNI, and a WebSocket upgrade to a governed host, each through a real proxy.

alice is granted LinkedIn only; bob has no grant. The fake Facebook site's request log and
connection count show that nothing reached it.
"""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import pytest
from support.rawhttp import request, tunnel

AUTH_ANY = ["--set", "proxyauth=any"]
TIMEOUT = 10


@pytest.fixture
def proxy(gk):
    return gk(args=AUTH_ANY)


def h2_get(sock, authority: str, path: str) -> tuple[int | None, dict[bytes, bytes]]:
    """One HTTP/2 GET with exactly this `:authority`; the status and headers of the answer."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", path), (":authority", authority),
                          (":scheme", "https"), ("accept", "application/json")],
                      end_stream=True)
    sock.sendall(conn.data_to_send())
    status, headers = None, {}
    for _ in range(100):  # bounded: a handful of frames make the answer
        data = sock.recv(65536)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers)
                status = int(headers[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset |
                            h2.events.ConnectionTerminated):
                return status, headers
        sock.sendall(conn.data_to_send())
    return status, headers


def test_h2_authority_naming_another_service_than_the_sni_is_decided_on_the_authority(
        proxy, fake_sites):
    linkedin, facebook = fake_sites.linkedin, fake_sites.facebook
    sock = tunnel(proxy, linkedin.host, linkedin.https_port, user="alice", alpn="h2")
    with sock:
        assert sock.selected_alpn_protocol() == "h2"
        status, headers = h2_get(sock, f"{facebook.host}:{facebook.https_port}", "/feed")

    assert status == 403
    assert headers[b"x-gatekeeper-reason"] == b"not_approved"
    assert facebook.connections == 0 and not facebook.requests_to("/feed")


def test_h2_authority_of_the_granted_service_still_passes(proxy, fake_sites):
    """The control: the same connection with a matching `:authority` is allowed."""
    linkedin = fake_sites.linkedin
    sock = tunnel(proxy, linkedin.host, linkedin.https_port, user="alice", alpn="h2")
    with sock:
        status, _ = h2_get(sock, f"{linkedin.host}:{linkedin.https_port}", "/feed")

    assert status == 200
    assert linkedin.requests_to("/feed")


def test_websocket_upgrade_to_a_governed_host_is_blocked_before_the_upgrade(proxy, fake_sites):
    facebook = fake_sites.facebook
    sock = tunnel(proxy, facebook.host, facebook.https_port, user="bob")
    with sock:
        sock.settimeout(TIMEOUT)
        reply = request(sock, "GET", "/ws/chat", facebook.host, [
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ])

    assert reply.status == 403
    assert reply.getheader("X-Gatekeeper-Reason") == "not_approved"
    assert facebook.connections == 0 and not facebook.requests_to("/ws/chat")


def test_websocket_upgrade_over_plain_http_is_blocked_too(proxy, fake_sites):
    facebook = fake_sites.facebook
    with socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=TIMEOUT) as sock:
        target = f"http://{facebook.host}:{facebook.http_port}/ws/chat"
        reply = request(sock, "GET", target, f"{facebook.host}:{facebook.http_port}", [
            ("Proxy-Authorization", "Basic Ym9iOnB3"),  # bob:pw
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ])

    assert reply.status == 403
    assert reply.getheader("X-Gatekeeper-Reason") == "not_approved"
    assert facebook.connections == 0
