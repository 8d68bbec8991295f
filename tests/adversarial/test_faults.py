"""Faults of the state database, tried against a real `gatekeeper serve`: another process holding
its write lock, a read-only or a full state directory, the file damaged while the proxy runs or
before it starts.

The safe outcome every time: the request form answers within the state deadline that the
request could not be recorded (never that it was), every other request of the office is
answered as fast as before, the fault is logged and counted, and damage shows on /readyz and in
`gatekeeper_state_healthy`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support import configs
from support.waiting import wait_until
from test_portal_e2e import (
    ACKNOWLEDGE,
    AUTH_ANY,
    BROWSER,
    REQUEST_ACCESS,
    block_page,
    hidden,
    outcome,
    post,
    terms_config,
)

from gatekeeper.state import DB_FILE, StateDB
from gatekeeper.state.worker import DEADLINE_SECONDS, GRACE_SECONDS

pytestmark = pytest.mark.e2e  # starts a real proxy process

TIMEOUT = 10
# The form's answer may take the deadline, the grace for a commit under way, and some slack for
# a machine shared with other work.
ANSWER_WITHIN = DEADLINE_SECONDS + GRACE_SECONDS + 0.5
STALL_ALLOWANCE = 0.100  # how much slower than normal another client's request may be
BASELINE_ROUNDS = 10


# --- helpers -------------------------------------------------------------------------------------


def form_post(proxy, site, user: str = "bob") -> requests.Response:
    """The employee's "Request access" form, posted with the token from the block page."""
    session = proxy.session(user, "pw")
    token = hidden(block_page(session, site.url("/")), "csrf")
    return post(session, site.url(REQUEST_ACCESS), csrf=token, justification="patients ask there")


def assert_not_recorded(reply: requests.Response) -> None:
    assert outcome(reply) == (503, "not_recorded"), reply.text
    assert "could not be recorded" in reply.text
    assert configs.APPROVER in reply.text  # whom to tell instead


def pending(proxy) -> list[tuple[str, str]]:
    with StateDB(proxy.state_dir) as db:
        return [(r.employee, r.service) for r in db.pending_requests()]


def state_errors(proxy, **labels: str) -> float:
    return proxy.metric("gatekeeper_state_errors_total", **labels)


def timed(call) -> float:
    start = time.monotonic()
    call()
    return time.monotonic() - start


class OtherClients:
    """Two other employees on warm keep-alive connections: alice on a site she is granted
    (allowed, 200) and carol on one she is not (blocked, 403)."""

    def __init__(self, proxy, fake_sites) -> None:
        self.alice = proxy.session("alice", "pw")
        self.carol = proxy.session("carol", "pw")
        self.allowed_url = fake_sites.linkedin.url("/feed")
        self.blocked_url = fake_sites.facebook.url("/")
        self.allowed()  # connections and TLS set up: what is measured later is the request
        self.blocked()

    def allowed(self) -> None:
        assert self.alice.get(self.allowed_url, timeout=TIMEOUT).status_code == 200

    def blocked(self) -> None:
        assert self.carol.get(self.blocked_url, timeout=TIMEOUT).status_code == 403

    def slowest(self, rounds: int) -> dict[str, float]:
        """The slowest of `rounds` requests of each kind."""
        return {
            "allowed": max(timed(self.allowed) for _ in range(rounds)),
            "blocked": max(timed(self.blocked) for _ in range(rounds)),
        }


