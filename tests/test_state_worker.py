"""The state database under faults, on real SQLite files: deadlines that end every wait, a fresh
reader that trusts no cache, the integrity check, and the proxy's state worker (one thread,
fault kinds, health, counting)."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from gatekeeper.metrics import Metrics
from gatekeeper.state import (
    DB_FILE,
    StateCorruptError,
    StateDB,
    StateError,
    StateTimeoutError,
    confirm_written,
    deadline,
    integrity_problems,
)
from gatekeeper.state.worker import (
    GRACE_SECONDS,
    StateOperationError,
    StateWorker,
    fault_kind,
)

NOW = dt.datetime(2027, 3, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(tmp_path: Path):
    with StateDB(tmp_path / "state") as opened:
        yield opened


def other_connection(db: StateDB) -> sqlite3.Connection:
    return sqlite3.connect(db.path, isolation_level=None)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels or None) or 0.0


def damage_file(db: StateDB) -> None:
    """Everything moved from the WAL into the file (as SQLite's checkpoints do), then the
    file's header overwritten."""
    checkpointer = other_connection(db)
    checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    checkpointer.close()
    with db.path.open("r+b") as f:
        f.write(b"not a database, not at all" * 4)


# --- deadlines ---------------------------------------------------------------------------------


def test_a_deadline_ends_the_wait_for_another_process_lock(db: StateDB) -> None:
    holder = other_connection(db)
    holder.execute("BEGIN EXCLUSIVE")
    start = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"), \
            deadline(time.monotonic() + 0.3):
        db.submit_request("bob", "facebook", "work", NOW)
    assert time.monotonic() - start < 1.5  # not the 5 s busy timeout
    # Reads are not blocked by a writer (WAL), with or without a deadline.
    with deadline(time.monotonic() + 0.3):
        assert db.pending_requests() == []
    holder.execute("ROLLBACK")
    holder.close()
    db.submit_request("bob", "facebook", "work", NOW)  # the connection is fine afterwards
    assert len(db.pending_requests()) == 1


def test_a_deadline_that_passes_inside_the_transaction_rolls_it_back(db: StateDB) -> None:
    def slow_notifications(request):
        time.sleep(0.2)
        return [("webhook", "{}")]

    with pytest.raises(StateTimeoutError), deadline(time.monotonic() + 0.1):
        db.submit_request("bob", "facebook", "work", NOW, notifications=slow_notifications)
    assert db.pending_requests() == []
    with pytest.raises(StateTimeoutError), deadline(time.monotonic() - 1):
        db.acknowledge("bob", "facebook", "https://facebook.com/terms", NOW)
    assert db.acknowledgements() == []


def test_a_deadline_bounds_the_wait_for_another_thread(db: StateDB) -> None:
    holder = other_connection(db)
    holder.execute("BEGIN EXCLUSIVE")
    outcome: list[BaseException] = []

    def wait_for_the_lock() -> None:  # on the 5 s busy timeout, holding the connection
        try:
            db.submit_request("alice", "x", "work", NOW)
        except sqlite3.OperationalError as e:
            outcome.append(e)

    busy = threading.Thread(target=wait_for_the_lock)
    busy.start()
    time.sleep(0.1)
    start = time.monotonic()
    with pytest.raises(StateTimeoutError), deadline(time.monotonic() + 0.2):
        db.pending_requests()
    assert time.monotonic() - start < 1.0
    holder.execute("ROLLBACK")
    holder.close()
    busy.join()
    assert outcome == [] and len(db.pending_requests()) == 1  # it got the lock when freed


# --- reading back, integrity -------------------------------------------------------------------


def test_the_reader_reads_the_file_and_never_writes(db: StateDB) -> None:
    request, _ = db.submit_request("bob", "facebook", "work", NOW)
    with db.reader() as reader:
        assert [r.id for r in reader.pending_requests()] == [request.id]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.submit_request("carol", "x", "work", NOW)
    confirm_written(db, "the request", lambda r: request.id in {x.id for x in r.all_requests()})
    with pytest.raises(StateCorruptError, match="cannot be read back"):
        confirm_written(db, "the request", lambda r: False)


def test_the_reader_finds_a_file_damaged_under_a_running_connection(db: StateDB) -> None:
    db.submit_request("bob", "facebook", "work", NOW)
    damage_file(db)
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        confirm_written(db, "the request", lambda r: bool(r.all_requests()))


def test_integrity_problems_of_sound_damaged_and_foreign_files(db: StateDB, tmp_path) -> None:
    for number in range(60):
        db.submit_request(f"e{number}", "facebook", "x" * 400, NOW)
    assert integrity_problems(db.path) == []
    conn = other_connection(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'access_requests'"
                        ).fetchone()[0]
    conn.close()
    with db.path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\x0d\xff" * (page_size // 2))
    findings = integrity_problems(db.path)
    assert findings and all("\n" not in f and not f.startswith("***") for f in findings)
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(os.urandom(8192))
    assert integrity_problems(foreign) == ["file is not a database"]
    with pytest.raises(sqlite3.OperationalError):
        integrity_problems(tmp_path / "missing.db")


# --- the worker -------------------------------------------------------------------------------


def real_error(db: StateDB, kind: str) -> BaseException:
    """A real SQLite error of the given kind, caught."""
    try:
        if kind == "locked":
            holder = other_connection(db)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                with deadline(time.monotonic() + 0.05):
                    db.submit_request("bob", "facebook", "work", NOW)
            finally:
                holder.execute("ROLLBACK")
                holder.close()
        else:
            damage_file(db)
            sqlite3.connect(db.path).execute("SELECT * FROM sqlite_schema").fetchall()
    except Exception as e:
        return e
    raise AssertionError("no error")


def test_fault_kinds(db: StateDB) -> None:
    assert fault_kind(real_error(db, "locked")) == "locked"
    assert fault_kind(real_error(db, "corrupt")) == "corrupt"
    assert fault_kind(StateTimeoutError("late")) == "timeout"
    assert fault_kind(OSError(errno.ENOSPC, "full")) == "full"
    assert fault_kind(OSError(errno.EROFS, "read-only")) == "readonly"
    assert fault_kind(OSError(errno.EIO, "broken")) == "io"
    wrapped = StateError("cannot use the state database")
    wrapped.__cause__ = sqlite3.DatabaseError("file is not a database")
    assert fault_kind(wrapped) == "error"  # no SQLite error name: not guessed from the text
    assert fault_kind(ValueError("empty justification")) is None


def started(db: StateDB | None, path: Path, **kwargs) -> tuple[StateWorker, Metrics]:
    metrics = Metrics()
    worker = StateWorker(db, path, metrics, **kwargs)
    worker.check()
    worker.start()
    return worker, metrics


def test_run_returns_raises_and_gives_up_on_time(db: StateDB) -> None:
    worker, metrics = started(db, db.path)
    assert metrics.state_healthy._value.get() == 1

    async def scenario() -> None:
        _, created = await worker.run(
            "request_access", lambda d: d.submit_request("bob", "facebook", "work", NOW))
        assert created
        with pytest.raises(ValueError, match="empty"):  # the job's own error, unchanged
            await worker.run("request_access",
                             lambda d: d.submit_request("bob", "x", " ", NOW))
        start = time.monotonic()
        with pytest.raises(StateOperationError) as caught:
            await worker.run("request_access", lambda d: time.sleep(1.0), timeout=0.2)
        assert caught.value.kind == "timeout"
        assert time.monotonic() - start < 0.2 + GRACE_SECONDS + 0.2

    asyncio.run(scenario())
    assert sample(metrics, "gatekeeper_state_errors_total", operation="request_access",
                  kind="timeout") == 1
    assert [r.service for r in db.pending_requests()] == ["facebook"]


def test_damage_found_by_a_job_stops_writes_until_a_check_passes(db: StateDB) -> None:
    worker, metrics = started(db, db.path)

    def unreadable(_db: StateDB) -> None:  # what confirm_written raises
        raise StateCorruptError("the access request was committed but cannot be read back")

    with pytest.raises(StateOperationError) as caught:
        worker.call("request_access", unreadable)
    assert caught.value.kind == "corrupt"
    assert worker.problem == (f"state database {db.path} is damaged: the access request was "
                              "committed but cannot be read back")
    assert worker.problems() == [worker.problem]
    assert metrics.state_healthy._value.get() == 0
    # No more writes; reading jobs still run.
    with pytest.raises(StateOperationError, match="corrupt"):
        worker.call("store_bindings", lambda d: d.store_bindings([]))
    assert worker.call("load_bindings", lambda d: d.load_bindings(), reading=True) == []
    worker.submit("store_bindings", lambda d: d.store_bindings([]))
    worker.call("load_bindings", lambda d: None, reading=True)  # the background job is done
    assert sample(metrics, "gatekeeper_state_errors_total", operation="store_bindings",
                  kind="corrupt") == 2
    # The file itself is sound: the integrity check clears the problem.
    worker.check()
    assert worker.problem is None and metrics.state_healthy._value.get() == 1
    worker.call("store_bindings", lambda d: d.store_bindings([]))
    # Real damage is found by the check, and kept.
    damage_file(db)
    worker.check()
    assert worker.problem is not None and "not a database" in worker.problem


def test_a_database_that_could_not_be_opened_stays_unavailable(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    path.write_bytes(os.urandom(8192))
    worker, metrics = started(None, path, problem="file is not a database")
    assert worker.problems() == [f"state database {path} is damaged: file is not a database"]
    with pytest.raises(StateOperationError, match="corrupt"):
        worker.call("load_bindings", lambda d: d.load_bindings(), reading=True)
    path.unlink()
    StateDB(tmp_path).close()  # a sound file in its place: still unavailable until restart
    worker.check()
    assert worker.problem is not None and metrics.state_healthy._value.get() == 0
