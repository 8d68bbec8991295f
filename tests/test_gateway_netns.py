"""The office gateway in real network namespaces: client -- gateway -- internet.

The gateway is set up as docs/deployment.md does it: the rules are applied with the real
`gatekeeper firewall apply`, and the real `gatekeeper serve` runs in the gateway namespace with
the systemd unit's flags (listeners from gateway.yaml, metrics on loopback) and a hosts file
for the names it must resolve. Fake HTTPS sites listen on port 443 in the internet namespace:
a social one (www.facebook.com) and a non-social one (bank.example). The client side is this
test, with sockets made in the client namespace from one of several LAN addresses.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import netns
import pytest
from netns import (
    CLIENT,
    EXEMPT_CLIENT,
    GATEWAY_LAN,
    GATEWAY_WAN,
    INTERNET,
    INTERNET_OTHER,
    LAN_NETWORK,
    UNKNOWN_CLIENT,
    Listeners,
    Namespace,
    Topology,
    tcp_greeting,
    udp_exchange,
)
from support import configs
from support.fakesite import FakeSite
from support.proxy import GatekeeperProcess, hosts_file_text
from support.tls import shared_ca

from gatekeeper.gateway import load_gateway, render_ruleset

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.netns,
    pytest.mark.skipif(netns.unavailable_reason() is not None,
                       reason=netns.unavailable_reason() or ""),
]

GATEKEEPER = Path(sys.executable).parent / "gatekeeper"
PROXY_PORT, TRANSPARENT_PORT, PAC_PORT, METRICS_PORT = 8080, 8081, 8082, 9464
CONTROL_PORT = 9000  # not governed: shows the path works, so a refusal is the rules' doing
PASSWORD = "correct-horse-42"  # dave's proxy login; must never appear in a log


@pytest.fixture
def topo() -> Iterator[Topology]:
    with netns.topology() as topology:
        yield topology


def write_gateway(config_dir: Path, topo: Topology, mode: str) -> Path:
    """gateway.yaml for the test network: explicit mode names the LAN by interface,
    transparent mode by network, so both ways of saying "LAN" are exercised."""
    config_dir.mkdir(exist_ok=True)
    lan = (f"interfaces: [{topo.lan_interface}]" if mode == "explicit"
           else f"networks: [{LAN_NETWORK}]")
    (config_dir / "gateway.yaml").write_text(
        f"mode: {mode}\n"
        f"lan:\n  {lan}\n"
        f"proxy:\n  address: {GATEWAY_LAN}\n  port: {PROXY_PORT}\n"
        f"  transparent_port: {TRANSPARENT_PORT}\n  pac_port: {PAC_PORT}\n"
        f"  metrics_port: {METRICS_PORT}\n"
        f"exempt:\n  sources: [{EXEMPT_CLIENT}]\n"
    )
    return config_dir


def firewall(topo: Topology, action: str, config_dir: Path) -> subprocess.CompletedProcess[str]:
    return topo.gateway.run([str(GATEKEEPER), "firewall", action, "--config-dir", str(config_dir)],
                            check=False)


def apply(topo: Topology, config_dir: Path) -> None:
    result = firewall(topo, "apply", config_dir)
    assert result.returncode == 0, result.stderr


def listing(topo: Topology) -> str:
    return topo.gateway.run(["nft", "list", "table", "inet", "gatekeeper"]).stdout


@pytest.fixture
def internet(topo: Topology) -> Iterator[Listeners]:
    listeners = Listeners(
        topo.internet, INTERNET, tcp_ports=(80, 853, CONTROL_PORT),
        udp_ports=(443, 853, CONTROL_PORT), name="internet",
    )
    yield listeners
    listeners.close()


def test_apply_replaces_the_table_atomically_and_repeatably(topo: Topology, tmp_path: Path):
    explicit = write_gateway(tmp_path / "explicit", topo, "explicit")
    transparent = write_gateway(tmp_path / "transparent", topo, "transparent")

    checked = firewall(topo, "check", explicit)
    assert checked.returncode == 0, checked.stderr
    assert listing_absent(topo), "check must not apply anything"

    apply(topo, explicit)
    first = listing(topo)
    assert f"redirect to :{TRANSPARENT_PORT}" in first and "reject with tcp reset" in first
    apply(topo, explicit)
    assert listing(topo) == first
    tables = topo.gateway.run(["nft", "list", "tables"]).stdout
    assert tables.count("table inet gatekeeper") == 1

    apply(topo, transparent)
    assert f"redirect to :{PROXY_PORT}" in listing(topo)
    apply(topo, explicit)
    assert listing(topo) == first, "switching modes must leave no rule of the old mode behind"

    # One transaction: a failing line anywhere leaves the old table exactly as it was.
    broken = render_ruleset(load_gateway(transparent)) + (
        "add rule inet gatekeeper forward tcp dport 9 jump no_such_chain\n"
    )
    refused = topo.gateway.run(["nft", "-f", "-"], stdin=broken, check=False)
    assert refused.returncode != 0
    assert listing(topo) == first

    (transparent / "gateway.yaml").write_text("mode: sideways\nlan:\n  networks: [192.0.2.0/24]\n")
    invalid = firewall(topo, "apply", transparent)
    assert invalid.returncode == 1
    assert "gateway.yaml:1: mode must be 'explicit' or 'transparent'" in invalid.stderr
    assert listing(topo) == first


def listing_absent(topo: Topology) -> bool:
    return "gatekeeper" not in topo.gateway.run(["nft", "list", "tables"]).stdout


@pytest.mark.parametrize("mode", ["explicit", "transparent"])
def test_quic_and_dns_over_tls_are_refused(
    topo: Topology, internet: Listeners, tmp_path: Path, mode: str
):
    apply(topo, write_gateway(tmp_path, topo, mode))
    assert_quic_and_dns_over_tls_refused(topo, internet)


def assert_quic_and_dns_over_tls_refused(topo: Topology, internet: Listeners) -> None:
    assert udp_exchange(topo.client, INTERNET, CONTROL_PORT) == f"internet udp {CONTROL_PORT}"
    assert tcp_greeting(topo.client, INTERNET, CONTROL_PORT).startswith("internet")
    for port in (443, 853):
        with pytest.raises(ConnectionRefusedError):
            udp_exchange(topo.client, INTERNET, port)
    with pytest.raises(ConnectionRefusedError):
        tcp_greeting(topo.client, INTERNET, 853)
    assert internet.udp[443] == [] and internet.udp[853] == [] and internet.tcp[853] == []
    assert internet.udp[CONTROL_PORT] == [CLIENT]


# --- the real proxy ---------------------------------------------------------------------------


@dataclass
class Sites:
    social: FakeSite  # www.facebook.com on INTERNET:443
    bank: FakeSite  # bank.example on INTERNET_OTHER:443, not governed


@pytest.fixture
def sites(topo: Topology) -> Iterator[Sites]:
    """The fake sites, listening in the internet namespace; the gateway's hosts file names
    them (install guide: the gateway resolves names as usual)."""
    social = topo.internet.call(lambda: FakeSite(
        ["www.facebook.com", "facebook.com"], address=INTERNET, https_port=443))
    bank = topo.internet.call(lambda: FakeSite(
        ["bank.example"], address=INTERNET_OTHER, https_port=443))
    topo.gateway.write_etc("hosts", hosts_file_text({
        "www.facebook.com": INTERNET, "facebook.com": INTERNET, "bank.example": INTERNET_OTHER,
    }))
    with social, bank:
        yield Sites(social, bank)


class GatewayProxy(GatekeeperProcess):
    """`gatekeeper serve` in the gateway namespace with the systemd unit's flags: listeners
    from gateway.yaml, metrics on loopback (plus `ssl_insecure` for the fake sites)."""

    def __init__(self, topo: Topology, config_dir: Path, state_dir: Path, args: list[str],
                 name: str) -> None:
        super().__init__(config_dir, state_dir, args=args, prefix=topo.gateway.command([]),
                         name=name, listen_port=PROXY_PORT, metrics_port=METRICS_PORT)
        self.namespace = topo.gateway

    def proxy_argv(self) -> list[str]:
        return [
            str(GATEKEEPER), "serve",
            "--config-dir", str(self.config_dir), "--state-dir", str(self.state_dir),
            "--listen-host", "0.0.0.0", "--metrics-host", "127.0.0.1",
            "--log-format", "json", "--set", "ssl_insecure=true", *self.args,
        ]

    def _ready(self) -> bool:
        try:
            return http_get(self.namespace, "127.0.0.1", METRICS_PORT, "/readyz")[0] == 200
        except OSError:
            return False


@pytest.fixture
def gateway_proxy(
    topo: Topology, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., GatewayProxy]]:
    started: list[GatewayProxy] = []

    def start(config_dir: Path, args: list[str] | None = None) -> GatewayProxy:
        proxy = GatewayProxy(topo, config_dir, tmp_path / "state", args or [],
                             name=request.node.name)
        started.append(proxy)
        return proxy.start()  # type: ignore[return-value]

    yield start
    for proxy in started:
        proxy.stop()
        log = proxy.stdout + proxy.stderr
        assert PASSWORD not in log and "bank.example" not in log, "a secret or a non-social " \
            "site reached the log"


def policy(config_dir: Path) -> Path:
    """dave's devices have the address CLIENT and he may use Facebook; nobody else may."""
    approvals = configs.approvals_doc()
    approvals["employees"]["dave"] = configs.employee("dave", addresses=[CLIENT])
    approvals["grants"].append(configs.grant("dave", "facebook"))
    configs.write_config(config_dir, approvals=approvals)
    configs.write_htpasswd(config_dir / "users.htpasswd", {"dave": PASSWORD})
    return config_dir


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str
    cert_sha256: str  # of the certificate the TLS server presented


