"""Reaching the gateway itself through its proxy (issue 9, item 5), through a real proxy.

An employee asks the proxy for `http://127.0.0.1:9464/metrics`, tunnels to a database on the
gateway's loopback, or tries the cloud metadata address, in every spelling a resolver accepts.
Each must be refused, counted and logged, with nothing reaching the target: a listener on the
target address counts the connections it accepts.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
import requests

pytestmark = pytest.mark.e2e  # starts a real proxy process

AUTH_ANY = ["--set", "proxyauth=any"]
REFUSED = "gatekeeper_destinations_refused_total"
ALIAS = "gateway-alias.example"  # in the proxy's /etc/hosts: 127.0.0.1
TIMEOUT = 10
SECRET_PATH = "/secret-admin-path"


class Listener:
    """A TCP service on the gateway: counts accepted connections, answers a little HTTP."""

    def __init__(self, host: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n"
                                 b"Connection: close\r\n\r\nsecret")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    service = Listener("127.0.0.1")
    yield service
    service.close()


@pytest.fixture
def listener6() -> Iterator[Listener]:
    try:
        service = Listener("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    yield service
    service.close()


def strict_proxy(gk, **kwargs):
    """The proxy as shipped: no allow list, so loopback is refused."""
    return gk(args=AUTH_ANY, hosts={ALIAS: "127.0.0.1"}, allowed_destinations=(), **kwargs)


def via_proxy(proxy, url: str) -> requests.Response:
    session = proxy.session("mallory", "pw")
    return session.get(url, timeout=TIMEOUT, allow_redirects=False)


def tunnel(proxy, target: str) -> tuple[int, bytes]:
    """CONNECT to `target`, then speak HTTP inside: the CONNECT status and what came back
    through the tunnel (b"" when the proxy closed it)."""
    with socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=TIMEOUT) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
                     "Proxy-Authorization: Basic bWFsbG9yeTpwdw==\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return 0, b""
            head += chunk
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            return status, b""
        sock.sendall(b"GET " + SECRET_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        inside = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                inside += chunk
        return status, inside


def assert_refused_request(reply: requests.Response) -> None:
    """A literal address is refused by the proxy (403); a name when the proxy tries to
    connect (mitmproxy's 502 naming gatekeeper's refusal)."""
    if reply.status_code == 403:
        assert reply.headers["X-Gatekeeper-Reason"] == "destination_refused"
    else:
        assert reply.status_code == 502 and "gatekeeper refused the destination" in reply.text
    assert "secret" not in reply.text.replace("gatekeeper refused", "")


def test_metrics_listener_is_refused_even_with_loopback_allowed(gk) -> None:
    proxy = gk(args=AUTH_ANY, hosts={})  # the test harness allows 127.0.0.0/8 upstreams
    reply = via_proxy(proxy, f"http://127.0.0.1:{proxy.metrics_port}/metrics")
    assert reply.status_code == 403
    assert reply.headers["X-Gatekeeper-Reason"] == "destination_refused"
    assert "gatekeeper_" not in reply.text
    assert tunnel(proxy, f"127.0.0.1:{proxy.metrics_port}") == (403, b"")
    assert tunnel(proxy, f"127.0.0.1:{proxy.listen_port}") == (403, b"")  # the proxy itself
    assert proxy.metric(REFUSED, reason="gateway_port") == 3


def test_connect_to_a_loopback_service_is_refused(gk, listener) -> None:
    proxy = strict_proxy(gk)
    assert tunnel(proxy, f"127.0.0.1:{listener.port}") == (403, b"")
    assert_refused_request(via_proxy(proxy, f"http://127.0.0.1:{listener.port}{SECRET_PATH}"))
    assert listener.accepted == 0
    assert proxy.metric(REFUSED, reason="loopback") == 2
    event = proxy.wait_for_log(lambda e: e.get("event") == "destination_refused")
    assert event["client"] == "127.0.0.1" and event["address"] == "127.0.0.1"
    assert event["port"] == listener.port and event["reason"] == "loopback"
    assert SECRET_PATH not in proxy.stdout + proxy.stderr


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f.1", "0177.0.0.1", "127.1",
                                  ALIAS, "LOCALHOST"])
def test_other_spellings_of_loopback_are_refused(gk, listener, host) -> None:
    proxy = strict_proxy(gk)
    assert_refused_request(via_proxy(proxy, f"http://{host}:{listener.port}{SECRET_PATH}"))
    status, inside = tunnel(proxy, f"{host}:{listener.port}")
    # A literal is refused at CONNECT; a name when the tunnel is first used (connections are
    # opened lazily): either way nothing comes back and nothing reaches the service.
    assert status in (403, 200) and b"secret" not in inside
    assert listener.accepted == 0
    assert proxy.metric(REFUSED) == 2
    assert proxy.wait_for_log(lambda e: e.get("event") == "destination_refused")["host"]


def test_ipv6_loopback_is_refused(gk, listener6) -> None:
    proxy = strict_proxy(gk)
    assert_refused_request(via_proxy(proxy, f"http://[::1]:{listener6.port}{SECRET_PATH}"))
    assert tunnel(proxy, f"[::1]:{listener6.port}") == (403, b"")
    assert_refused_request(
        via_proxy(proxy, f"http://[::ffff:127.0.0.1]:{listener6.port}{SECRET_PATH}")
    )
    assert listener6.accepted == 0
    assert proxy.metric(REFUSED, reason="loopback") == 3


@pytest.mark.parametrize(("address", "reason"), [
    ("169.254.169.254", "metadata"),
    ("[fd00:ec2::254]", "metadata"),
    ("169.254.1.1", "link_local"),
    ("[fe80::1]", "link_local"),
    ("0.0.0.0", "unspecified"),
])
def test_metadata_link_local_and_unspecified_addresses_are_refused(gk, address, reason) -> None:
    proxy = strict_proxy(gk)
    reply = via_proxy(proxy, f"http://{address}/latest/meta-data/")
    assert reply.status_code == 403
    assert reply.headers["X-Gatekeeper-Reason"] == "destination_refused"
    assert tunnel(proxy, f"{address}:443") == (403, b"")
    assert proxy.metric(REFUSED, reason=reason) == 2


def test_the_gateways_other_addresses_are_refused(gk) -> None:
    """An address of one of the gateway's interfaces (not loopback) reaches it as well."""
    address = own_non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    service = Listener(address)
    try:
        proxy = strict_proxy(gk)
        assert tunnel(proxy, f"{address}:{service.port}") == (403, b"")
        assert_refused_request(via_proxy(proxy, f"http://{address}:{service.port}/"))
        assert service.accepted == 0
        assert proxy.metric(REFUSED, reason="gateway_address") == 2
    finally:
        service.close()


