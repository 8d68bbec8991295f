"""The state database on real SQLite files: migrations, requests, acknowledgements, session
bindings, events, the notification outbox, several processes at once, and the access review
built from a scripted session."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from support import configs

from gatekeeper import state
from gatekeeper.config.loader import load_policy
from gatekeeper.review import format_review_text, review_report
from gatekeeper.state import (
    AuditedAction,
    BlockedAttempt,
    GrantUse,
    RequestDecidedError,
    SessionCache,
    StateDB,
    StateError,
    UnknownRequestError,
    schema,
)

T0 = dt.datetime(2027, 3, 1, 9, 0, tzinfo=dt.UTC)


def at(minutes: float = 0, days: float = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes, days=days)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def db(state_dir: Path):
    with StateDB(state_dir) as opened:
        yield opened


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def stored_owners(
    db: StateDB, service: str, values: list[str], keep: int = state.KEEP_BINDINGS
) -> list[str | None]:
    """The owners as the database has them: a cache freshly loaded from it, as after a
    restart of the proxy."""
    cache = SessionCache.from_db(db, keep)
    return [cache.owner(service, value) for value in values]


def acknowledged(db: StateDB, employee: str, service: str, terms_url: str) -> bool:
    return any(
        (a.employee, a.service, a.terms_url) == (employee, service, terms_url)
        for a in db.acknowledgements()
    )


# --- files and migrations -------------------------------------------------------------------


def test_files_are_private_and_wal(state_dir: Path) -> None:
    with StateDB(state_dir) as db:
        db.submit_request("alice", "facebook", "campaign", at())
        db.store_bindings([SessionCache.from_db(db).bind("facebook", "cookie-1", "alice", at())])
        assert mode(state_dir) == 0o700
        assert mode(state_dir / "gatekeeper.db") == 0o600
        assert mode(state_dir / "gatekeeper.db-wal") == 0o600
        assert mode(state_dir / "secret.key") == 0o600
        journal = sqlite3.connect(state_dir / "gatekeeper.db").execute("PRAGMA journal_mode")
        assert journal.fetchone()[0] == "wal"
    key = (state_dir / "secret.key").read_bytes()
    assert len(key) == 32
    with StateDB(state_dir) as again:  # the key is reused: old bindings still resolve
        assert stored_owners(again, "facebook", ["cookie-1"]) == ["alice"]
    assert (state_dir / "secret.key").read_bytes() == key


def test_fresh_database_has_every_migration(db: StateDB) -> None:
    assert db.schema_version == len(schema.MIGRATIONS) >= 1


def test_newer_database_is_refused(state_dir: Path) -> None:
    StateDB(state_dir).close()
    with sqlite3.connect(state_dir / "gatekeeper.db") as raw:
        raw.execute(f"PRAGMA user_version = {len(schema.MIGRATIONS) + 1}")
    with pytest.raises(StateError, match="newer gatekeeper"):
        StateDB(state_dir)


def test_not_a_database_is_a_clear_error(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "gatekeeper.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="cannot use the state database"):
        StateDB(state_dir)


def test_new_migration_applies_once_and_keeps_data(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StateDB(state_dir) as db:
        request, _ = db.submit_request("alice", "facebook", "campaign", at())
    extra = "ALTER TABLE access_requests ADD COLUMN channel TEXT; CREATE TABLE extra (a TEXT);"
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, extra))
    with StateDB(state_dir) as db:
        assert db.schema_version == len(schema.MIGRATIONS)
        assert db.get_request(request.id).justification == "campaign"
    with StateDB(state_dir) as db:  # applied already: not run again (it would fail)
        assert db.schema_version == len(schema.MIGRATIONS)


def test_failing_migration_rolls_back_whole(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    StateDB(state_dir).close()
    version = len(schema.MIGRATIONS)
    broken = "CREATE TABLE half_done (a TEXT); CREATE TABLE half_done (a TEXT);"
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, broken))
    with pytest.raises(StateError):
        StateDB(state_dir)
    with sqlite3.connect(state_dir / "gatekeeper.db") as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == version
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in tables


# --- access requests ------------------------------------------------------------------------


def test_second_pending_request_updates_the_first(db: StateDB) -> None:
    first, created = db.submit_request("alice", "facebook", "spring campaign", at())
    assert created and first.status == "pending"
    again, created = db.submit_request("alice", "facebook", "spring campaign, 2 weeks", at(5))
    assert not created
    assert again.id == first.id
    assert again.justification == "spring campaign, 2 weeks"
    assert again.created == first.created and again.updated == at(5)
    other, created = db.submit_request("alice", "linkedin", "job posting", at(6))
    assert created and other.id != first.id
    assert [r.id for r in db.pending_requests()] == [first.id, other.id]
    db.decide_request(first.id, "denied", "it.lead@clinic.example", "not now", at(10))
    renewed, created = db.submit_request("alice", "facebook", "please reconsider", at(20))
    assert created and renewed.id != first.id
    assert len(db.all_requests()) == 3


def test_request_ids_are_short_and_forgiving(db: StateDB) -> None:
    request, _ = db.submit_request("alice", "facebook", "campaign", at())
    assert len(request.id) == 8 and set(request.id) <= set(state.ID_ALPHABET)
    typed = f" {request.id[:4].upper()}-{request.id[4:].upper()} "
    assert db.get_request(typed) == request
    assert state.normalize_request_id("IlO0-ab") == "1100ab"


def test_decide_refuses_unknown_and_decided(db: StateDB) -> None:
    request, _ = db.submit_request("alice", "facebook", "campaign", at())
    with pytest.raises(UnknownRequestError, match="zzzzzzzz"):
        db.decide_request("zzzzzzzz", "approved", "it.lead@clinic.example", None, at(1))
    with pytest.raises(ValueError, match="status"):
        db.decide_request(request.id, "maybe", "it.lead@clinic.example", None, at(1))
    decided = db.decide_request(request.id, "approved", "it.lead@clinic.example", None, at(1))
    assert (decided.status, decided.decided_by, decided.decided_on) == (
        "approved", "it.lead@clinic.example", at(1)
    )
    with pytest.raises(RequestDecidedError, match="already approved by it"):
        db.decide_request(request.id, "denied", "it.lead@clinic.example", "no", at(2))
    assert db.get_request(request.id).status == "approved"
    with pytest.raises(UnknownRequestError):
        db.get_request("00000000")


def test_justification_is_one_clean_bounded_line(db: StateDB) -> None:
    request, _ = db.submit_request(
        "alice", "facebook", "  post\n\x1b[31mnews\x1b[0m\u202e\tfor the clinic ", at()
    )
    assert request.justification == "post [31mnews [0m for the clinic"
    with pytest.raises(ValueError, match="empty"):
        db.submit_request("bob", "facebook", " \n\t", at())
    with pytest.raises(ValueError, match="500"):
        db.submit_request("bob", "facebook", "x" * 501, at())
    assert db.submit_request("bob", "facebook", "x" * 500, at())[1]
    assert state.clean_justification("a\u2028b") == "a b"


def test_counts_for_rate_limit_and_gauge(db: StateDB) -> None:
    assert db.oldest_pending_created() is None
    db.submit_request("alice", "facebook", "one", at(0))
    db.submit_request("alice", "linkedin", "two", at(10))
    db.submit_request("alice", "x", "three", at(20))
    db.submit_request("bob", "x", "other employee", at(30))
    assert db.count_recent_requests("alice", at(5)) == 2
    assert db.count_recent_requests("alice", at(-60)) == 3
    db.submit_request("alice", "facebook", "one, updated", at(40))  # an update counts as recent
    assert db.count_recent_requests("alice", at(35)) == 1
    assert db.pending_count() == 4
    assert db.oldest_pending_created() == at(0)
    db.decide_request(db.pending_requests()[0].id, "withdrawn", "alice", None, at(50))
    assert db.pending_count() == 3
    assert db.oldest_pending_created() == at(10)
    assert db.count_recent_requests("alice", at(35)) == 1  # a decision is not the employee's


def test_requests_json(db: StateDB) -> None:
    request, _ = db.submit_request("alice", "facebook", "campaign", at())
    data = json.loads(json.dumps([r.to_json() for r in db.pending_requests()]))
    assert data == [
        {
            "id": request.id, "employee": "alice", "service": "facebook",
            "justification": "campaign", "created": "2027-03-01T09:00:00+00:00",
            "updated": "2027-03-01T09:00:00+00:00", "status": "pending", "decided_by": None,
            "decided_on": None, "decision_reason": None,
        }
    ]


def test_naive_times_are_refused(db: StateDB) -> None:
    with pytest.raises(ValueError, match="timezone"):
        db.submit_request("alice", "facebook", "campaign", dt.datetime(2027, 3, 1))


# --- Terms of Use ---------------------------------------------------------------------------


def test_acknowledgements(db: StateDB) -> None:
    terms = "https://www.facebook.com/terms.php"
    assert not acknowledged(db, "alice", "facebook", terms)
    first = db.acknowledge("alice", "facebook", terms, at())
    assert db.acknowledge("alice", "facebook", terms, at(30)) == first  # first time kept
    assert acknowledged(db, "alice", "facebook", terms)
    assert not acknowledged(db, "alice", "facebook", terms + "?v=2")  # changed: ask again
    assert not acknowledged(db, "bob", "facebook", terms)
    db.acknowledge("bob", "linkedin", "https://www.linkedin.com/legal/user-agreement", at(5))
    assert [(a.employee, a.service, a.acknowledged_at) for a in db.acknowledgements()] == [
        ("alice", "facebook", at()), ("bob", "linkedin", at(5))
    ]


# --- session bindings -----------------------------------------------------------------------

COOKIES = [f"AQEDAT-secret-session-{n:02d}-x9Zq" for n in range(8)]


def test_bindings_are_keyed_hashes_never_values(state_dir: Path) -> None:
    with StateDB(state_dir) as db:
        cache = SessionCache.from_db(db)
        for n, value in enumerate(COOKIES[:3]):
            db.store_bindings([cache.bind("linkedin", value, "alice", at(n))])
        assert cache.owner("linkedin", COOKIES[0]) == "alice"
        assert cache.owner("facebook", COOKIES[0]) is None  # the service is in the hash
        assert cache.owner("linkedin", "never-bound") is None
        stored = b"".join(p.read_bytes() for p in state_dir.iterdir() if p.is_file())
    with StateDB(state_dir) as db:
        stored += b"".join(p.read_bytes() for p in state_dir.iterdir() if p.is_file())
        assert stored_owners(db, "linkedin", [COOKIES[2]]) == ["alice"]  # survives a restart
    for value in COOKIES[:3]:
        assert value.encode() not in stored
        assert value.encode("utf-16-le") not in stored
    # a different key (another installation) gives different hashes
    assert state.session_digest(b"k" * 32, "linkedin", "v") != state.session_digest(
        b"j" * 32, "linkedin", "v"
    )


def test_binding_cap_keeps_most_recent_per_employee_and_service(db: StateDB) -> None:
    cache = SessionCache.from_db(db)
    db.store_bindings([cache.bind("linkedin", "bob-device", "bob", at())])
    for n, value in enumerate(COOKIES[:7]):
        db.store_bindings([cache.bind("linkedin", value, "alice", at(n + 1))])
    owners = stored_owners(db, "linkedin", COOKIES[:7])
    assert owners == [None, None, "alice", "alice", "alice", "alice", "alice"]
    assert stored_owners(db, "linkedin", ["bob-device"]) == ["bob"]  # another employee's stay
    db.store_bindings([cache.bind("linkedin", COOKIES[6], "bob", at(20))])  # bob's login now
    assert stored_owners(db, "linkedin", [COOKIES[6]]) == ["bob"]
    assert len([b for b in db.load_bindings() if b.employee == "alice"]) == 4


def test_session_cache_matches_database(state_dir: Path) -> None:
    with StateDB(state_dir) as db:
        cache = SessionCache.from_db(db, keep=3)
        batch = [cache.bind("x", value, "alice", at(n)) for n, value in enumerate(COOKIES[:5])]
        batch.append(cache.bind("x", "bob-phone", "bob", at(9)))
        db.store_bindings(batch, keep=3)
        in_memory = [cache.owner("x", v) for v in [*COOKIES[:5], "bob-phone"]]
        assert in_memory == [None, None, "alice", "alice", "alice", "bob"]
        assert stored_owners(db, "x", [*COOKIES[:5], "bob-phone"], keep=3) == in_memory
    with StateDB(state_dir) as db:  # after a restart the proxy rebuilds the same view
        restarted = SessionCache.from_db(db, keep=3)
        assert [restarted.owner("x", v) for v in [*COOKIES[:5], "bob-phone"]] == in_memory
        moved = restarted.bind("x", COOKIES[4], "bob", at(10))
        assert restarted.owner("x", COOKIES[4]) == "bob"
        db.store_bindings([moved], keep=3)
        assert stored_owners(db, "x", [COOKIES[4]], keep=3) == ["bob"]


def test_two_processes_agree_on_the_secret(state_dir: Path) -> None:
    script = "import sys; from gatekeeper.state import load_secret; " \
             "sys.stdout.write(load_secret(sys.argv[1]).hex())"
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(state_dir)], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    keys = {p.communicate(timeout=60)[0] for p in procs}
    assert len(keys) == 1
    assert bytes.fromhex(keys.pop().decode()) == (state_dir / "secret.key").read_bytes()
    assert [p.name for p in state_dir.iterdir()] == ["secret.key"]  # no temporary files left


# --- events and notifications ---------------------------------------------------------------


def test_events_batch(db: StateDB) -> None:
    db.record_many(
        [
            BlockedAttempt("alice", "x", "personal_account", at(1)),
            BlockedAttempt("alice", "x", "personal_account", at(2)),
            BlockedAttempt(None, "facebook", "unknown_employee", at(3)),
            AuditedAction("bob", "facebook", "group_created", at(4)),
            GrantUse("bob", "facebook", at(5)),
            GrantUse("bob", "facebook", at(3)),  # late in a batch: last_seen never goes back
        ]
    )
    db.record_many([BlockedAttempt("alice", "x", "personal_account", at(days=1))])
    db.record_many([GrantUse("bob", "facebook", at(6))])
    review = db.review(at(-60))
    assert [(b.employee, b.reason, b.count, b.first_at, b.last_at) for b in review.blocked] == [
        ("alice", "personal_account", 3, at(1), at(days=1)),
        (None, "unknown_employee", 1, at(3), at(3)),
    ]
    assert review.last_use == {("bob", "facebook"): at(6)}
    assert review.audited == (AuditedAction("bob", "facebook", "group_created", at(4)),)


def test_blocked_attempts_stay_one_row_per_day(db: StateDB) -> None:
    db.record_many(BlockedAttempt("dave", "x", "not_approved", at(n / 10)) for n in range(500))
    with sqlite3.connect(db.path) as raw:
        assert raw.execute("SELECT count(*) FROM blocked_daily").fetchone()[0] == 1


def test_notification_outbox_retries_until_sent(db: StateDB) -> None:
    def messages(request: state.AccessRequest) -> list[tuple[str, str]]:
        payload = json.dumps({"id": request.id, "approve": f"gatekeeper approve {request.id}"})
        return [("smtp", payload), ("webhook", payload)]

    request, _ = db.submit_request("alice", "facebook", "campaign", at(), messages)
    db.submit_request("alice", "facebook", "campaign, updated", at(1), messages)  # no new ones
    due = db.due_notifications(at(1))
    assert [(n.channel, n.request_id, n.attempts) for n in due] == [
        ("smtp", request.id, 0), ("webhook", request.id, 0)
    ]
    assert json.loads(due[0].payload)["approve"] == f"gatekeeper approve {request.id}"
    smtp, webhook = due
    db.mark_failed(smtp.id, retry_at=at(10), error="connection refused\r\nX-Injected: 1")
    db.mark_sent(webhook.id, at(2))
    assert [n.id for n in db.due_notifications(at(9))] == []
    retried = db.due_notifications(at(10))
    assert [(n.id, n.attempts) for n in retried] == [(smtp.id, 1)]
    assert retried[0].last_error == "connection refused X-Injected: 1"
    assert db.review(at()).undelivered_notifications == 1
    db.mark_sent(smtp.id, at(11))
    assert db.due_notifications(at(days=30)) == []
    with sqlite3.connect(db.path) as raw:
        sent_at = raw.execute("SELECT sent_at FROM notifications WHERE id = ?", (smtp.id,))
        assert dt.datetime.fromisoformat(sent_at.fetchone()[0]) == at(11)
    assert db.review(at()).undelivered_notifications == 0


def test_request_and_its_notifications_are_recorded_together(db: StateDB) -> None:
    def broken(request: state.AccessRequest) -> list[tuple[str, str]]:
        raise RuntimeError("payload could not be built")

    with pytest.raises(RuntimeError):
        db.submit_request("alice", "facebook", "campaign", at(), broken)
    assert db.all_requests() == []
    assert db.due_notifications(at(days=1)) == []
    request, _ = db.submit_request(
        "alice", "facebook", "campaign", at(1), lambda r: [("webhook", "{}")]
    )
    assert [(n.request_id, n.channel) for n in db.due_notifications(at(1))] == [
        (request.id, "webhook")
    ]


# --- several users at once ------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import datetime as dt, sys, time
    from pathlib import Path
    from gatekeeper.state import StateDB, BlockedAttempt
    db = StateDB(Path(sys.argv[1]))
    now = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
    count = int(sys.argv[2])

    def write(numbers):
        for n in numbers:
            db.submit_request(f"employee{n}", "facebook", f"request {n}", now)
            db.record_many([BlockedAttempt(f"employee{n}", "facebook", "not_approved", now)])

    write(range(count // 2))
    deadline = time.monotonic() + 60  # until the other process has decided one of them
    while not any(r.status == "denied" for r in db.all_requests()):
        assert time.monotonic() < deadline, "the reader never decided a request"
    write(range(count // 2, count))
    db.close()
    """
)