def fetch(ns: Namespace, address: str, port: int, hostname: str, *, source: str, ca: Path,
          tunnel: bool = False, login: tuple[str, str] | None = None) -> Reply:
    """GET https://`hostname`/ from `source` in `ns`, by TCP to `address:port` (a CONNECT
    tunnel through a proxy there when `tunnel`), trusting only `ca`."""
    with ns.socket() as conn:
        conn.settimeout(10)
        conn.bind((source, 0))
        conn.connect((address, port))
        if tunnel:
            head = [f"CONNECT {hostname}:443 HTTP/1.1", f"Host: {hostname}:443"]
            if login:
                token = base64.b64encode(":".join(login).encode()).decode()
                head.append(f"Proxy-Authorization: Basic {token}")
            conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            answer = read_head(conn)
            if not answer.startswith(b"HTTP/1.1 200"):
                status = int(answer.split()[1])
                return Reply(status, http.client.HTTPMessage(), answer.decode(), "")
        context = ssl.create_default_context(cafile=str(ca))
        with context.wrap_socket(conn, server_hostname=hostname) as tls:
            der = tls.getpeercert(binary_form=True) or b""
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\nAccept: text/html\r\n"
                        "Connection: close\r\n\r\n".encode())
            response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
            response.begin()
            body = response.read().decode()
    return Reply(response.status, response.headers, body, hashlib.sha256(der).hexdigest())


