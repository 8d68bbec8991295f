"""The scrape-time gauges: grants from a policy loaded from real files, access requests from a
real state database, collected through prometheus_client's exposition."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from support import configs

from gatekeeper.config.loader import load_policy
from gatekeeper.core.model import Policy
from gatekeeper.policy_metrics import PendingRequests, PolicyCollector
from gatekeeper.statedb import StateDB

TODAY = dt.date(2026, 3, 10)
NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)


def midnight(day: dt.date) -> float:
    """Local midnight: the proxy blocks from the `expires` date on, by local date."""
    return dt.datetime.combine(day, dt.time.min).timestamp()


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    approvals = configs.approvals_doc()
    in_days = {name: TODAY + dt.timedelta(days=days) for name, days in
               {"today": 0, "10": 10, "30": 30, "31": 31}.items()}
    approvals["grants"] = [
        configs.grant("alice", "linkedin", expires=in_days["10"]),
        configs.grant("bob", "linkedin", expires=in_days["30"]),  # the last day that is "soon"
        configs.grant("carol", "linkedin", expires=in_days["today"]),  # expired this morning
        configs.grant("bob", "facebook", expires=in_days["31"]),
        configs.grant("alice", "x"),  # never expires
    ]
    return load_policy(configs.write_config(tmp_path / "config", approvals=approvals))


def collect(policy: Policy | None, db: StateDB | None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    pending = PendingRequests(lambda: db)
    registry.register(PolicyCollector(lambda: policy, pending.read, today=lambda: TODAY,
                                      now=lambda: NOW.timestamp()))
    return registry


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    """The proxy's own connection to the state database."""
    with StateDB(tmp_path / "state") as opened:
        yield opened


def test_grants_per_service_expiring_soon_and_soonest_expiry(policy: Policy) -> None:
    registry = collect(policy, None)
    value = registry.get_sample_value

    assert value("gatekeeper_active_grants", {"service": "linkedin"}) == 2
    assert value("gatekeeper_active_grants", {"service": "facebook"}) == 1
    assert value("gatekeeper_active_grants", {"service": "x"}) == 1
    assert value("gatekeeper_grants_expiring_soon") == 2
    assert value("gatekeeper_grant_expiry_timestamp_seconds", {"service": "linkedin"}) == (
        midnight(TODAY + dt.timedelta(days=10))
    )
    assert value("gatekeeper_grant_expiry_timestamp_seconds", {"service": "facebook"}) == (
        midnight(TODAY + dt.timedelta(days=31))
    )
    assert value("gatekeeper_grant_expiry_timestamp_seconds", {"service": "x"}) is None
    # The state database is not open yet: no request gauges rather than a made-up 0.
    assert value("gatekeeper_access_requests_pending") is None


def test_nothing_pending_is_zero(policy: Policy, db: StateDB) -> None:
    registry = collect(policy, db)
    assert registry.get_sample_value("gatekeeper_access_requests_pending") == 0
    assert registry.get_sample_value("gatekeeper_oldest_pending_request_age_seconds") == 0


def test_pending_requests_and_the_oldest_ones_age(policy: Policy, db: StateDB) -> None:
    db.submit_request("bob", "facebook", "patient outreach", NOW - dt.timedelta(hours=50))
    db.submit_request("carol", "linkedin", "recruiting", NOW - dt.timedelta(hours=1))
    decided, _ = db.submit_request("bob", "x", "news", NOW - dt.timedelta(days=9))
    db.decide_request(decided.id, "denied", "it.lead@clinic.example", "no", NOW)
    registry = collect(policy, db)

    assert registry.get_sample_value("gatekeeper_access_requests_pending") == 2
    assert registry.get_sample_value("gatekeeper_oldest_pending_request_age_seconds") == (
        50 * 3600
    )
    with StateDB(db.state_dir) as cli:  # the approver answers from the CLI while the proxy runs
        (oldest, _) = cli.pending_requests()
        cli.decide_request(oldest.id, "approved", "it.lead@clinic.example", "ok", NOW)
    assert registry.get_sample_value("gatekeeper_access_requests_pending") == 1
    assert registry.get_sample_value("gatekeeper_oldest_pending_request_age_seconds") == 3600


def test_an_unreadable_database_drops_only_the_request_gauges_until_it_is_fixed(
        policy: Policy, db: StateDB) -> None:
    db.submit_request("bob", "facebook", "outreach", NOW)
    registry = collect(policy, db)
    with sqlite3.connect(db.path) as other:
        other.execute("ALTER TABLE access_requests RENAME TO elsewhere")

    text = generate_latest(registry).decode()  # the scrape itself succeeds

    assert "gatekeeper_active_grants{" in text
    assert "\ngatekeeper_access_requests_pending " not in text
    assert registry.get_sample_value("gatekeeper_oldest_pending_request_age_seconds") is None
    with sqlite3.connect(db.path) as other:
        other.execute("ALTER TABLE elsewhere RENAME TO access_requests")
    assert registry.get_sample_value("gatekeeper_access_requests_pending") == 1


def test_before_a_policy_is_loaded_only_the_request_gauges_are_exposed(db: StateDB) -> None:
    names = {family.name for family in collect(None, db).collect()}
    assert names == {"gatekeeper_access_requests_pending",
                     "gatekeeper_oldest_pending_request_age_seconds"}