def test_cli_and_proxy_processes_at_once(state_dir: Path) -> None:
    """A writer process (the proxy) and this one (the CLI) read and write at once; each sees
    the other's commits while both are running."""
    StateDB(state_dir).close()
    count = 150
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(state_dir), str(count)], stderr=subprocess.PIPE
    )
    denied = 0
    with StateDB(state_dir) as reader:
        deadline = time.monotonic() + 120
        while writer.poll() is None and time.monotonic() < deadline:
            reader.acknowledge("carol", "facebook", "https://t.example/", at())
            pending = reader.pending_requests()
            if pending:
                reader.decide_request(pending[0].id, "denied", "it.lead", None, at(1))
                denied += 1
        _, stderr = writer.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert writer.returncode == 0, stderr.decode()
        requests = reader.all_requests()
        assert len(requests) == count
        assert sum(r.status == "denied" for r in requests) == denied >= 1
        assert sum(b.count for b in reader.review(at(-1)).blocked) == count


def test_threads_share_one_connection(db: StateDB) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(50):
                db.record_many([GrantUse(f"w{worker}", "x", at(n))])
                db.pending_requests()
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert db.review(at()).last_use == {(f"w{w}", "x"): at(49) for w in range(4)}


# --- the access review ----------------------------------------------------------------------

