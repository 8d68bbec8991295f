"""`gatekeeper serve --workers N`: several proxy processes behind one address (issue 13).

The real supervisor with two real workers: connections reach both, each enforces, identity by
source address survives, a live edit reaches both, /metrics sums them, /readyz waits for both,
a killed worker is restarted while the address keeps answering. Plus the pieces on their own:
mitmproxy listening through the shared-port loop, the metrics merge, `workers:` in gateway.yaml.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path
from unittest import mock

import pytest
from mitmproxy.proxy import mode_servers
from mitmproxy.test import taddons
from prometheus_client.parser import text_string_to_metric_families
from support import configs
from support.proxy import GatekeeperProcess, port_open
from test_gateway import VALID, write

from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.gateway import load_gateway
from gatekeeper.metrics_merge import MergedScrapes
from gatekeeper.shared_port import SharedPortLoop, reserve
from gatekeeper.workers import RUN_DIR

TIMEOUT = 10
WORKERS = ["--workers", "2"]
CONNECTIONS = 24  # fresh connections: the kernel's hash sends some to each worker


# --- mitmproxy listens through the loop ----------------------------------------------------------


def _listen_twice(loop: asyncio.AbstractEventLoop) -> list[tuple[str, int]]:
    """Start two mitmproxy regular-mode servers on one port in `loop`; their addresses."""
    async def both() -> list[tuple[str, int]]:
        with taddons.context():
            manager = mock.MagicMock()
            first = mode_servers.ServerInstance.make("regular@127.0.0.1:0", manager)
            await first.start()
            port = first.listen_addrs[0][1]
            second = mode_servers.ServerInstance.make(f"regular@127.0.0.1:{port}", manager)
            try:
                await second.start()
                return [*first.listen_addrs, *second.listen_addrs]
            finally:
                await first.stop()
                if second.is_running:
                    await second.stop()

    try:
        return loop.run_until_complete(both())
    finally:
        loop.close()


def test_mitmproxy_listeners_share_their_port_on_the_shared_port_loop() -> None:
    """Fails when mitmproxy stops opening its listeners through `loop.create_server`: then
    gatekeeper.shared_port needs another way to set SO_REUSEPORT."""
    addresses = _listen_twice(SharedPortLoop())
    assert len(addresses) == 2 and addresses[0] == addresses[1]


def test_without_the_shared_port_loop_the_second_listener_is_refused() -> None:
    with pytest.raises(OSError, match="address already in use"):
        _listen_twice(asyncio.new_event_loop())


def test_a_reserved_port_receives_no_connection_and_listeners_share_it() -> None:
    held = reserve("127.0.0.1", 0)
    port = held[0].getsockname()[1]
    try:
        assert not port_open(port)  # bound, not listening: nothing answers
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
            assert port_open(port)
    finally:
        for sock in held:
            sock.close()


# --- the metrics merge ---------------------------------------------------------------------------

SCRAPE = """\
# HELP gatekeeper_blocked_total Blocked.
# TYPE gatekeeper_blocked_total counter
gatekeeper_blocked_total{{service="facebook",reason="not_approved"}} {blocked}
# HELP gatekeeper_state_healthy Healthy.
# TYPE gatekeeper_state_healthy gauge
gatekeeper_state_healthy {healthy}
# HELP process_resident_memory_bytes RSS.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes {rss}
# HELP gatekeeper_config_last_reload_success_timestamp_seconds When.
# TYPE gatekeeper_config_last_reload_success_timestamp_seconds gauge
gatekeeper_config_last_reload_success_timestamp_seconds {loaded}
"""


def _samples(families) -> dict[str, float]:
    return {sample.name: sample.value for family in families for sample in family.samples}


def _scrape(blocked: int, healthy: int = 1, rss: int = 100, loaded: int = 10) -> str:
    return SCRAPE.format(blocked=blocked, healthy=healthy, rss=rss, loaded=loaded)


def test_merge_sums_counters_and_memory_takes_the_worst_health_and_the_newest_time() -> None:
    merged = MergedScrapes().merge([(0, 100, _scrape(3, healthy=1, loaded=10)),
                                    (1, 101, _scrape(4, healthy=0, loaded=20))])
    assert _samples(merged) == {
        "gatekeeper_blocked_total": 7, "gatekeeper_state_healthy": 0,
        "process_resident_memory_bytes": 200,
        "gatekeeper_config_last_reload_success_timestamp_seconds": 20,
    }


def test_merge_keeps_a_restarted_workers_counts() -> None:
    merge = MergedScrapes()
    merge.merge([(0, 100, _scrape(3)), (1, 101, _scrape(4))])
    after = merge.merge([(0, 100, _scrape(5)), (1, 202, _scrape(1))])  # worker 1 restarted
    assert _samples(after)["gatekeeper_blocked_total"] == 5 + 4 + 1
    assert _samples(after)["process_resident_memory_bytes"] == 200  # gauges are not kept


# --- workers: in gateway.yaml --------------------------------------------------------------------


def test_gateway_workers_key(tmp_path: Path) -> None:
    assert load_gateway(write(tmp_path, VALID)).workers == 1
    assert load_gateway(write(tmp_path, VALID + "workers: 2\n")).workers == 2
    for wrong in ("0", "65", "two"):
        with pytest.raises(ConfigError, match="workers must be a number of processes"):
            load_gateway(write(tmp_path, VALID + f"workers: {wrong}\n"))


# --- the real thing ------------------------------------------------------------------------------


def _address_config(tmp_path: Path) -> Path:
    """alice is the device at 127.0.0.1 (granted LinkedIn); nobody is 127.0.0.2."""
    approvals = configs.approvals_doc()
    approvals["employees"]["alice"] = configs.employee("alice", addresses=["127.0.0.1"])
    return configs.write_config(tmp_path / "config", approvals=approvals)


def _get(proxy: GatekeeperProcess, url: str, source: str = "127.0.0.1") -> int:
    """One request on a new connection from `source` through the proxy; the status."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.listen_port, timeout=TIMEOUT,
                                      source_address=(source, 0))
    try:
        conn.request("GET", url)
        return conn.getresponse().status
    finally:
        conn.close()


