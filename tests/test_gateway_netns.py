"""The gateway firewall in real network namespaces: client -- gateway -- internet.

The rules are applied with the real `gatekeeper firewall` command inside the gateway namespace,
as the install guide does on the office gateway. A stand-in process plays the proxy until these
tests start `gatekeeper serve` there (one `Namespace.popen()` call).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import netns
import pytest
from netns import (
    CLIENT,
    EXEMPT_CLIENT,
    GATEWAY_LAN,
    GATEWAY_WAN,
    INTERNET,
    LAN_NETWORK,
    Listeners,
    Topology,
    tcp_greeting,
    udp_exchange,
)

from gatekeeper.gateway import load_gateway, render_ruleset

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(netns.unavailable_reason() is not None,
                       reason=netns.unavailable_reason() or ""),
]

PROXY_PORT = 8080
CONTROL_PORT = 9000  # not governed: shows the path works, so a refusal is the rules' doing


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
        f"proxy:\n  address: {GATEWAY_LAN}\n  port: {PROXY_PORT}\n  metrics_port: 9464\n"
        f"exempt:\n  sources: [{EXEMPT_CLIENT}]\n"
    )
    return config_dir


def firewall(topo: Topology, action: str, config_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gatekeeper.firewall", action, "--config-dir", str(config_dir)]
    return topo.gateway.run(command, check=False)


def apply(topo: Topology, config_dir: Path) -> None:
    result = firewall(topo, "apply", config_dir)
    assert result.returncode == 0, result.stderr


def listing(topo: Topology) -> str:
    return topo.gateway.run(["nft", "list", "table", "inet", "gatekeeper"]).stdout


def start_proxy_stand_in(topo: Topology) -> None:
    """A process on the gateway answering on the proxy port with `proxy <original target>`."""
    topo.gateway.popen(
        [sys.executable, netns.__file__, "banner", "0.0.0.0", str(PROXY_PORT), "proxy"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        try:
            return tcp_greeting(topo.gateway, "127.0.0.1", PROXY_PORT).startswith("proxy")
        except OSError:
            return False

    assert netns.wait_until(answers), "the stand-in proxy did not start listening"


@pytest.fixture
def internet(topo: Topology) -> Iterator[Listeners]:
    listeners = Listeners(
        topo.internet, INTERNET, tcp_ports=(80, 443, 853, CONTROL_PORT),
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
    assert "reject with tcp reset" in first and "prerouting" not in first
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

    assert udp_exchange(topo.client, INTERNET, CONTROL_PORT) == f"internet udp {CONTROL_PORT}"
    assert tcp_greeting(topo.client, INTERNET, CONTROL_PORT).startswith("internet")
    for port in (443, 853):
        with pytest.raises(ConnectionRefusedError):
            udp_exchange(topo.client, INTERNET, port)
    with pytest.raises(ConnectionRefusedError):
        tcp_greeting(topo.client, INTERNET, 853)

    assert internet.udp[443] == [] and internet.udp[853] == [] and internet.tcp[853] == []
    assert internet.udp[CONTROL_PORT] == [CLIENT]


def test_explicit_mode_refuses_direct_web_and_serves_the_proxy_to_the_lan_only(
    topo: Topology, internet: Listeners, tmp_path: Path
):
    apply(topo, write_gateway(tmp_path, topo, "explicit"))
    start_proxy_stand_in(topo)

    for port in (80, 443):
        with pytest.raises(ConnectionRefusedError):
            tcp_greeting(topo.client, INTERNET, port)
    proxy = tcp_greeting(topo.client, GATEWAY_LAN, PROXY_PORT)
    assert proxy == f"proxy {GATEWAY_LAN}:{PROXY_PORT}"

    direct = tcp_greeting(topo.client, INTERNET, 443, source=EXEMPT_CLIENT)
    assert direct == f"internet {INTERNET}:443"
    assert internet.tcp[443] == [EXEMPT_CLIENT] and internet.tcp[80] == []

    with pytest.raises(ConnectionRefusedError):
        tcp_greeting(topo.internet, GATEWAY_WAN, PROXY_PORT)


def test_transparent_mode_redirects_lan_web_traffic_to_the_proxy(
    topo: Topology, internet: Listeners, tmp_path: Path
):
    apply(topo, write_gateway(tmp_path, topo, "transparent"))
    start_proxy_stand_in(topo)
    local_site = Listeners(topo.gateway, GATEWAY_LAN, (80,), (), name="gateway")
    try:
        for port in (80, 443):
            assert tcp_greeting(topo.client, INTERNET, port) == f"proxy {INTERNET}:{port}"
        assert internet.tcp[80] == [] and internet.tcp[443] == []

        direct = tcp_greeting(topo.client, INTERNET, 443, source=EXEMPT_CLIENT)
        assert direct == f"internet {INTERNET}:443"
        own = tcp_greeting(topo.client, GATEWAY_LAN, 80)
        assert own == f"gateway {GATEWAY_LAN}:80", "traffic to the gateway itself is not redirected"
    finally:
        local_site.close()
