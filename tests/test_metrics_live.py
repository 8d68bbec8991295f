"""Issue 5 against a real `gatekeeper serve`: the live scrape matches the docs, the dashboard
and the rules; the opt-in employee label; /healthz and /readyz; the log formats and level."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from support import configs
from support.proxy import GatekeeperProcess
from support.waiting import wait_until
from test_prometheus_rules import METRICS_DOC, documented_metrics, metric_names_used

from gatekeeper.metrics import AdminServer, Metrics
from gatekeeper.state import StateDB

pytestmark = pytest.mark.e2e  # starts a real proxy process

AUTH_ANY = ["--set", "proxyauth=any"]
TIMEOUT = 10
FORBIDDEN_LABELS = frozenset({"host", "url", "path", "domain"})
# Label names the exposition adds to a family's samples, not labels of the metric itself.
SERIES_LABELS = frozenset({"le", "quantile"})


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family as scraped: its type and the label names its samples carry."""

    type: str
    labels: frozenset[str]
    samples: int


def scrape_families(proxy: GatekeeperProcess) -> dict[str, Family]:
    """The families of a live /metrics by exposed name (counters with their `_total`).

    prometheus_client prints HELP and TYPE even for a labelled metric with no series yet,
    so every family is here, with or without samples.
    """
    with urllib.request.urlopen(f"{proxy.metrics_url}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {label for sample in family.samples for label in sample.labels}
        found[name] = Family(family.type, frozenset(labels - SERIES_LABELS), len(family.samples))
    return found


def declared_labels() -> dict[str, frozenset[str]]:
    """Exposed name -> label names, as declared by gatekeeper's own metric objects.

    A labelled family with no series yet carries no label names in the exposition; its
    labels are checked against the declaration instead.
    """
    declared = {}
    for value in vars(Metrics()).values():
        if isinstance(value, MetricWrapperBase):
            suffix = {"counter": "_total", "info": "_info"}.get(value._type, "")
            declared[value._name + suffix] = frozenset(value._labelnames)
    return declared


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()




def drive_decisions(proxy: GatekeeperProcess, fake_sites) -> None:
    """One blocked (bob, facebook), one allowed (alice, linkedin) request, counted."""
    blocked = proxy.session("bob", "pw").get(fake_sites.facebook.url("/"), timeout=TIMEOUT)
    allowed = proxy.session("alice", "pw").get(fake_sites.linkedin.url("/"), timeout=TIMEOUT)
    assert (blocked.status_code, allowed.status_code) == (403, 200)
    proxy.wait_for_metric("gatekeeper_allowed_total", 1, service="linkedin")


# --- the live scrape against the dashboard, the rules and the docs ---------------------------


def test_every_metric_of_the_dashboard_and_the_rules_is_in_a_live_scrape(gk) -> None:
    exposed = scrape_families(gk())
    used = metric_names_used()
    assert len(used) >= 15
    assert used - exposed.keys() == set(), "queried by the dashboard or rules, never exposed"


def test_metrics_table_in_the_docs_matches_the_live_scrape(gk, fake_sites, tmp_path) -> None:
    approvals = configs.approvals_doc()
    expires = dt.date.today() + dt.timedelta(days=20)
    approvals["grants"].append(configs.grant("bob", "x", expires=expires))
    proxy = gk(configs.write_config(tmp_path / "config", approvals=approvals), args=AUTH_ANY)
    drive_decisions(proxy, fake_sites)

    exposed = scrape_families(proxy)
    documented = documented_metrics()
    declared = declared_labels()

    assert documented.keys() - exposed.keys() == set(), f"in {METRICS_DOC.name}, not exposed"
    assert exposed.keys() - documented.keys() == set(), f"exposed, not in {METRICS_DOC.name}"
    for name, family in exposed.items():
        doc = documented[name]
        assert doc.type == family.type, f"{name}: documented {doc.type}, exposed {family.type}"
        labels = family.labels if family.samples else declared[name]
        assert doc.labels == labels, f"{name}: documented {set(doc.labels)}, exposed {labels}"
    # The families that had to be driven to show their labels in the scrape did.
    for name in ("gatekeeper_blocked_total", "gatekeeper_allowed_total",
                 "gatekeeper_grant_expiry_timestamp_seconds", "gatekeeper_active_grants"):
        assert exposed[name].samples, name
    assert proxy.metric("gatekeeper_grants_expiring_soon") == 1


def test_access_request_gauges_follow_the_state_database(gk) -> None:
    proxy = gk(hosts={})
    assert proxy.metric("gatekeeper_access_requests_pending") == 0
    submitted = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    with StateDB(proxy.state_dir) as cli:  # as `gatekeeper` CLI processes do, beside the proxy
        cli.submit_request("bob", "facebook", "patient outreach", submitted)

    proxy.wait_for_metric("gatekeeper_access_requests_pending", 1)
    age = proxy.metric("gatekeeper_oldest_pending_request_age_seconds")
    assert 3 * 3600 <= age < 3 * 3600 + 60


# --- the opt-in employee label, and never a host ----------------------------------------------


def assert_no_host_anywhere(samples: dict, fake_sites) -> None:
    hosts = set(fake_sites.hosts())
    for name, labels in samples:
        assert not {label for label, _ in labels} & FORBIDDEN_LABELS, (name, labels)
        for _, value in labels:
            assert not any(host in value for host in hosts), (name, labels)


def test_no_employee_label_by_default_and_never_a_host(gk, fake_sites) -> None:
    proxy = gk(args=AUTH_ANY)
    drive_decisions(proxy, fake_sites)
    bank = proxy.session("bob", "pw").get(fake_sites.bank.url("/", scheme="http"),
                                          timeout=TIMEOUT)  # not governed: no metric either
    assert bank.status_code == 200

    samples = proxy.scrape()
    assert proxy.metric("gatekeeper_blocked_total", service="facebook",
                        reason="not_approved") == 1
    assert all("employee" not in dict(labels) for _, labels in samples)
    assert_no_host_anywhere(samples, fake_sites)


def test_employee_label_when_opted_in_and_still_never_a_host(gk, fake_sites) -> None:
    proxy = gk(args=[*AUTH_ANY, "--metrics-employee-label"])
    drive_decisions(proxy, fake_sites)
    proxy.session("mallory", "pw").get(fake_sites.x.url("/"), timeout=TIMEOUT)
    proxy.wait_for_metric("gatekeeper_blocked_total", 1, reason="unknown_employee")

    samples = proxy.scrape()
    assert proxy.metric("gatekeeper_blocked_total", service="facebook", reason="not_approved",
                        employee="bob") == 1
    assert proxy.metric("gatekeeper_allowed_total", service="linkedin", employee="alice") == 1
    assert proxy.metric("gatekeeper_blocked_total", service="x", reason="unknown_employee",
                        employee="unknown") == 1
    decision_samples = [labels for name, labels in samples
                        if name in {"gatekeeper_blocked_total", "gatekeeper_allowed_total"}]
    assert decision_samples and all("employee" in dict(labels) for labels in decision_samples)
    assert_no_host_anywhere(samples, fake_sites)


# --- health checks ----------------------------------------------------------------------------


def test_healthz_and_readyz_answer_200_on_the_metrics_listener(gk) -> None:
    proxy = gk()
    assert get(f"{proxy.metrics_url}/healthz") == (200, "alive\n")
    assert get(f"{proxy.metrics_url}/readyz") == (200, "ready\n")
    assert get(f"{proxy.metrics_url}/nothing-here")[0] == 404


def test_readyz_is_503_until_the_proxy_says_ready() -> None:
    server = AdminServer(Metrics(), "127.0.0.1", 0)
    server.start()
    try:
        url = "http://{}:{}".format(*server.address)
        assert get(f"{url}/readyz") == (503, "not ready\n")
        assert get(f"{url}/healthz") == (503, "not alive\n")
        server.alive = server.ready = lambda: True
        assert get(f"{url}/readyz") == (200, "ready\n")
    finally:
        server.stop()


# --- logs -------------------------------------------------------------------------------------


class AutoLogFormat(GatekeeperProcess):
    """`gatekeeper serve` without `--log-format`: it decides from its stdout (a pipe here)."""

    def proxy_argv(self) -> list[str]:
        argv = super().proxy_argv()
        at = argv.index("--log-format")
        return argv[:at] + argv[at + 2:]


def is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_default_log_format_on_a_pipe_is_json_lines(gk, fake_sites) -> None:
    proxy = gk(args=AUTH_ANY, cls=AutoLogFormat)
    drive_decisions(proxy, fake_sites)
    proxy.wait_for_log(lambda e: e.get("event") == "decision" and e["service"] == "linkedin")
    lines = proxy.stdout_lines
    assert lines and all(is_json(line) for line in lines), proxy.stdout


def test_console_log_format_is_readable_not_json(gk, fake_sites) -> None:
    proxy = gk(args=[*AUTH_ANY, "--log-format", "console"])
    drive_decisions(proxy, fake_sites)
    wait_until(lambda: any("decision" in line and "linkedin" in line
                           for line in proxy.stdout_lines), "a console decision line")
    assert not any(is_json(line) for line in proxy.stdout_lines), proxy.stdout
    assert any("config_loaded" in line for line in proxy.stdout_lines)


def test_log_level_warning_drops_info_decisions_and_keeps_errors(gk, fake_sites,
                                                                 config_dir: Path) -> None:
    proxy = gk(args=[*AUTH_ANY, "--log-level", "warning"])
    drive_decisions(proxy, fake_sites)
    (config_dir / "approvals.yaml").write_text("approver: [broken\n")
    proxy.wait_for_metric("gatekeeper_config_reloads_total", 1, result="failure")

    failure = proxy.wait_for_log(lambda e: e.get("event") == "config_reload_failed")
    assert failure["level"] == "error"
    assert proxy.events("decision") == []
    assert {e["level"] for e in proxy.log_lines()} <= {"warning", "error"}