def read_head(conn: socket.socket) -> bytes:
    """The proxy's answer to CONNECT, up to the blank line (bounded)."""
    head = b""
    while not head.endswith(b"\r\n\r\n") and len(head) < 8192:
        chunk = conn.recv(1)
        if not chunk:
            break
        head += chunk
    return head


def http_get(ns: Namespace, address: str, port: int, path: str) -> tuple[int, str, str]:
    """Plain HTTP GET from `ns`: (status, content type, body)."""
    with ns.socket() as conn:
        conn.settimeout(5)
        conn.connect((address, port))
        client = http.client.HTTPConnection(address, port)
        client.sock = conn
        client.request("GET", path)
        response = client.getresponse()
        return response.status, response.headers["Content-Type"], response.read().decode()


def test_transparent_gateway_polices_social_sites_by_address_and_passes_the_rest(
    topo: Topology, sites: Sites, internet: Listeners, tmp_path: Path, gateway_proxy
):
    config_dir = write_gateway(policy(tmp_path / "config"), topo, "transparent")
    apply(topo, config_dir)
    proxy = gateway_proxy(config_dir)

    # An address nobody registered: the block page, and the site never sees a connection.
    blocked = fetch(topo.client, INTERNET, 443, "www.facebook.com", source=UNKNOWN_CLIENT,
                    ca=proxy.ca_cert)
    assert blocked.status == 403
    assert blocked.headers["X-Gatekeeper-Reason"] == "unknown_employee"
    assert "Facebook" in blocked.body and "<html" in blocked.body
    assert sites.social.connections == 0

    # dave's address, granted Facebook: the site answers, through the proxy (its CA signed).
    allowed = fetch(topo.client, INTERNET, 443, "www.facebook.com", source=CLIENT,
                    ca=proxy.ca_cert)
    assert (allowed.status, allowed.body) == (200, "hello from www.facebook.com")
    assert sites.social.connections == 1
    assert allowed.cert_sha256 != sites.social.cert_sha256

    # A non-social site arrives with its own certificate: relayed undecrypted.
    bank = fetch(topo.client, INTERNET_OTHER, 443, "bank.example", source=UNKNOWN_CLIENT,
                 ca=shared_ca().cert_path)
    assert (bank.status, bank.cert_sha256) == (200, sites.bank.cert_sha256)

    assert_quic_and_dns_over_tls_refused(topo, internet)
    decisions = [(e["employee"], e["decision"]) for e in proxy.events("decision")]
    assert decisions == [(None, "block"), ("dave", "allow")]


