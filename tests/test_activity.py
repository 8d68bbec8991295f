"""Issue 15: the activity report (`gatekeeper activity`, text and JSON, and its summary in the
monthly review), the state it reads (migration 2), sign-up and activity rules in the config,
and the pruning of events older than the retention window, with clocks the tests set."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from support import configs
from support.cli import run_main

from gatekeeper.activity import activity_report, category
from gatekeeper.addons.recorder import Recorder
from gatekeeper.addons.runtime import _prune_events
from gatekeeper.config.loader import load_policy
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.reload import PolicyHolder
from gatekeeper.review import format_review_text, review_report
from gatekeeper.statedb import (
    AuditedAction,
    BlockedAttempt,
    StateDB,
    schema,
)

T0 = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def at(days: float = 0, minutes: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(days=days, minutes=minutes)


EVENTS = (
    AuditedAction("alice", "facebook", "account_created", at(-3), "a***@clinic.example"),
    AuditedAction("alice", "facebook", "group_created", at(-3, 5), "Clinic news"),
    AuditedAction("alice", "facebook", "group_joined", at(-2), "123456789012345"),
    AuditedAction("alice", "facebook", "friend_request_sent", at(-2, 1), "100000000000777"),
    AuditedAction("alice", "facebook", "app_authorization", at(-2, 2), "1234567890", "refused"),
    AuditedAction("alice", "facebook", "sign_up", at(-2, 3), "a***@gmail.com", "refused"),
    AuditedAction("alice", "linkedin", "connection_request_sent", at(-1),
                  "urn:li:fsd_profile:ACoAAB1234"),
    AuditedAction("bob", "reddit", "group_joined", at(-1, 1), "AskVet"),
    AuditedAction("bob", "reddit", "unreadable", at(-1, 2), None, "unreadable"),
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    approvals = configs.approvals_doc()
    approvals["event_retention_days"] = 90
    return configs.write_config(tmp_path / "config", approvals=approvals)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state_dir = tmp_path / "state"
    with StateDB(state_dir) as db:
        db.record_many(EVENTS)
    return state_dir


def test_each_action_counts_in_its_column() -> None:
    columns = [category(event) for event in EVENTS]
    assert columns == ["account_creations", "groups_created", "groups_joined",
                       "friends_and_connections", "app_authorizations_refused", "other",
                       "friends_and_connections", "groups_joined", "other"]
    # an app authorization that went through in report mode still counts as an attempt
    assert category(AuditedAction("a", "x", "app_authorization", T0, None, "reported")) \
        == "app_authorizations_refused"


def test_report_groups_by_employee_and_service_oldest_first() -> None:
    report = activity_report(EVENTS, {}, T0.date() - dt.timedelta(days=30), T0.date(), 400)
    assert json.loads(json.dumps(report)) == report
    assert [(r["employee"], r["service"]) for r in report["activity"]] == [
        ("alice", "facebook"), ("alice", "linkedin"), ("bob", "reddit")]
    facebook = report["activity"][0]
    assert facebook["counts"] == {"account_creations": 1, "groups_created": 1,
                                  "groups_joined": 1, "friends_and_connections": 1,
                                  "app_authorizations_refused": 1, "other": 1}
    assert [e["at"] for e in facebook["events"]] == sorted(e["at"] for e in facebook["events"])
    assert facebook["events"][1] == {
        "employee": "alice", "service": "facebook", "action": "group_created",
        "at": "2027-02-26T12:05:00+00:00", "target": "Clinic news", "outcome": "recorded",
        "category": "groups_created"}
    assert report["totals"]["groups_joined"] == 2 and report["retention_days"] == 400


def test_activity_command_json(config: Path, state: Path, capsys) -> None:
    result = run_main(capsys, ["activity", "--json", "--since", "2027-02-01",
                               "--config-dir", str(config), "--state-dir", str(state)])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["since"] == "2027-02-01" and report["retention_days"] == 90
    assert sum(report["totals"].values()) == len(EVENTS)
    alice = run_main(capsys, ["activity", "--json", "--since", "2027-02-01", "--employee",
                              "alice", "--service", "linkedin", "--config-dir", str(config),
                              "--state-dir", str(state)])
    rows = json.loads(alice.stdout)["activity"]
    assert [(r["employee"], r["service"], r["counts"]["friends_and_connections"])
            for r in rows] == [("alice", "linkedin", 1)]
    later = run_main(capsys, ["activity", "--json", "--since", "2027-03-01",
                              "--config-dir", str(config), "--state-dir", str(state)])
    assert json.loads(later.stdout)["activity"] == []


def test_activity_command_text(config: Path, state: Path, capsys) -> None:
    result = run_main(capsys, ["activity", "--since", "2027-02-01", "--config-dir",
                               str(config), "--state-dir", str(state)])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Activity of company IDs from 2027-02-01 to ")
    assert lines[0].endswith("(events are kept 90 days)")
    header = lines[2].split()
    assert header[:3] == ["EMPLOYEE", "SERVICE", "ACCOUNTS"]
    assert lines[3].split() == ["alice", "facebook", "1", "1", "1", "1", "1", "1"]
    assert lines[5].split() == ["bob", "reddit", "0", "0", "1", "0", "0", "1"]
    text = result.stdout
    assert "alice on facebook:\n  2027-02-26 12:00Z  account_created  a***@clinic.example\n" \
        in text
    assert "  2027-02-27 12:02Z  app_authorization (refused)  1234567890\n" in text
    assert "  2027-02-28 12:02Z  unreadable (unreadable)\n" in text
    empty = run_main(capsys, ["activity", "--employee", "carol", "--config-dir", str(config),
                              "--state-dir", str(state)])
    assert empty.stdout.endswith("\n\nno activity recorded\n")


def test_activity_command_needs_the_proxys_database(config: Path, tmp_path: Path,
                                                    capsys) -> None:
    result = run_main(capsys, ["activity", "--config-dir", str(config), "--state-dir",
                               str(tmp_path / "nowhere")])
    assert result.returncode == 1
    assert "no state database" in result.stderr


def test_review_summarizes_the_activity_and_names_the_window(config: Path,
                                                              state: Path) -> None:
    with StateDB(state) as db:
        data = db.review(at(-30))
    report = review_report(load_policy(config), data, T0.date())
    assert report["retention_days"] == 90
    assert report["activity"][2] == {
        "employee": "bob", "service": "reddit",
        "counts": {"account_creations": 0, "groups_created": 0, "groups_joined": 1,
                   "friends_and_connections": 0, "app_authorizations_refused": 0,
                   "other": 1}}
    text = format_review_text(report)
    assert "Retention: the proxy deletes blocked attempts and activity older than 90 days" \
        in text
    assert "Activity of company IDs (details: gatekeeper activity) (3)\n" in text
    assert "  bob reddit: groups joined 1, other 1\n" in text


# --- state: migration and pruning -------------------------------------------------------------


def test_audited_actions_of_the_first_schema_keep_their_meaning(tmp_path: Path) -> None:
    """A database written before migration 2: its audited actions read as recorded, with no
    target."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    with sqlite3.connect(state_dir / "gatekeeper.db") as raw:
        raw.executescript(schema.MIGRATIONS[0])
        raw.execute("INSERT INTO audited_actions (employee, service, action, at) VALUES"
                    " ('bob', 'facebook', 'group_created', '2027-01-01T00:00:00.000000Z')")
        raw.execute("PRAGMA user_version = 1")
    with StateDB(state_dir) as db:
        assert db.schema_version == len(schema.MIGRATIONS) >= 2
        assert db.activity(SINCE) == [AuditedAction(
            "bob", "facebook", "group_created", dt.datetime(2027, 1, 1, tzinfo=dt.UTC))]