SERVICES = configs.services_doc(
    facebook={"name": "Facebook", "domains": ["facebook.com"],
              "terms_url": "https://www.facebook.com/terms.php"},
    linkedin={"name": "LinkedIn", "domains": ["linkedin.com"]},
    x={"name": "X", "domains": ["x.com"]},
)

APPROVALS = configs.approvals_doc()
APPROVALS["employees"]["dave"] = configs.employee("dave")
APPROVALS["grants"] = [
    configs.grant("alice", "x", approved_on=dt.date(2026, 10, 1), expires=dt.date(2027, 3, 20)),
    configs.grant("bob", "facebook", approved_on=dt.date(2026, 6, 1), require_terms=True),
    configs.grant("carol", "linkedin", approved_on=dt.date(2026, 6, 1)),
    configs.grant("dave", "linkedin", approved_on=dt.date(2026, 1, 1),
                  expires=dt.date(2027, 1, 1)),
]


def scripted_session(db: StateDB) -> dict[str, str]:
    """A month at the clinic, as the proxy and the approver would record it."""
    old, _ = db.submit_request("alice", "facebook", "old request", at(days=-40))
    db.decide_request(old.id, "denied", "it.lead@clinic.example", "no", at(days=-39))
    approved, _ = db.submit_request("alice", "x", "replies to patients", at(days=-5))
    db.decide_request(approved.id, "approved", "it.lead@clinic.example", None, at(days=-4))
    pending, _ = db.submit_request("dave", "facebook", "clinic event photos", at(days=-2))
    db.record_many(
        [
            *(BlockedAttempt("dave", "facebook", "not_approved", at(days=-2, minutes=n))
              for n in range(7)),
            BlockedAttempt("alice", "x", "personal_account", at(days=-3)),
            BlockedAttempt("bob", "facebook", "account_mismatch", at(days=-1)),
            BlockedAttempt(None, "x", "unknown_employee", at(days=-1)),
            BlockedAttempt("carol", "linkedin", "prohibited_action", at(days=-50)),  # too old
            AuditedAction("bob", "facebook", "group_created", at(days=-6)),
            AuditedAction("bob", "facebook", "group_created", at(days=-45)),  # too old
            GrantUse("alice", "x", at(days=-1)),
            GrantUse("bob", "facebook", at(days=-100)),
        ]
    )
    db.acknowledge("bob", "facebook", "https://www.facebook.com/terms.php", at(days=-100))
    db.acknowledge("carol", "linkedin", "https://www.linkedin.com/old-terms", at(days=-90))
    return {"pending": pending.id, "approved": approved.id}


