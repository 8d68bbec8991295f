"""The shipped Prometheus rules, their unit tests, the scrape example, the Grafana dashboard and
the metrics table in docs/metrics.md agree with each other and pass promtool.

`metric_names_used()` and `documented_metrics()` are helpers for the live-scrape checks too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO / "config" / "prometheus"
RULES = PROMETHEUS_DIR / "gatekeeper.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "gatekeeper.rules.test.yml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "scrape-config.yml"
DASHBOARD = REPO / "config" / "grafana" / "gatekeeper-dashboard.json"
METRICS_DOC = REPO / "docs" / "metrics.md"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found on PATH (Debian package `prometheus`)"
)

# Names the exporter owns: ours plus prometheus_client's process and platform collectors.
# Recording rules (`gatekeeper:...`) and Prometheus's own `up` are not scraped from gatekeeper.
_METRIC_NAME = re.compile(r"(?<![\w:])((?:gatekeeper|process|python)_[A-Za-z0-9_]*)")
_HISTOGRAM_SERIES = re.compile(r"_(?:bucket|sum|count)$")
_DASHBOARD_QUERY_KEYS = frozenset({"expr", "query", "definition"})
_METRIC_TYPES = frozenset({"counter", "gauge", "histogram"})


@dataclass(frozen=True, slots=True)
class DocumentedMetric:
    type: str
    labels: frozenset[str]


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_definitions() -> Iterator[dict]:
    for group in load_yaml(RULES)["groups"]:
        yield from group["rules"]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in rule_definitions() if "alert" in rule}


def dashboard_queries() -> list[str]:
    """Every PromQL string in the dashboard: panel targets (also inside rows) and variables."""
    found: list[str] = []

    def walk(node: object, key: str = "") -> None:
        if isinstance(node, dict):
            for child_key, child in node.items():
                walk(child, child_key)
        elif isinstance(node, list):
            for child in node:
                walk(child, key)
        elif isinstance(node, str) and key in _DASHBOARD_QUERY_KEYS:
            found.append(node)

    walk(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    return found


def metric_names_used() -> set[str]:
    """Base names of the exported metrics the dashboard and the rules query.

    Histogram series (`_bucket`, `_sum`, `_count`) are folded into the histogram's name; counters
    keep their exposed `_total` name and info metrics their `_info` name.
    """
    queries = [rule["expr"] for rule in rule_definitions()] + dashboard_queries()
    return {
        _HISTOGRAM_SERIES.sub("", name) for query in queries for name in _METRIC_NAME.findall(query)
    }


def documented_metrics() -> dict[str, DocumentedMetric]:
    """The metrics table of docs/metrics.md: rows whose first cell is a backticked metric name."""
    table: dict[str, DocumentedMetric] = {}
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`([A-Za-z_][A-Za-z0-9_]*)`", cells[0])
        if match is None:
            continue
        name, kind, labels = match.group(1), cells[1], cells[2]
        assert name not in table, f"{name} is listed twice in {METRICS_DOC.name}"
        label_set = (
            frozenset()
            if labels == "none"
            else frozenset(label.strip() for label in labels.split(","))
        )
        table[name] = DocumentedMetric(kind, label_set)
    return table


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.prometheus
@needs_promtool
def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(1 for _ in rule_definitions())} rules found" in result.stdout


@pytest.mark.prometheus
@needs_promtool
def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.prometheus
@needs_promtool
def test_scrape_example_is_a_valid_config_that_loads_the_rules() -> None:
    result = promtool("check", "config", SCRAPE_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_yaml(SCRAPE_CONFIG)
    assert (SCRAPE_CONFIG.parent / config["rule_files"][0]).resolve() == RULES
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "gatekeeper"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9464"]


@pytest.mark.prometheus
@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each dashboard query, once Grafana's variables are filled in."""
    grafana_values = {"$__rate_interval": "1m", "$__interval": "1m", "$instance": ".*"}
    rules = []
    for number, query in enumerate(q for q in dashboard_queries() if "label_values(" not in q):
        for variable, value in grafana_values.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"unknown Grafana variable in {query}"
        rules.append({"record": f"dashboard:query_{number}", "expr": query})
    check_file = tmp_path / "dashboard.rules.yml"
    check_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", check_file)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = alert_names()
    assert len(alerts) >= 7
    assert alerts - firing == set(), "alerts without a test case where they fire"
    assert alerts - quiet == set(), "alerts without a test case where they stay quiet"
    assert (firing | quiet) - alerts == set(), "test cases for alerts that do not exist"


def test_every_alert_says_how_bad_it_is_and_what_to_do() -> None:
    for rule in rule_definitions():
        if "alert" not in rule:
            continue
        assert rule.get("for"), f"{rule['alert']} has no for:"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert "`" in rule["annotations"]["description"], f"{rule['alert']} names no command"


def test_metrics_used_by_dashboard_and_rules_are_documented() -> None:
    used = metric_names_used()
    # The panels the admins asked for: blocked, allowed, would-block, logins, pending, reloads,
    # latency; if one disappears from the dashboard or the rules, this notices.
    assert {
        "gatekeeper_blocked_total",
        "gatekeeper_allowed_total",
        "gatekeeper_would_block_total",
        "gatekeeper_logins_total",
        "gatekeeper_access_requests_pending",
        "gatekeeper_oldest_pending_request_age_seconds",
        "gatekeeper_config_reloads_total",
        "gatekeeper_config_last_reload_success_timestamp_seconds",
        "gatekeeper_decision_duration_seconds",
        "gatekeeper_grant_expiry_timestamp_seconds",
    } <= used
    assert used - documented_metrics().keys() == set(), f"undocumented; add to {METRICS_DOC}"


def test_metrics_table_is_well_formed() -> None:
    table = documented_metrics()
    assert len(table) >= 20
    for name, metric in table.items():
        assert metric.type in _METRIC_TYPES, f"{name}: type {metric.type!r}"
        assert (metric.type == "counter") == name.endswith("_total"), name
        assert all(re.fullmatch(r"[a-z_][a-z0-9_]*", label) for label in metric.labels), name
        assert not metric.labels & {"host", "url", "employee"}, f"{name}: forbidden label"
    assert table["gatekeeper_blocked_total"].labels == {"service", "reason"}
    assert table["gatekeeper_build_info"].labels == {"version", "mitmproxy"}
    assert table["gatekeeper_decision_duration_seconds"].type == "histogram"


def test_dashboard_uses_the_importable_datasource_everywhere() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert [item["name"] for item in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    expected = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel in panels:
        sources = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
        assert all(source == expected for source in sources), panel["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
