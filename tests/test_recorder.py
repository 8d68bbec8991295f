"""What the access review needs, recorded by the proxy: blocked attempts and the last use of a
grant reach the state database in batches, off the request path, and nothing queued is lost
at a graceful stop."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from gatekeeper.addons.recorder import Recorder
from gatekeeper.state import StateDB

SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def blocked_counts(db: StateDB) -> dict[tuple[str | None, str, str], int]:
    return {(b.employee, b.service, b.reason): b.count for b in db.review(SINCE).blocked}


def test_events_are_batched_and_usage_keeps_only_the_latest(tmp_path):
    recorder = Recorder(interval=3600)  # no timed flush: the test flushes by hand
    with StateDB(tmp_path) as db:
        recorder.start(db.record_many)
        try:
            recorder.blocked("bob", "facebook", "not_approved")
            recorder.blocked("bob", "facebook", "not_approved")
            recorder.blocked(None, "x", "unknown_employee")
            recorder.audited("alice", "facebook", "create_group")
            for _ in range(100):
                recorder.used("alice", "linkedin")
            assert recorder.flush() == 5  # 4 events + one usage row for 100 requests
        finally:
            recorder.done()
        review = db.review(SINCE)
        assert blocked_counts(db) == {("bob", "facebook", "not_approved"): 2,
                                      (None, "x", "unknown_employee"): 1}
        assert [(a.employee, a.action) for a in review.audited] == [("alice", "create_group")]
        assert set(review.last_use) == {("alice", "linkedin")}


def test_a_full_queue_drops_the_oldest_events(tmp_path):
    recorder = Recorder(interval=3600, max_queued=3)
    for service in ("a", "b", "c", "d", "e"):
        recorder.blocked("bob", service, "not_approved")
    with StateDB(tmp_path) as db:
        recorder.start(db.record_many)
        recorder.done()  # the final flush writes what is queued
        assert {service for _, service, _ in blocked_counts(db)} == {"c", "d", "e"}


def test_the_thread_flushes_on_its_own(tmp_path):
    recorder = Recorder(interval=0.05)
    with StateDB(tmp_path) as db:
        recorder.start(db.record_many)
        try:
            recorder.blocked("bob", "x", "expired")
            deadline = time.monotonic() + 5
            while not blocked_counts(db):
                assert time.monotonic() < deadline
                time.sleep(0.02)
        finally:
            recorder.done()


@pytest.mark.e2e
def test_the_proxy_records_blocks_and_grant_use_for_the_review(gk, fake_sites):
    proxy = gk(args=["--set", "proxyauth=any"])
    bob, alice = proxy.session("bob", "pw"), proxy.session("alice", "pw")
    for _ in range(3):
        assert bob.get(fake_sites.facebook.url("/"), timeout=10).status_code == 403
    assert alice.get(fake_sites.linkedin.url("/feed"), timeout=10).status_code == 200
    proxy.stop()  # a graceful stop writes what is still queued
    with StateDB(proxy.state_dir) as db:
        review = db.review(SINCE)
        assert blocked_counts(db) == {("bob", "facebook", "not_approved"): 3}
        assert set(review.last_use) == {("alice", "linkedin")}