def test_review_from_a_scripted_session(db: StateDB, tmp_path: Path) -> None:
    ids = scripted_session(db)
    data = db.review(at(days=-30))
    assert [r.id for r in data.pending] == [ids["pending"]]
    assert [(r.id, r.status) for r in data.decided] == [(ids["approved"], "approved")]
    assert [(b.employee, b.service, b.reason, b.count) for b in data.blocked] == [
        ("alice", "x", "personal_account", 1),  # personal-account and mismatch first,
        ("bob", "facebook", "account_mismatch", 1),
        ("dave", "facebook", "not_approved", 7),  # then by count
        (None, "x", "unknown_employee", 1),
    ]
    assert [(a.employee, a.action) for a in data.audited] == [("bob", "group_created")]

    config = configs.write_config(tmp_path / "config", services=SERVICES, approvals=APPROVALS)
    report = review_report(load_policy(config), data, T0.date())
    assert json.loads(json.dumps(report)) == report
    assert [(g["employee"], g["service"], g["days_left"]) for g in report["grants"]] == [
        ("alice", "x", 19), ("bob", "facebook", None), ("carol", "linkedin", None)
    ]
    assert [g["employee"] for g in report["expiring_soon"]] == ["alice"]
    # bob last used facebook 100 days ago, carol never since her approval 273 days ago
    assert [(g["employee"], g["unused_days"]) for g in report["unused"]] == [
        ("bob", 100), ("carol", 273)
    ]
    assert [(g["employee"], g["expires"]) for g in report["expired_grants"]] == [
        ("dave", "2027-01-01")
    ]
    bob = report["grants"][1]
    assert bob["terms_required"] is True and bob["accounts"] == ["bob@clinic.example"]
    assert report["pending_requests"][0]["age_days"] == 2
    assert [(a["employee"], a["current"]) for a in report["acknowledgements"]] == [
        ("bob", True), ("carol", False)
    ]
    assert report["blocked_attempts"][0]["reason"] == "personal_account"

    text = format_review_text(report)
    assert "Access review on 2027-03-01 (events since 2027-01-30)" in text
    assert "alice x: expires 2027-03-20 (in 19 days)" in text
    assert f"{ids['pending']}  dave facebook (2 days old): clinic event photos" in text
    assert "dave facebook not_approved: 7" in text
    assert "(unknown) x unknown_employee: 1" in text
    assert "carol linkedin https://www.linkedin.com/old-terms (terms changed since)" in text
    assert text.index("personal_account") < text.index("not_approved")


def test_review_of_an_empty_database(db: StateDB, tmp_path: Path) -> None:
    no_grants = {key: value for key, value in APPROVALS.items() if key != "grants"}
    config = configs.write_config(tmp_path / "config", services=SERVICES, approvals=no_grants)
    report = review_report(load_policy(config), db.review(at(days=-30)), T0.date())
    assert report["grants"] == report["pending_requests"] == report["blocked_attempts"] == []
    assert "Pending requests (0)\n  none" in format_review_text(report)
    assert "secret.key" not in os.listdir(db.state_dir)  # made when a session is first bound
