"""The state database: `<state_dir>/gatekeeper.db`, one embedded SQLite file.

It holds what the config files do not: access requests and the decisions on them, Terms-of-Use
acknowledgements, session bindings (as keyed hashes, never cookie values), the events the
access review needs (blocked attempts, audited actions, last use of a grant) and the outbox of
notifications to the approver. `approvals.yaml` stays the single source of truth for who is
approved.

The proxy and any number of CLI processes use the file at once: each opens its own `StateDB`
(WAL journal, so readers never wait for the writer; `busy_timeout`, so a writer waits briefly
for another instead of failing), and every write is one short `BEGIN IMMEDIATE` transaction.
One `StateDB` may be shared by threads: its methods serialize on a lock. A thread may bound
its operations in time (`deadline`): waiting for the lock, for another process's write lock and
the commit itself all give up with `StateTimeoutError` when the deadline passes, so a caller never
waits longer than it chose (the proxy's event loop never waits at all: see
gatekeeper.statedb.worker).

The schema is `gatekeeper.statedb.schema`; session bindings are `gatekeeper.statedb.sessions`.

Privacy: nothing here stores passwords, cookie values, bodies or URLs of non-social sites. The
only URL kept is a governed service's Terms-of-Use URL from the catalog.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from gatekeeper.statedb import schema
from gatekeeper.statedb.errors import (
    RequestDecidedError,
    StateCorruptError,
    StateError,
    StateTimeoutError,
    UnknownRequestError,
)
from gatekeeper.statedb.files import create_private_file, ensure_private_dir
from gatekeeper.statedb.records import (
    APPROVED,
    DECISIONS,
    DENIED,
    EMPLOYEE_CHANNEL,
    ID_ALPHABET,
    ID_LENGTH,
    PENDING,
    PRIORITY_REASONS,
    AccessRequest,
    Acknowledgement,
    AuditedAction,
    Binding,
    BlockedAttempt,
    BlockedSummary,
    Event,
    Notification,
    ReviewData,
    clean_justification,
    clean_line,
    normalize_request_id,
)
from gatekeeper.statedb.sessions import KEEP_BINDINGS

DB_FILE = "gatekeeper.db"
BUSY_TIMEOUT_MS = 5000

# --- deadlines ------------------------------------------------------------------------------

_thread = threading.local()


@contextmanager
def deadline(at: float) -> Iterator[None]:
    """Bound every state operation of this thread inside to `at` (a `time.monotonic()` value).

    An operation that cannot start, get the write lock or commit before then raises
    `StateTimeoutError` and leaves the database unchanged.
    """
    previous = getattr(_thread, "deadline", None)
    _thread.deadline = at
    try:
        yield
    finally:
        _thread.deadline = previous


def _current_deadline() -> float | None:
    return getattr(_thread, "deadline", None)


def _remaining_ms(at: float) -> int:
    """Milliseconds left before `at`; raises StateTimeoutError when none are."""
    remaining = at - time.monotonic()
    if remaining <= 0:
        raise StateTimeoutError("the state database did not answer in time")
    return max(1, int(remaining * 1000))


class StateDB:
    """One connection to `<state_dir>/gatekeeper.db`; open one per process (or share by threads).

    Times passed in must be timezone-aware; they are stored in UTC and returned in UTC.
    """

    def __init__(self, state_dir: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 read_only: bool = False) -> None:
        """Open (and create or migrate) the database; `read_only` opens an existing file as a
        reader only, as the approver's CLI sees it, without creating or migrating anything."""
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_FILE
        self._lock = threading.Lock()
        self._busy_timeout_ms = int(busy_timeout_ms)
        if not read_only:
            ensure_private_dir(self.state_dir)
            create_private_file(self.path)
        self._conn = sqlite3.connect(
            _read_only_uri(self.path) if read_only else self.path,
            uri=read_only,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
            check_same_thread=False,  # guarded by self._lock
        )
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            if not read_only:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = FULL")  # a request survives a crash
                self._conn.execute("PRAGMA foreign_keys = ON")
                self._migrate()
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise StateError(f"{self.path}: cannot use the state database: {e}") from e
        except BaseException:
            self._conn.close()
            raise

    def reader(self) -> StateDB:
        """A second, read-only connection to the same file: it reads what another process
        (the approver's CLI) would read, not the pages this connection has cached."""
        return StateDB(self.state_dir, busy_timeout_ms=self._busy_timeout_ms, read_only=True)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._connection() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        """Apply the migrations this file lacks, each in its own transaction. An up-to-date
        file is only read: opening it needs no write lock (another process may hold it)."""
        if self._conn.execute("PRAGMA user_version").fetchone()[0] < len(schema.MIGRATIONS):
            for number, script in enumerate(schema.MIGRATIONS, start=1):
                with self._write() as conn:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version >= number:
                        continue
                    for statement in schema.statements(script):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(schema.MIGRATIONS):
            raise StateError(
                f"{self.path} has schema version {version}, but this gatekeeper only knows "
                f"versions up to {len(schema.MIGRATIONS)}: it was written by a newer gatekeeper; "
                f"upgrade gatekeeper (or restore a backup of the state directory)"
            )

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The connection for one operation of this thread. Under a `deadline`, waiting for
        another thread of this process and for another process's write lock both end when
        it passes (StateTimeoutError or SQLite's "database is locked")."""
        at = _current_deadline()
        if at is None:
            with self._lock:
                yield self._conn
            return
        if not self._lock.acquire(timeout=max(0.0, at - time.monotonic())):
            raise StateTimeoutError("the state database is busy with another operation")
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {_remaining_ms(at)}")
            try:
                yield self._conn
            finally:
                self._conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        finally:
            self._lock.release()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; BEGIN IMMEDIATE takes the write lock up front, so two
        processes never deadlock upgrading a read lock. Under a deadline that has passed by
        the end, it rolls back instead of committing."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                at = _current_deadline()
                if at is not None:
                    _remaining_ms(at)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same snapshot."""
        with self._connection() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                _rollback(conn)  # nothing was written: ending the snapshot is all it does

    # --- access requests --------------------------------------------------------------------

    def submit_request(
        self,
        employee: str,
        service: str,
        justification: str,
        now: dt.datetime,
        notifications: Callable[[AccessRequest], Iterable[tuple[str, str]]] | None = None,
    ) -> tuple[AccessRequest, bool]:
        """Record a request; returns (request, created).

        While a request of `employee` for `service` is pending, a new one updates its
        justification instead of adding another (created is False). `notifications`, called
        only for a new request, returns (channel, payload JSON) pairs that are queued in the
        same transaction: the request and the messages about it are recorded together.
        Raises ValueError for an empty or overlong justification.
        """
        _require(employee, "employee")
        _require(service, "service")
        text = clean_justification(justification)
        stamp = _ts(now)
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM access_requests"
                " WHERE employee = ? AND service = ? AND status = 'pending'",
                (employee, service),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "UPDATE access_requests SET justification = ?, updated = ? WHERE id = ?",
                    (text, stamp, row[0]),
                )
                return _request(_request_row(conn, row[0])), False
            request_id = _insert_request(conn, employee, service, text, stamp)
            request = _request(_request_row(conn, request_id))
            for channel, payload in (notifications(request) if notifications else ()):
                _enqueue(conn, request_id, channel, payload, stamp)
            return request, True

    def get_request(self, request_id: str) -> AccessRequest:
        """The request with this id (typed by a person: case and i/l/o typos forgiven)."""
        with self._connection() as conn:
            row = _request_row(conn, normalize_request_id(request_id))
        if row is None:
            raise UnknownRequestError(f"no access request with id {request_id!r}")
        return _request(row)

    def pending_requests(self) -> list[AccessRequest]:
        """Pending requests, oldest first."""
        return self._requests("WHERE status = 'pending' ORDER BY created, id")

    def all_requests(self) -> list[AccessRequest]:
        """Every request, oldest first."""
        return self._requests("ORDER BY created, id")

    def _requests(self, where: str) -> list[AccessRequest]:
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM access_requests {where}"
            ).fetchall()
        return [_request(r) for r in rows]

    def decide_request(
        self, request_id: str, status: str, by: str, reason: str | None, now: dt.datetime
    ) -> AccessRequest:
        """Mark a pending request approved, denied or withdrawn.

        An approval or denial queues a message to the employee in the same transaction
        (channel `employee`, payload the request id): whoever decides (the CLI, the console),
        the proxy's notifier tells them, building the message when it sends it, from the
        policy then in force (`notify: employee:` off: it is dropped unsent).

        Raises UnknownRequestError for an unknown id and RequestDecidedError for a request
        that is no longer pending (decided by someone else in the meantime, for example).
        """
        if status not in DECISIONS:
            raise ValueError(f"status must be one of {', '.join(DECISIONS)}, not {status!r}")
        _require(by, "by")
        request_id = normalize_request_id(request_id)
        with self._write() as conn:
            row = _request_row(conn, request_id)
            if row is None:
                raise UnknownRequestError(f"no access request with id {request_id!r}")
            current = _request(row)
            if current.status != PENDING:
                when = current.decided_on.date().isoformat() if current.decided_on else "?"
                raise RequestDecidedError(
                    f"access request {request_id} was already {current.status} "
                    f"by {current.decided_by or '?'} on {when}"
                )
            conn.execute(
                "UPDATE access_requests SET status = ?, decided_by = ?, decided_on = ?,"
                " decision_reason = ? WHERE id = ?",
                (status, by, _ts(now), clean_line(reason) if reason else None, request_id),
            )
            if status in (APPROVED, DENIED):
                payload = json.dumps({"request_id": request_id, "status": status})
                _enqueue(conn, request_id, EMPLOYEE_CHANNEL, payload, _ts(now))
            return _request(_request_row(conn, request_id))

    def latest_request(self, employee: str, service: str) -> AccessRequest | None:
        """The employee's most recent request for the service (what the block page says)."""
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM access_requests WHERE employee = ?"
                " AND service = ? ORDER BY created DESC, id DESC LIMIT 1",
                (employee, service),
            ).fetchone()
        return _request(row) if row is not None else None

    def count_recent_requests(self, employee: str, since: dt.datetime) -> int:
        """Requests of `employee` submitted or updated since `since`: the rate limit's count."""
        with self._connection() as conn:
            return conn.execute(
                "SELECT count(*) FROM access_requests WHERE employee = ? AND updated >= ?",
                (employee, _ts(since)),
            ).fetchone()[0]

    def pending_count(self) -> int:
        """For the `gatekeeper_access_requests_pending` gauge."""
        with self._connection() as conn:
            return conn.execute(
                "SELECT count(*) FROM access_requests WHERE status = 'pending'"
            ).fetchone()[0]

    def oldest_pending_created(self) -> dt.datetime | None:
        with self._connection() as conn:
            value = conn.execute(
                "SELECT min(created) FROM access_requests WHERE status = 'pending'"
            ).fetchone()[0]
        return _parse(value)

    # --- the console's signed links ---------------------------------------------------------

    def use_link(self, digest: str, request_id: str, now: dt.datetime) -> dt.datetime | None:
        """Record the first use of a link; returns when it was first used if it already was
        (then nothing is recorded)."""
        with self._write() as conn:
            inserted = conn.execute(
                "INSERT INTO console_link_uses VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (digest, request_id, _ts(now)),
            ).rowcount
            if inserted:
                return None
            row = conn.execute("SELECT used_at FROM console_link_uses WHERE digest = ?",
                               (digest,)).fetchone()
        return _parse(row[0])

    def link_used(self, digest: str) -> dt.datetime | None:
        """When the link was first used; None while it is unused."""
        with self._connection() as conn:
            row = conn.execute("SELECT used_at FROM console_link_uses WHERE digest = ?",
                               (digest,)).fetchone()
        return _parse(row[0]) if row else None

    # --- Terms of Use -----------------------------------------------------------------------

    def acknowledge(
        self, employee: str, service: str, terms_url: str, now: dt.datetime
    ) -> Acknowledgement:
        """Record that `employee` accepted `terms_url`; the first acceptance's time is kept."""
        _require(employee, "employee")
        _require(service, "service")
        _require(terms_url, "terms_url")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO terms_acknowledgements VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (employee, service, terms_url, _ts(now)),
            )
            row = conn.execute(
                "SELECT acknowledged_at FROM terms_acknowledgements"
                " WHERE employee = ? AND service = ? AND terms_url = ?",
                (employee, service, terms_url),
            ).fetchone()
        return Acknowledgement(employee, service, terms_url, _parse(row[0]))

    def acknowledgements(self) -> list[Acknowledgement]:
        """Every acknowledgement, oldest first."""
        with self._connection() as conn:
            return _acknowledgements(conn)

    # --- session bindings -------------------------------------------------------------------

    def store_bindings(self, bindings: Iterable[Binding], keep: int = KEEP_BINDINGS) -> None:
        """Persist bindings made in memory (see `SessionCache.bind`), in one transaction.

        A digest already bound is re-bound (the service issued the value to this login); each
        (employee, service) touched keeps only its `keep` most recent bindings.
        """
        with self._write() as conn:
            owners = set()
            for b in bindings:
                conn.execute(
                    "INSERT INTO session_bindings VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
                    " SET employee = excluded.employee, bound_at = excluded.bound_at",
                    (b.service, b.digest, b.employee, _ts(b.bound_at)),
                )
                owners.add((b.employee, b.service))
            for employee, service in owners:
                conn.execute(
                    "DELETE FROM session_bindings WHERE employee = ?1 AND service = ?2"
                    " AND rowid NOT IN (SELECT rowid FROM session_bindings"
                    "  WHERE employee = ?1 AND service = ?2"
                    "  ORDER BY bound_at DESC, rowid DESC LIMIT ?3)",
                    (employee, service, keep),
                )

    def binding_owners(self, service: str, digests: Iterable[bytes]) -> dict[bytes, str]:
        """The employee each of these digests is bound to, where one is (for a proxy worker
        whose memory misses a binding another worker made)."""
        with self._connection() as conn:
            return {
                bytes(digest): employee
                for digest in dict.fromkeys(digests)
                for (employee,) in conn.execute(
                    "SELECT employee FROM session_bindings WHERE service = ? AND digest = ?",
                    (service, digest),
                )
            }

    def load_bindings(self) -> list[Binding]:
        """Every binding, oldest first (to fill a `SessionCache` at start)."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT service, digest, employee, bound_at FROM session_bindings"
                " ORDER BY bound_at, rowid"
            ).fetchall()
        return [Binding(s, bytes(d), e, _parse(at)) for s, d, e, at in rows]

    # --- events for the access review -------------------------------------------------------

    def record_many(self, events: Iterable[Event]) -> None:
        """Record a batch of events in one transaction (the proxy batches off the hot path)."""
        with self._write() as conn:
            for event in events:
                _record(conn, event)

    def activity(self, since: dt.datetime, *, employee: str | None = None,
                 service: str | None = None) -> list[AuditedAction]:
        """The activity of company IDs since `since` (audited actions, account creations,
        refused actions), oldest first, of one employee and/or service when given."""
        with self._connection() as conn:
            return _activity(conn, since, employee, service)

    def prune_events(self, before: dt.datetime) -> dict[str, int]:
        """Delete the review and activity events older than `before`: blocked attempts of
        the days before its day, and audited actions (the activity) before it. Requests,
        acknowledgements and the one last-use time per grant are records, not events: kept.
        Returns how many rows of each table went."""
        stamp = _ts(before)
        with self._write() as conn:
            return {
                "blocked_daily": conn.execute(
                    "DELETE FROM blocked_daily WHERE day < ?", (stamp[:10],)).rowcount,
                "audited_actions": conn.execute(
                    "DELETE FROM audited_actions WHERE at < ?", (stamp,)).rowcount,
            }

    # --- notification outbox ----------------------------------------------------------------

    def queue_notifications(self, messages: Iterable[tuple[str, str]], now: dt.datetime) -> None:
        """Queue (channel, payload JSON) messages about no request (to IT), in one transaction."""
        with self._write() as conn:
            for channel, payload in messages:
                _enqueue(conn, None, channel, payload, _ts(now))

    def due_notifications(self, now: dt.datetime, limit: int = 100) -> list[Notification]:
        """Unsent messages whose next attempt is due, oldest first. One process (the proxy)
        delivers them."""
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications"
                " WHERE sent_at IS NULL AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?",
                (_ts(now), limit),
            ).fetchall()
        return [_notification(r) for r in rows]

    def mark_sent(self, notification_id: int, now: dt.datetime) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE notifications SET sent_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE id = ?",
                (_ts(now), notification_id),
            )

    def mark_failed(self, notification_id: int, retry_at: dt.datetime, error: str) -> None:
        """A delivery attempt failed: try again from `retry_at` (the message is never dropped)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE notifications SET attempts = attempts + 1, next_attempt = ?,"
                " last_error = ? WHERE id = ? AND sent_at IS NULL",
                (_ts(retry_at), clean_line(error)[:500], notification_id),
            )

    # --- access review ----------------------------------------------------------------------

    def review(self, since: dt.datetime) -> ReviewData:
        """Everything the access review reads, from one consistent snapshot."""
        start = _ts(since)
        with self._read() as conn:
            pending = conn.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM access_requests WHERE status = 'pending'"
                " ORDER BY created, id"
            ).fetchall()
            decided = conn.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM access_requests"
                " WHERE status != 'pending' AND decided_on >= ? ORDER BY decided_on, id",
                (start,),
            ).fetchall()
            blocked = conn.execute(
                "SELECT employee, service, reason, sum(count), min(first_at), max(last_at)"
                " FROM blocked_daily WHERE day >= ? GROUP BY employee, service, reason",
                (start[:10],),
            ).fetchall()
            audited = _activity(conn, since)
            acknowledgements = _acknowledgements(conn)
            usage = conn.execute("SELECT employee, service, last_seen FROM grant_usage").fetchall()
            undelivered = conn.execute(
                "SELECT count(*) FROM notifications WHERE sent_at IS NULL"
            ).fetchone()[0]
        summaries = [
            BlockedSummary(e or None, s, r, n, _parse(first), _parse(last))
            for e, s, r, n, first, last in blocked
        ]
        summaries.sort(
            key=lambda b: (
                b.reason not in PRIORITY_REASONS,
                -b.count,
                b.employee or "",
                b.service,
                b.reason,
            )
        )
        return ReviewData(
            since=since.astimezone(dt.UTC),
            pending=tuple(_request(r) for r in pending),
            decided=tuple(_request(r) for r in decided),
            blocked=tuple(summaries),
            audited=tuple(audited),
            acknowledgements=tuple(acknowledgements),
            last_use={(e, s): _parse(at) for e, s, at in usage},
            undelivered_notifications=undelivered,
        )