@contextlib.contextmanager
def write_locked(db_path: Path) -> Iterator[None]:
    """Another process's write lock on the database: `BEGIN EXCLUSIVE`, held until the end."""
    holder = subprocess.Popen(
        ["python3", "-c",
         "import sqlite3, sys\n"
         f"conn = sqlite3.connect({str(db_path)!r}, isolation_level=None)\n"
         "conn.execute('BEGIN EXCLUSIVE')\n"
         "print('locked', flush=True)\n"
         "sys.stdin.readline()\n"
         "conn.execute('ROLLBACK')\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.communicate("release\n", timeout=TIMEOUT)


def checkpoint(db_path: Path) -> None:
    """Move everything the proxy wrote from the WAL into the database file itself, as SQLite
    does on its own every 1000 pages: from here on, damage to the file is damage to the data."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def immutable(paths: list[Path], on: bool) -> None:
    for path in paths:
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True,
                       capture_output=True)


def damage_table(db_path: Path, table: str) -> None:
    """Overwrite the root page of `table` with garbage; the file header stays valid, so SQLite
    opens the file and only an integrity check (or a read of that table) finds the damage."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?",
                            (table,)).fetchone()[0]
    finally:
        conn.close()
    with db_path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\x0d\xff" * (page_size // 2))


# --- a lock held by another process ------------------------------------------------------------


def test_a_locked_database_answers_not_recorded_in_time_and_stalls_nobody(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    others = OtherClients(proxy, fake_sites)
    form_post(proxy, fake_sites.x, user="carol")  # a first request: the database is in use
    normal = others.slowest(BASELINE_ROUNDS)

    answer: dict[str, object] = {}

    def submit() -> None:
        start = time.monotonic()
        answer["reply"] = form_post(proxy, fake_sites.facebook)
        answer["seconds"] = time.monotonic() - start

    meanwhile: dict[str, list[float]] = {"allowed": [], "blocked": []}
    with write_locked(proxy.state_dir / DB_FILE):
        waiting = threading.Thread(target=submit)
        waiting.start()
        while waiting.is_alive():  # other clients, for as long as the form waits
            meanwhile["allowed"].append(timed(others.allowed))
            meanwhile["blocked"].append(timed(others.blocked))
        waiting.join()

    reply = answer["reply"]
    assert isinstance(reply, requests.Response)
    assert_not_recorded(reply)
    assert answer["seconds"] < ANSWER_WITHIN  # not SQLite's 5 s busy timeout
    # Nobody else waited for the database: every request while the form waited was answered
    # within 100 ms of the slowest one before the lock.
    for kind, seconds in meanwhile.items():
        assert len(seconds) >= 3, f"too few {kind} requests while the form waited"
        assert max(seconds) <= normal[kind] + STALL_ALLOWANCE, (kind, normal[kind], seconds)
    assert pending(proxy) == [("carol", "x")]
    assert state_errors(proxy, operation="request_access") == 1
    fault = proxy.wait_for_log(lambda e: e.get("event") == "state_fault"
                               and e.get("operation") == "request_access")
    assert fault["kind"] in ("locked", "timeout")
    assert proxy.events("access_request_not_recorded")[0]["employee"] == "bob"
    assert proxy.readyz()[0] == 200  # a lock is no damage

    # The lock is gone: the next submission is recorded and the approver can list it.
    assert outcome(form_post(proxy, fake_sites.facebook)) == (200, "request_recorded")
    assert sorted(pending(proxy)) == [("bob", "facebook"), ("carol", "x")]


def test_a_terms_acceptance_that_cannot_be_recorded_is_not_taken(gk, fake_sites, tmp_path):
    proxy = gk(terms_config(tmp_path, fake_sites), args=AUTH_ANY)
    linkedin = fake_sites.linkedin
    alice = proxy.session("alice", "pw")
    page = alice.get(linkedin.url("/feed"), headers=BROWSER, timeout=TIMEOUT)
    assert page.headers["X-Gatekeeper-Reason"] == "terms_not_acknowledged"
    token, return_to = hidden(page.text, "csrf"), hidden(page.text, "return_to")

    with write_locked(proxy.state_dir / DB_FILE):
        start = time.monotonic()
        reply = post(alice, linkedin.url(ACKNOWLEDGE), csrf=token, return_to=return_to)
        assert time.monotonic() - start < ANSWER_WITHIN
    assert outcome(reply) == (503, "not_recorded")
    assert "could not be recorded" in reply.text and configs.APPROVER in reply.text
    # Not recorded, so not taken: the terms are asked for again.
    again = alice.get(linkedin.url("/feed"), headers=BROWSER, timeout=TIMEOUT)
    assert again.headers["X-Gatekeeper-Reason"] == "terms_not_acknowledged"
    assert linkedin.requests_to("/feed") == []
    assert state_errors(proxy, operation="acknowledge_terms") == 1
    # Once the lock is gone, the same button works.
    accepted = post(alice, linkedin.url(ACKNOWLEDGE), csrf=token, return_to=return_to)
    assert outcome(accepted) == (303, "terms_acknowledged")
    assert alice.get(linkedin.url("/feed"), timeout=TIMEOUT).status_code == 200


# --- a read-only or full state directory -------------------------------------------------------


def test_a_read_only_state_directory_answers_not_recorded(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    form_post(proxy, fake_sites.x)  # the WAL file exists and holds a request
    db = proxy.state_dir / DB_FILE
    # Root may write through any file mode; the immutable attribute stops even root, also on
    # the descriptors the proxy already holds. (Not the -shm: SQLite maps it into memory.)
    frozen = [db, db.with_name(DB_FILE + "-wal"), proxy.state_dir]
    try:
        immutable(frozen, True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("chattr +i is not supported on this file system")
    try:
        assert_not_recorded(form_post(proxy, fake_sites.facebook))
        assert fake_sites.facebook.connections == 0  # the flow never went upstream
        OtherClients(proxy, fake_sites).blocked()  # the proxy goes on
    finally:
        immutable(frozen, False)
    assert state_errors(proxy, operation="request_access") == 1
    assert pending(proxy) == [("bob", "x")]
    assert outcome(form_post(proxy, fake_sites.facebook)) == (200, "request_recorded")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs where the `gk` fixture puts its first proxy's state directory."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    mount_point = tmp_path / "state-1"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "gk-small-disk",
                    str(mount_point)], check=True)
    try:
        yield mount_point
    finally:  # lazily: the proxy may still hold its files until the fixture stops it
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):  # ENOSPC: full
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def test_a_full_disk_answers_not_recorded(small_disk, gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    assert proxy.state_dir == small_disk
    filler = fill(small_disk)
    assert_not_recorded(form_post(proxy, fake_sites.facebook))
    OtherClients(proxy, fake_sites).blocked()
    assert state_errors(proxy, operation="request_access", kind="full") == 1
    filler.unlink()
    assert outcome(form_post(proxy, fake_sites.facebook)) == (200, "request_recorded")
    assert pending(proxy) == [("bob", "facebook")]


# --- damage -------------------------------------------------------------------------------------


def test_a_database_damaged_while_running_is_never_confirmed(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    assert outcome(form_post(proxy, fake_sites.x)) == (200, "request_recorded")
    db = proxy.state_dir / DB_FILE
    checkpoint(db)
    with db.open("r+b") as f:  # the whole file overwritten, as a failing disk might
        f.write(os.urandom(db.stat().st_size))

    reply = form_post(proxy, fake_sites.facebook)
    assert_not_recorded(reply)  # never "request_recorded" for a request nobody can list
    status, text = proxy.readyz()
    assert status == 503
    assert f"state database {db} is damaged" in text and "not a database" in text
    assert proxy.metric("gatekeeper_state_healthy") == 0
    assert state_errors(proxy, operation="request_access", kind="corrupt") == 1
    proxy.wait_for_log(lambda e: e.get("event") == "state_damaged")
    # Enforcement goes on without the database.
    others = OtherClients(proxy, fake_sites)
    others.allowed()
    others.blocked()
    # And the damage is not forgotten: a second try is refused too.
    assert_not_recorded(form_post(proxy, fake_sites.facebook))


def test_starting_on_a_damaged_database_reports_the_quick_check(gk, fake_sites, tmp_path):
    state_dir = tmp_path / "state-1"  # where the `gk` fixture puts its first proxy's state
    with StateDB(state_dir) as db:
        for number in range(60):  # enough rows for the table to span several pages
            db.submit_request(f"employee{number}", "facebook", "x" * 400,
                              dt.datetime.now(dt.UTC))
    damage_table(state_dir / DB_FILE, "access_requests")

    proxy = gk(args=AUTH_ANY, wait=False)
    wait_until(lambda: proxy.readyz()[0] == 503 and "damaged" in proxy.readyz()[1],
               "/readyz naming the damage")
    text = proxy.readyz()[1]
    assert f"state database {state_dir / DB_FILE} is damaged" in text, text
    assert proxy.metric("gatekeeper_state_healthy") == 0
    # It enforces the policy all the same, and says honestly that nothing can be recorded.
    others = OtherClients(proxy, fake_sites)
    others.allowed()
    others.blocked()
    assert_not_recorded(form_post(proxy, fake_sites.facebook))
    assert state_errors(proxy, operation="request_access", kind="corrupt") == 1


def test_starting_on_a_file_that_is_not_a_database_still_enforces(gk, fake_sites, tmp_path):
    state_dir = tmp_path / "state-1"
    state_dir.mkdir(mode=0o700)
    (state_dir / DB_FILE).write_bytes(os.urandom(64 * 1024))

    proxy = gk(args=AUTH_ANY, wait=False)
    wait_until(lambda: "not a database" in proxy.readyz()[1], "/readyz naming the damage")
    assert proxy.readyz()[0] == 503
    assert proxy.metric("gatekeeper_state_healthy") == 0
    others = OtherClients(proxy, fake_sites)
    others.allowed()
    others.blocked()
    assert_not_recorded(form_post(proxy, fake_sites.facebook))