def _worker_ports(proxy: GatekeeperProcess) -> dict[int, int]:
    run_dir = proxy.state_dir / RUN_DIR
    return {int(p.stem): int(p.read_text()) for p in run_dir.glob("*.port")}


def _worker_metric(port: int, name: str, **labels: str) -> float:
    """A sample of one worker's own /metrics (its private admin listener)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT) as reply:
        text = reply.read().decode()
    wanted = labels.items()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name and wanted <= sample.labels.items())


def _worker_pids(proxy: GatekeeperProcess) -> list[int]:
    """The supervisor's children (unshare and sh exec, so the process is the supervisor)."""
    assert proxy.process is not None
    pid = proxy.process.pid
    return sorted(int(child) for child in
                  Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def _wait(condition, timeout: float = TIMEOUT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.05)


@pytest.mark.e2e
def test_two_workers_share_the_address_enforce_and_sum_their_metrics(gk, fake_sites, tmp_path):
    proxy = gk(_address_config(tmp_path), args=WORKERS)
    ports = _worker_ports(proxy)
    assert sorted(ports) == [0, 1]
    assert proxy.readyz()[0] == 200

    linkedin, facebook = fake_sites.linkedin.url("/", scheme="http"), \
        fake_sites.facebook.url("/", scheme="http")
    for _ in range(CONNECTIONS):
        assert _get(proxy, facebook) == 403  # blocked, whichever worker took it
        assert _get(proxy, linkedin) == 200  # alice's grant, known by her address
        assert _get(proxy, linkedin, source="127.0.0.2") == 403  # an unknown device
        # The supervisor's listener is the gateway's own, whichever worker is asked.
        assert _get(proxy, f"http://127.0.0.1:{proxy.metrics_port}/metrics") == 403
    assert fake_sites.facebook.connections == 0

    per_worker = [_worker_metric(port, "gatekeeper_blocked_total", service="facebook")
                  for port in ports.values()]
    assert all(count > 0 for count in per_worker), per_worker  # both took connections
    assert sum(per_worker) == CONNECTIONS
    assert proxy.metric("gatekeeper_blocked_total", service="facebook") == CONNECTIONS
    allowed = [_worker_metric(port, "gatekeeper_allowed_total", service="linkedin")
               for port in ports.values()]
    assert proxy.metric("gatekeeper_allowed_total", service="linkedin") == sum(allowed) \
        == CONNECTIONS
    assert proxy.metric("gatekeeper_config_last_reload_successful") == 1


@pytest.mark.e2e
def test_a_live_edit_and_sighup_reach_every_worker(gk, fake_sites, tmp_path):
    config = _address_config(tmp_path)
    proxy = gk(config, args=WORKERS)
    ports = _worker_ports(proxy)
    facebook = fake_sites.facebook.url("/", scheme="http")
    assert _get(proxy, facebook) == 403

    approvals = configs.approvals_doc()
    approvals["employees"]["alice"] = configs.employee("alice", addresses=["127.0.0.1"])
    approvals["grants"].append(configs.grant("alice", "facebook"))
    staged = config / ".approvals.yaml.new"
    staged.write_text(configs.to_yaml(approvals))
    os.replace(staged, config / "approvals.yaml")  # an editor's atomic save

    def reloaded() -> bool:
        return all(_worker_metric(p, "gatekeeper_config_reloads_total", result="success") >= 2
                   for p in ports.values())

    _wait(reloaded, what="both workers reloaded the edit")
    assert all(_get(proxy, facebook) == 200 for _ in range(CONNECTIONS))

    before = proxy.metric("gatekeeper_config_reloads_total", result="success")
    proxy.signal(signal.SIGHUP)
    proxy.wait_for_metric("gatekeeper_config_reloads_total", before + 2, result="success")


@pytest.mark.e2e
def test_a_killed_worker_is_restarted_and_the_address_keeps_answering(gk, fake_sites, tmp_path):
    proxy = gk(_address_config(tmp_path), args=WORKERS)
    facebook = fake_sites.facebook.url("/", scheme="http")
    for _ in range(CONNECTIONS):
        _get(proxy, facebook)
    counted = proxy.metric("gatekeeper_blocked_total", service="facebook")
    assert counted == CONNECTIONS
    pids = _worker_pids(proxy)
    assert len(pids) == 2, pids

    os.kill(pids[0], signal.SIGKILL)
    # Reaped: its listening socket is closed (a connection racing its death is reset unless
    # net.ipv4.tcp_migrate_req is 1, docs/deployment.md), new ones go to the other worker.
    proxy.wait_for_log(lambda e: e.get("event") == "worker_exited")
    assert all(_get(proxy, facebook) == 403 for _ in range(CONNECTIONS))  # the other answers
    _wait(lambda: len(_worker_pids(proxy)) == 2 and proxy.readyz()[0] == 200,
          what="a new worker is ready")
    assert pids[0] not in _worker_pids(proxy)
    proxy.wait_for_metric("gatekeeper_blocked_total", 2 * CONNECTIONS, service="facebook")


@pytest.mark.e2e
def test_readyz_waits_for_every_worker(gk, tmp_path):
    proxy = gk(_address_config(tmp_path), args=WORKERS, hosts={})
    pids = _worker_pids(proxy)
    os.kill(pids[1], signal.SIGSTOP)  # alive but not answering
    try:
        status, text = proxy.readyz()
        assert status == 503 and "worker 1" in text, text
    finally:
        os.kill(pids[1], signal.SIGCONT)
    _wait(lambda: proxy.readyz()[0] == 200, what="ready again")
    with urllib.request.urlopen(f"{proxy.metrics_url}/proxy.pac", timeout=TIMEOUT) as pac:
        assert b"FindProxyForURL" in pac.read()


@pytest.mark.e2e
def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_status(gk, tmp_path):
    proxy = gk(_address_config(tmp_path), args=[*WORKERS, "--set", "ignore_hosts=.*"],
               hosts={}, wait=False)
    assert proxy.wait_exit() == 2
    assert "do not set it" in proxy.stderr
    assert not port_open(proxy.listen_port)


@pytest.mark.e2e
def test_udp_modes_are_refused_with_workers(gk, tmp_path):
    proxy = gk(_address_config(tmp_path), args=[*WORKERS, "--mode", "dns@0"],
               hosts={}, wait=False)
    assert proxy.wait_exit() == 2
    assert "UDP" in proxy.stderr


@pytest.mark.e2e
def test_sigterm_to_the_whole_group_as_systemd_sends_it_stops_with_status_0(gk, tmp_path):
    proxy = gk(_address_config(tmp_path), args=WORKERS, hosts={})
    assert proxy.process is not None
    for pid in [*_worker_pids(proxy), proxy.process.pid]:
        os.kill(pid, signal.SIGTERM)
    assert proxy.wait_exit() == 0, proxy.stdout
    assert not port_open(proxy.listen_port)
    assert not port_open(proxy.metrics_port)


@pytest.mark.e2e
def test_workers_end_when_the_supervisor_is_killed(gk, tmp_path):
    proxy = gk(_address_config(tmp_path), args=WORKERS, hosts={})
    pids = _worker_pids(proxy)
    proxy.kill()  # SIGKILL: no chance to stop them itself

    def gone(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
        except OSError:
            return True

    _wait(lambda: all(gone(pid) for pid in pids), what="the workers ended")
    assert not port_open(proxy.listen_port)