def test_pruning_deletes_only_events_before_the_cutoff(tmp_path: Path) -> None:
    with StateDB(tmp_path / "state") as db:
        db.record_many([
            AuditedAction("alice", "x", "followed", at(-401), "1"),
            AuditedAction("alice", "x", "followed", at(-399), "2"),
            BlockedAttempt("bob", "x", "not_approved", at(-401)),
            BlockedAttempt("bob", "x", "not_approved", at(-399)),
        ])
        assert db.prune_events(at(-400)) == {"blocked_daily": 1, "audited_actions": 1}
        assert [a.target for a in db.activity(SINCE)] == ["2"]
        assert [b.count for b in db.review(SINCE).blocked] == [1]
        assert db.prune_events(at(-400)) == {"blocked_daily": 0, "audited_actions": 0}


def test_the_proxy_prunes_with_the_live_policys_window(config: Path, tmp_path: Path) -> None:
    """The recorder's thread prunes at start and then once per interval, at the time its
    clock says, keeping `event_retention_days` (90 here) of events."""
    now = [at()]
    holder = PolicyHolder()
    holder.policy = load_policy(config)

    class Worker:  # the state worker's `call`, run inline
        def __init__(self, db: StateDB) -> None:
            self.db = db

        def call(self, operation: str, job):
            return job(self.db)

    with StateDB(tmp_path / "state") as db:
        db.record_many([AuditedAction("alice", "x", "followed", at(-91), "old"),
                        AuditedAction("alice", "x", "followed", at(-60), "recent")])
        recorder = Recorder(interval=3600, prune_interval=3600, clock=lambda: now[0])
        recorder.start(db.record_many, lambda moment: _prune_events(Worker(db), holder, moment))
        try:
            assert [a.target for a in db.activity(SINCE)] in (["recent"], ["old", "recent"])
            recorder.done()  # the thread has pruned once at start
            assert [a.target for a in db.activity(SINCE)] == ["recent"]
            now[0] = at(days=31)  # 91 days after "recent": due at the next interval only
            assert recorder.prune_due() is False
            recorder._next_prune = 0.0  # the interval has passed
            assert recorder.prune_due() is True
            assert db.activity(SINCE) == []
        finally:
            recorder.done()


