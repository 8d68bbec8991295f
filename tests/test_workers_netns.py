"""`workers: 2` in gateway.yaml on the office gateway in real network namespaces: transparent
mode, nftables redirecting LAN web traffic to listeners two workers share. Each device is still
known by its own source address, whichever worker its connection lands on (no proxy in front
hides the client). The topology and helpers are tests/test_gateway_netns.py's."""

from __future__ import annotations

from pathlib import Path

from netns import CLIENT, INTERNET, UNKNOWN_CLIENT, Topology
from prometheus_client.parser import text_string_to_metric_families
from test_gateway_netns import (  # noqa: F401  (fixtures and marks, used by pytest)
    apply,
    fetch,
    gateway_proxy,
    http_get,
    policy,
    pytestmark,
    sites,
    topo,
    write_gateway,
)

from gatekeeper.workers import RUN_DIR

FETCHES = 12  # new connections from each device: the kernel sends some to each worker


def worker_blocked(topology: Topology, port: int) -> float:
    """gatekeeper_blocked_total of one worker, from its own admin listener on loopback."""
    status, _, text = http_get(topology.gateway, "127.0.0.1", port, "/metrics")
    assert status == 200
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == "gatekeeper_blocked_total")


def test_two_workers_on_a_transparent_gateway_know_each_device_by_its_address(
    topo: Topology, sites, tmp_path: Path, gateway_proxy  # noqa: F811
):
    config_dir = write_gateway(policy(tmp_path / "config"), topo, "transparent")
    with (config_dir / "gateway.yaml").open("a") as gateway_yaml:
        gateway_yaml.write("workers: 2\n")
    apply(topo, config_dir)
    proxy = gateway_proxy(config_dir)
    ports = [int(p.read_text()) for p in sorted((proxy.state_dir / RUN_DIR).glob("*.port"))]
    assert len(ports) == 2

    for _ in range(FETCHES):
        allowed = fetch(topo.client, INTERNET, 443, "www.facebook.com", source=CLIENT,
                        ca=proxy.ca_cert)
        assert (allowed.status, allowed.body) == (200, "hello from www.facebook.com")
        blocked = fetch(topo.client, INTERNET, 443, "www.facebook.com", source=UNKNOWN_CLIENT,
                        ca=proxy.ca_cert)
        assert blocked.headers["X-Gatekeeper-Reason"] == "unknown_employee"

    decisions = [(e["employee"], e["decision"]) for e in proxy.events("decision")]
    assert sorted(decisions, key=str) == sorted([("dave", "allow"), (None, "block")] * FETCHES,
                                                key=str)
    per_worker = [worker_blocked(topo, port) for port in ports]
    assert all(count > 0 for count in per_worker), per_worker  # both took connections
    assert sum(per_worker) == FETCHES
