"""Evasion by naming no host: TLS without SNI (or with an address as SNI), plain HTTP and raw
bytes in a CONNECT tunnel to an IP address, each through a real `gatekeeper serve`.

bob has no grant; alice is granted Facebook. Every trick targets the fake Facebook site by
its loopback address, so "the upstream saw no connection" is its connection count.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import struct
from dataclasses import dataclass

import netns
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from netns import INTERNET, UNKNOWN_CLIENT
from OpenSSL import SSL
from support import configs
from support.tls import cert_sha256
from test_gateway_netns import (  # noqa: F401 (fixtures: the gateway in namespaces)
    apply,
    gateway_proxy,
    policy,
    sites,
    topo,
    write_gateway,
)

pytestmark = pytest.mark.e2e  # starts a real proxy process

AUTH_ANY = ["--set", "proxyauth=any"]
TIMEOUT = 10
needs_netns = pytest.mark.skipif(netns.unavailable_reason() is not None,
                                 reason=netns.unavailable_reason() or "")


@pytest.fixture
def proxy(gk, tmp_path):
    approvals = configs.approvals_doc()
    approvals["grants"].append(configs.grant("alice", "facebook"))
    return gk(configs.write_config(tmp_path / "config", approvals=approvals), args=AUTH_ANY)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    cert_sha256: str  # of the certificate the TLS peer presented


def tunnel(proxy, target: str, port: int, user: str = "bob") -> socket.socket:
    """A CONNECT tunnel through the proxy, signed in as `user` (any password)."""
    sock = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=TIMEOUT)
    token = base64.b64encode(f"{user}:pw".encode()).decode()
    sock.sendall(f"CONNECT {target}:{port} HTTP/1.1\r\nHost: {target}:{port}\r\n"
                 f"Proxy-Authorization: Basic {token}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, f"proxy closed the tunnel: {head!r}"
        head += chunk
    assert head.split(b" ", 2)[1] == b"200", head
    return sock


def parse(raw: bytes, cert: str = "") -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Answer(int(lines[0].split()[1]), headers, body, cert)


def https_get(sock: socket.socket, sni: str | None, host_header: str) -> Answer:
    """One HTTPS request over `sock` with exactly this SNI (none, a name or an address: any
    bytes pyOpenSSL is given) and Host header; the certificate is recorded, not checked."""
    # pyOpenSSL wants a blocking socket; the kernel's timeout still bounds every wait.
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", TIMEOUT, 0))
    conn = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), sock)
    if sni is not None:
        conn.set_tlsext_host_name(sni.encode())
    conn.set_connect_state()
    conn.do_handshake()
    der = conn.get_peer_certificate(as_cryptography=True).public_bytes(Encoding.DER)
    conn.sendall(f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
    raw = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except (SSL.ZeroReturnError, SSL.SysCallError):
            break
        if not chunk:
            break
        raw += chunk
    return parse(raw, cert_sha256(der))


def plain_exchange(sock: socket.socket, data: bytes) -> bytes:
    """Send `data` and read until the proxy closes the connection."""
    sock.sendall(data)
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    return raw


def decimal(address: str) -> str:
    return str(int(ipaddress.IPv4Address(address)))


def assert_blocked(answer: Answer, reason: str = "not_approved") -> None:
    assert answer.status == 403, answer
    assert answer.headers["X-Gatekeeper-Reason"] == reason


# --- TLS that names no host ---------------------------------------------------------------


def test_tls_without_sni_to_a_social_sites_address_is_blocked(proxy, fake_sites):
    facebook = fake_sites.facebook
    with tunnel(proxy, facebook.address, facebook.https_port) as sock:
        answer = https_get(sock, None, "www.facebook.com")
    assert_blocked(answer)
    assert facebook.connections == 0
    assert proxy.metric("gatekeeper_unnamed_connections_total", outcome="intercepted") == 1


def test_tls_without_sni_to_a_decimal_address_is_blocked(proxy, fake_sites):
    facebook = fake_sites.facebook
    with tunnel(proxy, decimal(facebook.address), facebook.https_port) as sock:
        answer = https_get(sock, None, "www.facebook.com")
    assert_blocked(answer)
    assert facebook.connections == 0


def test_tls_with_an_address_as_sni_is_blocked(proxy, fake_sites):
    facebook = fake_sites.facebook
    with tunnel(proxy, facebook.address, facebook.https_port) as sock:
        answer = https_get(sock, facebook.address, "www.facebook.com")
    assert_blocked(answer)
    assert facebook.connections == 0


def test_tls_with_a_decimal_address_as_sni_is_blocked(proxy, fake_sites):
    facebook = fake_sites.facebook
    with tunnel(proxy, facebook.address, facebook.https_port) as sock:
        answer = https_get(sock, decimal(facebook.address), "www.facebook.com")
    assert_blocked(answer)
    assert facebook.connections == 0


def test_approved_employee_without_sni_reaches_the_social_site(proxy, fake_sites):
    facebook = fake_sites.facebook
    with tunnel(proxy, facebook.address, facebook.https_port, user="alice") as sock:
        answer = https_get(sock, None, "www.facebook.com")
    assert (answer.status, answer.body) == (200, b"hello from www.facebook.com")
    assert [r.host for r in facebook.requests] == ["www.facebook.com"]
    assert answer.cert_sha256 != facebook.cert_sha256  # decrypted by the proxy
    decision = proxy.wait_for_log(lambda e: e.get("event") == "decision")
    assert (decision["employee"], decision["decision"]) == ("alice", "allow")


# --- plain HTTP and raw bytes in a tunnel to an address -----------------------------------


def test_plain_http_in_a_tunnel_to_an_address_is_decided_on_its_host(proxy, fake_sites):
    facebook = fake_sites.facebook
    with tunnel(proxy, facebook.address, facebook.http_port) as sock:
        raw = plain_exchange(sock, b"GET / HTTP/1.1\r\nHost: www.facebook.com\r\n"
                                   b"Connection: close\r\n\r\n")
    assert_blocked(parse(raw))
    assert facebook.connections == 0


def test_host_header_without_a_space_in_a_tunnel_to_an_address_is_blocked(proxy, fake_sites):
    # mitmproxy's own Host sniffing wants "Host: " with a space; HTTP does not.
    facebook = fake_sites.facebook
    with tunnel(proxy, facebook.address, facebook.http_port) as sock:
        raw = plain_exchange(sock, b"GET / HTTP/1.1\r\nHost:www.facebook.com\r\n"
                                   b"Connection: close\r\n\r\n")
    assert_blocked(parse(raw))
    assert facebook.connections == 0


def test_second_request_on_a_tunnel_opened_for_another_host_is_blocked(proxy, fake_sites):
    # Passthrough is decided once per connection: an innocent first request must not open
    # the tunnel for a governed second one.
    facebook = fake_sites.facebook
    with tunnel(proxy, facebook.address, facebook.http_port) as sock:
        raw = plain_exchange(sock, b"GET / HTTP/1.1\r\nHost: bank.example\r\n\r\n"
                                   b"GET / HTTP/1.1\r\nHost: www.facebook.com\r\n"
                                   b"Connection: close\r\n\r\n")
    first, _, second = raw.partition(b"HTTP/1.1 403")
    assert first.startswith(b"HTTP/1.1 200"), raw
    assert_blocked(parse(b"HTTP/1.1 403" + second))
    assert [r.host for r in facebook.requests] == ["bank.example"]


def test_raw_bytes_in_a_tunnel_to_an_address_are_refused(proxy, fake_sites):
    facebook = fake_sites.facebook
    with tunnel(proxy, facebook.address, facebook.https_port) as sock:
        assert plain_exchange(sock, b"\x00\x01 not tls, not http\n") == b""
    event = proxy.wait_for_log(lambda e: e.get("event") == "connection_refused")
    assert (event["client"], event["target"], event["port"]) == (
        "127.0.0.1", facebook.address, facebook.https_port)
    assert proxy.metric("gatekeeper_unnamed_connections_total", outcome="refused") == 1
    assert facebook.connections == 0


def test_http_disguised_as_raw_bytes_to_a_governed_name_is_refused(proxy, fake_sites):
    # A leading empty line makes mitmproxy take HTTP for raw TCP; servers skip it (RFC 9112).
    facebook = fake_sites.facebook
    with tunnel(proxy, "www.facebook.com", facebook.http_port) as sock:
        raw = plain_exchange(sock, b"\r\nGET / HTTP/1.1\r\nHost: www.facebook.com\r\n"
                                   b"Connection: close\r\n\r\n")
    assert raw == b""
    assert proxy.metric("gatekeeper_unnamed_connections_total", outcome="refused") == 1
    assert facebook.connections == 0


# --- what must keep working ---------------------------------------------------------------


def test_non_social_site_by_address_still_answers(proxy, fake_sites):
    bank = fake_sites.bank
    with tunnel(proxy, bank.address, bank.https_port) as sock:
        answer = https_get(sock, None, "bank.example")
    assert (answer.status, answer.body) == (200, b"hello from bank.example")
    assert len(bank.requests) == 1
    assert "bank.example" not in proxy.stdout + proxy.stderr  # nothing logged about it


def test_non_social_site_by_name_is_relayed_undecrypted(proxy, fake_sites):
    bank = fake_sites.bank
    with tunnel(proxy, bank.host, bank.https_port) as sock:
        answer = https_get(sock, bank.host, bank.host)
    assert answer.status == 200
    assert answer.cert_sha256 == bank.cert_sha256
    # Decided by allow_hosts alone: gatekeeper's hook never saw it.
    assert proxy.metric("gatekeeper_unnamed_connections_total") == 0


def test_non_social_sni_to_an_address_is_relayed_undecrypted(proxy, fake_sites):
    bank = fake_sites.bank
    with tunnel(proxy, bank.address, bank.https_port) as sock:
        answer = https_get(sock, bank.host, bank.host)
    assert answer.status == 200
    assert answer.cert_sha256 == bank.cert_sha256
    assert proxy.metric("gatekeeper_unnamed_connections_total", outcome="passthrough") == 1


# --- transparent mode: every connection targets an address ----------------------------------


@pytest.fixture
def transparent(topo, sites, gateway_proxy, tmp_path):  # noqa: F811
    config_dir = write_gateway(policy(tmp_path / "config"), topo, "transparent")
    apply(topo, config_dir)
    return gateway_proxy(config_dir)


def direct(topo) -> socket.socket:  # noqa: F811
    """A connection from an unregistered LAN address straight to the social site's :443,
    which the gateway redirects to its transparent listener."""
    sock = topo.client.socket()
    sock.settimeout(TIMEOUT)
    sock.bind((UNKNOWN_CLIENT, 0))
    sock.connect((INTERNET, 443))
    return sock


@needs_netns
def test_transparent_tls_without_sni_is_blocked(topo, sites, transparent):  # noqa: F811
    with direct(topo) as sock:
        answer = https_get(sock, None, "www.facebook.com")
    assert_blocked(answer, "unknown_employee")
    assert sites.social.connections == 0


@needs_netns
def test_transparent_raw_bytes_are_refused(topo, sites, transparent):  # noqa: F811
    with direct(topo) as sock:
        assert plain_exchange(sock, b"\x00\x01 not tls, not http\n") == b""
    event = transparent.wait_for_log(lambda e: e.get("event") == "connection_refused")
    assert (event["client"], event["target"]) == (UNKNOWN_CLIENT, INTERNET)
    assert sites.social.connections == 0