def test_an_allow_listed_destination_works_and_nothing_else_opens(gk, listener) -> None:
    other = Listener("127.0.0.1")
    try:
        proxy = gk(args=AUTH_ANY, hosts={ALIAS: "127.0.0.1"},
                   allowed_destinations=(f"127.0.0.1:{listener.port}",))
        reply = via_proxy(proxy, f"http://127.0.0.1:{listener.port}/")
        assert reply.status_code == 200 and reply.text == "secret"
        reply = via_proxy(proxy, f"http://{ALIAS}:{listener.port}/")  # by name: pinned, works
        assert reply.status_code == 200 and reply.text == "secret"
        assert listener.accepted == 2
        assert_refused_request(via_proxy(proxy, f"http://127.0.0.1:{other.port}/"))
        assert_refused_request(via_proxy(proxy, f"http://127.0.0.1:{proxy.metrics_port}/"))
        assert other.accepted == 0
        assert proxy.metric(REFUSED) == 2
    finally:
        other.close()


def test_a_bad_allow_list_entry_stops_the_start(gk) -> None:
    proxy = gk(args=AUTH_ANY, hosts={}, allowed_destinations=("127.0.0.1:99999",), wait=False)
    assert proxy.wait_exit() == 2
    assert "gatekeeper_allowed_destinations" in proxy.stderr


def own_non_loopback_address() -> str | None:
    """The address this machine would use to reach the outside, without sending anything."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address