# --- configuration ----------------------------------------------------------------------------


def test_retention_defaults_to_400_days_and_is_checked(tmp_path: Path) -> None:
    assert load_policy(configs.write_config(tmp_path / "default")).event_retention_days == 400
    for bad in (0, 30, 5000, "a year"):
        approvals = configs.approvals_doc()
        approvals["event_retention_days"] = bad
        with pytest.raises(ConfigError) as e:
            load_policy(configs.write_config(tmp_path / f"bad-{bad}", approvals=approvals))
        assert "event_retention_days must be a whole number of days from 31 to 3660" \
            in str(e.value.problems[0])


def test_signups_and_targets_load_like_logins(tmp_path: Path) -> None:
    services = configs.services_doc(linkedin={
        "name": "LinkedIn", "domains": ["linkedin.com"],
        "signups": [{"path": "^/signup/api/cors/createAccount", "fields": ["emailAddress"],
                     "hosts": ["www.linkedin.com"]}],
        "audited": [{"action": "connection_accepted", "path": "^/invitations/(?P<target>[^/]+)",
                     "fields": {"action": "accept"}},
                    {"action": "followed", "path": "^/follow", "target": ["user_id", "urn"]}],
    })
    policy = load_policy(configs.write_config(tmp_path / "ok", services=services))
    linkedin = policy.services["linkedin"]
    assert [(r.fields, r.method, r.hosts) for r in linkedin.signups] == [
        (("emailAddress",), "POST", frozenset({"www.linkedin.com"}))]
    assert [r.target for r in linkedin.audited] == [(), ("user_id", "urn")]
    services["services"]["linkedin"]["signups"] = [{"path": "^/signup"}]
    services["services"]["linkedin"]["audited"][1]["target"] = {"a": "b"}
    with pytest.raises(ConfigError) as e:
        load_policy(configs.write_config(tmp_path / "bad", services=services))
    problems = "\n".join(str(p) for p in e.value.problems)
    assert "sign-up rule" in problems and "fields" in problems
    assert "audited: target" in problems