def test_explicit_gateway_lets_nothing_around_the_proxy_and_direct_still_works(
    topo: Topology, sites: Sites, tmp_path: Path, gateway_proxy
):
    config_dir = write_gateway(policy(tmp_path / "config"), topo, "explicit")
    apply(topo, config_dir)
    proxy = gateway_proxy(config_dir, ["--set", f"proxyauth=@{config_dir / 'users.htpasswd'}"])

    # Browsers get the PAC file from the LAN-facing PAC listener; the metrics stay local.
    status, content_type, script = http_get(topo.client, GATEWAY_LAN, PAC_PORT, "/proxy.pac")
    assert (status, content_type) == (200, "application/x-ns-proxy-autoconfig")
    assert f'"PROXY {GATEWAY_LAN}:{PROXY_PORT}"' in script and '"facebook.com"' in script
    with pytest.raises(ConnectionRefusedError):
        http_get(topo.client, GATEWAY_LAN, METRICS_PORT, "/metrics")

    # Through the proxy, signed in as dave (from an address that is not his): allowed.
    via_proxy = fetch(topo.client, GATEWAY_LAN, PROXY_PORT, "www.facebook.com",
                      source=UNKNOWN_CLIENT, ca=proxy.ca_cert, tunnel=True,
                      login=("dave", PASSWORD))
    assert (via_proxy.status, via_proxy.body) == (200, "hello from www.facebook.com")
    assert sites.social.connections == 1
    anonymous = fetch(topo.client, GATEWAY_LAN, PROXY_PORT, "www.facebook.com",
                      source=UNKNOWN_CLIENT, ca=proxy.ca_cert, tunnel=True)
    assert anonymous.status == 407

    # Skipping the proxy: redirected to the transparent listener and policed by address.
    direct = fetch(topo.client, INTERNET, 443, "www.facebook.com", source=UNKNOWN_CLIENT,
                   ca=proxy.ca_cert)
    assert direct.status == 403
    assert direct.headers["X-Gatekeeper-Reason"] == "unknown_employee"
    assert sites.social.connections == 1, "the site never saw the direct connection"
    own_device = fetch(topo.client, INTERNET, 443, "www.facebook.com", source=CLIENT,
                       ca=proxy.ca_cert)
    assert own_device.status == 200 and sites.social.connections == 2

    # What the PAC file sends DIRECT still works, undecrypted, with the site's own certificate.
    bank = fetch(topo.client, INTERNET_OTHER, 443, "bank.example", source=UNKNOWN_CLIENT,
                 ca=shared_ca().cert_path)
    assert (bank.status, bank.cert_sha256) == (200, sites.bank.cert_sha256)
    # An exempt source is not governed at all: the real site, its own certificate.
    exempt = fetch(topo.client, INTERNET, 443, "www.facebook.com", source=EXEMPT_CLIENT,
                   ca=shared_ca().cert_path)
    assert exempt.cert_sha256 == sites.social.cert_sha256

    # The transparent listener takes redirected connections only; the WAN side reaches nothing.
    with pytest.raises(ConnectionRefusedError):
        tcp_greeting(topo.client, GATEWAY_LAN, TRANSPARENT_PORT)
    for port in (PROXY_PORT, TRANSPARENT_PORT, PAC_PORT):
        with pytest.raises(ConnectionRefusedError):
            tcp_greeting(topo.internet, GATEWAY_WAN, port)
