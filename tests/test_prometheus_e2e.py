"""A real Prometheus server on loopback scrapes a real `gatekeeper serve` and evaluates the
shipped rules; the counters driven through the proxy are read back from its query API."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.proxy import free_port
from test_prometheus_rules import RULES, rule_definitions

PROMETHEUS = shutil.which("prometheus")
TIMEOUT = 10
WAIT = 30.0  # Prometheus scrapes and evaluates every second; this is generous

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.prometheus,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not on PATH (Debian `prometheus`)"),
]


class Prometheus:
    """A Prometheus server with its own config and storage under `directory`."""

    def __init__(self, directory: Path, target: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "gatekeeper", "static_configs": [{"targets": [target]}]}
            ],
        }
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = directory / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        assert PROMETHEUS is not None
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config_path}",
                 f"--storage.tsdb.path={self.directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        self.wait_for(lambda: self._get("/-/ready") is not None, "Prometheus to be ready")
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(TIMEOUT)

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful API reply."""
        reply = self._get(f"/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert reply is not None, f"Prometheus API {path} did not answer:\n{self.log()}"
        assert reply["status"] == "success", reply
        return reply["data"]

    def query(self, expr: str) -> dict[frozenset[tuple[str, str]], float]:
        """An instant query: labels of each series -> value."""
        data = self.api("query", query=expr)
        return {
            frozenset(item["metric"].items()): float(item["value"][1]) for item in data["result"]
        }

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            assert self.process is not None and self.process.poll() is None, (
                f"Prometheus exited:\n{self.log()}"
            )
            assert time.monotonic() < deadline, f"waited {WAIT}s for {what}:\n{self.log()}"
            time.sleep(0.2)

    def wait_for_query(self, expr: str, expected: dict[frozenset[tuple[str, str]], float]) -> None:
        last: list[dict] = [{}]

        def matches() -> bool:
            last[0] = self.query(expr)
            return last[0] == expected

        try:
            self.wait_for(matches, f"{expr} == {expected}")
        except AssertionError as e:
            raise AssertionError(f"{expr}: last {last[0]}, expected {expected}") from e

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as reply:
                body = reply.read()
        except (urllib.error.URLError, OSError):
            return None
        return json.loads(body) if path.startswith("/api/") else body


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    started: list[Prometheus] = []

    def launch(target: str) -> Prometheus:
        server = Prometheus(tmp_path / f"prometheus-{len(started) + 1}", target)
        started.append(server)
        return server.start()

    yield launch
    for server in started:
        server.stop()


def series(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def test_prometheus_reads_back_the_decisions_driven_through_the_proxy(gk, fake_sites,
                                                                      prometheus) -> None:
    proxy = gk(args=["--set", "proxyauth=any"])
    server = prometheus(f"127.0.0.1:{proxy.metrics_port}")
    server.wait_for_query('up{job="gatekeeper"}', {
        series(job="gatekeeper", instance=f"127.0.0.1:{proxy.metrics_port}", __name__="up"): 1
    })

    drives = [("bob", fake_sites.facebook, 3, 403), ("mallory", fake_sites.x, 2, 403),
              ("alice", fake_sites.linkedin, 4, 200), ("carol", fake_sites.linkedin, 1, 403)]
    for user, site, times, status in drives:
        session = proxy.session(user, "pw")
        for _ in range(times):
            assert session.get(site.url("/"), timeout=TIMEOUT).status_code == status
    # not governed: counted nowhere
    assert proxy.session("bob", "pw").get(fake_sites.bank.url("/", scheme="http"),
                                          timeout=TIMEOUT).status_code == 200

    server.wait_for_query("sum by (service, reason) (gatekeeper_blocked_total)", {
        series(service="facebook", reason="not_approved"): 3,
        series(service="x", reason="unknown_employee"): 2,
        series(service="linkedin", reason="expired"): 1,
    })
    server.wait_for_query("sum by (service) (gatekeeper_allowed_total)", {
        series(service="linkedin"): 4,
    })
    server.wait_for_query("sum(gatekeeper_decision_duration_seconds_count)", {series(): 10})
    server.wait_for_query("sum(gatekeeper_active_grants)", {series(): 1})
    server.wait_for_query("count(gatekeeper_build_info{mitmproxy=\"11.0.2\"})", {series(): 1})


def test_shipped_rules_load_healthy_and_the_config_alert_reacts(gk, prometheus,
                                                                config_dir: Path) -> None:
    proxy = gk(hosts={})
    server = prometheus(f"127.0.0.1:{proxy.metrics_port}")
    expected_rules = {rule.get("alert") or rule["record"] for rule in rule_definitions()}

    def rules_evaluated_ok() -> bool:
        rules = [rule for group in server.api("rules")["groups"] for rule in group["rules"]]
        return (
            {rule["name"] for rule in rules} == expected_rules
            and all(rule["health"] == "ok" for rule in rules)
            and all(not rule["lastEvaluation"].startswith("0001-") for rule in rules)
        )

    server.wait_for(rules_evaluated_ok, "every shipped rule to be evaluated without error")
    # Before the first scrape GatekeeperMetricsAbsent may be pending; once scraped, all quiet.
    server.wait_for(lambda: not firing_or_pending(server), "no gatekeeper alert to be active")

    (config_dir / "approvals.yaml").write_text("approver: [broken\n")
    proxy.wait_for_metric("gatekeeper_config_last_reload_successful", 0)
    server.wait_for(lambda: "GatekeeperConfigLoadFailing" in firing_or_pending(server),
                    "GatekeeperConfigLoadFailing to become pending")


def firing_or_pending(server: Prometheus) -> set[str]:
    return {alert["labels"]["alertname"] for alert in server.api("alerts")["alerts"]}