def confirm_written(db: StateDB, what: str, found: Callable[[StateDB], bool]) -> None:
    """Read back what was just committed through a fresh read-only connection, as the approver
    will; raises StateCorruptError (or the reader's sqlite3 error) when it is not there, so that
    nothing is confirmed to a person that nobody else can read."""
    with db.reader() as reader:
        if not found(reader):
            raise StateCorruptError(f"{db.path}: {what} was committed but cannot be read back")


def integrity_problems(path: Path, *, limit: int = 5,
                       busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> list[str]:
    """What SQLite's `PRAGMA quick_check` finds wrong with the database file at `path` (at most
    `limit` findings), read through a fresh connection that trusts no page another connection
    has cached; [] when it is sound. A file that is not a database at all is a finding too.
    Other errors (the file is missing, locked, unreadable) are raised as sqlite3.Error."""
    conn = sqlite3.connect(_read_only_uri(path), uri=True, timeout=busy_timeout_ms / 1000)
    try:
        rows = conn.execute(f"PRAGMA quick_check({int(limit)})").fetchall()
    except sqlite3.DatabaseError as e:
        if not getattr(e, "sqlite_errorname", "").startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            raise
        return [str(e)]
    finally:
        conn.close()
    findings = [line for row in rows for line in str(row[0]).splitlines()
                if line and not line.startswith("*** in database")]
    return [] if findings == ["ok"] else findings


_REQUEST_COLUMNS = (
    "id, employee, service, justification, created, updated, status,"
    " decided_by, decided_on, decision_reason"
)
_NOTIFICATION_COLUMNS = (
    "id, request_id, channel, payload, created, attempts, next_attempt, sent_at, last_error"
)


def _request_row(conn: sqlite3.Connection, request_id: str) -> tuple[Any, ...] | None:
    return conn.execute(
        f"SELECT {_REQUEST_COLUMNS} FROM access_requests WHERE id = ?", (request_id,)
    ).fetchone()


def _request(row: tuple[Any, ...]) -> AccessRequest:
    rid, employee, service, text, created, updated, status, by, on, reason = row
    return AccessRequest(
        rid, employee, service, text, _parse(created), _parse(updated), status, by,
        _parse(on), reason,
    )


def _insert_request(
    conn: sqlite3.Connection, employee: str, service: str, text: str, stamp: str
) -> str:
    for _ in range(10):  # 32**8 ids: a collision is rare, ten in a row is impossible in practice
        request_id = "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))
        try:
            conn.execute(
                "INSERT INTO access_requests (id, employee, service, justification, created,"
                " updated, status) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                (request_id, employee, service, text, stamp, stamp),
            )
        except sqlite3.IntegrityError:
            continue
        return request_id
    raise StateError("could not allocate a request id")


def _enqueue(
    conn: sqlite3.Connection, request_id: str | None, channel: str, payload: str, stamp: str
) -> None:
    conn.execute(
        "INSERT INTO notifications (request_id, channel, payload, created, next_attempt)"
        " VALUES (?, ?, ?, ?, ?)",
        (request_id, channel, payload, stamp, stamp),
    )


def _notification(row: tuple[Any, ...]) -> Notification:
    nid, request_id, channel, payload, created, attempts, next_attempt, sent, error = row
    return Notification(
        nid, request_id, channel, payload, _parse(created), attempts, _parse(next_attempt),
        _parse(sent), error,
    )


def _acknowledgements(conn: sqlite3.Connection) -> list[Acknowledgement]:
    rows = conn.execute(
        "SELECT employee, service, terms_url, acknowledged_at FROM terms_acknowledgements"
        " ORDER BY acknowledged_at, employee, service"
    ).fetchall()
    return [Acknowledgement(e, s, u, _parse(at)) for e, s, u, at in rows]


def _activity(conn: sqlite3.Connection, since: dt.datetime, employee: str | None = None,
              service: str | None = None) -> list[AuditedAction]:
    where, params = ["at >= ?"], [_ts(since)]
    for column, value in (("employee", employee), ("service", service)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    rows = conn.execute(
        "SELECT employee, service, action, at, target, outcome FROM audited_actions"
        f" WHERE {' AND '.join(where)} ORDER BY at, id",
        params,
    ).fetchall()
    return [AuditedAction(e, s, a, _parse(at), t, o) for e, s, a, at, t, o in rows]


def _record(conn: sqlite3.Connection, event: Event) -> None:
    stamp = _ts(event.at)
    if isinstance(event, BlockedAttempt):
        conn.execute(
            "INSERT INTO blocked_daily VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT DO UPDATE"
            " SET count = count + 1, first_at = min(first_at, excluded.first_at),"
            " last_at = max(last_at, excluded.last_at)",
            (stamp[:10], event.employee or "", event.service, event.reason, stamp, stamp),
        )
    elif isinstance(event, AuditedAction):
        conn.execute(
            "INSERT INTO audited_actions (employee, service, action, at, target, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (event.employee, event.service, event.action, stamp, event.target, event.outcome),
        )
    else:
        conn.execute(
            "INSERT INTO grant_usage VALUES (?, ?, ?) ON CONFLICT DO UPDATE"
            " SET last_seen = max(last_seen, excluded.last_seen)",
            (event.employee, event.service, stamp),
        )


def _read_only_uri(path: Path) -> str:
    return f"file:{urllib.parse.quote(str(path))}?mode=ro"


def _rollback(conn: sqlite3.Connection) -> None:
    """End the transaction if one is still open (SQLite ends it by itself after some errors,
    such as a full disk or an I/O error; a second ROLLBACK would hide the first error)."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):  # the connection is broken: the original error says why
            conn.execute("ROLLBACK")


def _ts(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> Any:
    return dt.datetime.fromisoformat(value) if value else None


def _require(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
