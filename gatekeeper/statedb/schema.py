"""The state database's schema: grown by appending to `MIGRATIONS`, never by editing an entry.

`PRAGMA user_version` counts the entries applied, each is applied in its own transaction, and a
database written by a newer gatekeeper is refused rather than misread."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from gatekeeper.statedb.errors import StateError

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema. Times are UTC text `YYYY-MM-DDTHH:MM:SS.ffffffZ` (sortable).
    """
    CREATE TABLE access_requests (
        id              TEXT PRIMARY KEY,
        employee        TEXT NOT NULL,
        service         TEXT NOT NULL,
        justification   TEXT NOT NULL,
        created         TEXT NOT NULL,
        updated         TEXT NOT NULL,
        status          TEXT NOT NULL
                        CHECK (status IN ('pending', 'approved', 'denied', 'withdrawn')),
        decided_by      TEXT,
        decided_on      TEXT,
        decision_reason TEXT
    );
    -- at most one pending request per (employee, service): a second one updates it
    CREATE UNIQUE INDEX access_requests_one_pending
        ON access_requests (employee, service) WHERE status = 'pending';
    CREATE INDEX access_requests_by_employee ON access_requests (employee, updated);

    CREATE TABLE terms_acknowledgements (
        employee        TEXT NOT NULL,
        service         TEXT NOT NULL,
        terms_url       TEXT NOT NULL,
        acknowledged_at TEXT NOT NULL,
        PRIMARY KEY (employee, service, terms_url)
    );

    -- digest = HMAC-SHA256(secret.key, service NUL cookie value): never the value itself
    CREATE TABLE session_bindings (
        service  TEXT NOT NULL,
        digest   BLOB NOT NULL,
        employee TEXT NOT NULL,
        bound_at TEXT NOT NULL,
        PRIMARY KEY (service, digest)
    );
    CREATE INDEX session_bindings_by_owner ON session_bindings (employee, service, bound_at);

    -- blocked requests, counted per UTC day so that a blocked page's many requests stay one row
    CREATE TABLE blocked_daily (
        day      TEXT NOT NULL,
        employee TEXT NOT NULL,  -- '' when the employee is unknown
        service  TEXT NOT NULL,
        reason   TEXT NOT NULL,
        count    INTEGER NOT NULL,
        first_at TEXT NOT NULL,
        last_at  TEXT NOT NULL,
        PRIMARY KEY (day, employee, service, reason)
    );

    CREATE TABLE audited_actions (
        id       INTEGER PRIMARY KEY,
        employee TEXT NOT NULL,
        service  TEXT NOT NULL,
        action   TEXT NOT NULL,
        at       TEXT NOT NULL
    );
    CREATE INDEX audited_actions_at ON audited_actions (at);

    CREATE TABLE grant_usage (
        employee  TEXT NOT NULL,
        service   TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        PRIMARY KEY (employee, service)
    );

    CREATE TABLE notifications (
        id           INTEGER PRIMARY KEY,
        request_id   TEXT NOT NULL REFERENCES access_requests (id),
        channel      TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created      TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt TEXT NOT NULL,
        sent_at      TEXT,
        last_error   TEXT
    );
    CREATE INDEX notifications_due ON notifications (next_attempt) WHERE sent_at IS NULL;
    """,
    # 2: activity: what an audited action was about (a group or profile id as the site names
    # it, or a masked address for an account creation), and whether it went through
    # ('recorded'), was refused ('refused'; 'reported' in report mode) or could not be read
    # ('unreadable'); and an index for the activity report of one person.
    """
    ALTER TABLE audited_actions ADD COLUMN target TEXT;
    ALTER TABLE audited_actions ADD COLUMN outcome TEXT NOT NULL DEFAULT 'recorded';
    CREATE INDEX audited_actions_by_who ON audited_actions (employee, service, at);
    """,
    # 3: the approver's console. A notification's signed link opens its request once: the
    # first use is recorded here, keyed by the SHA-256 of the link's token (never the token).
    """
    CREATE TABLE console_link_uses (
        digest     TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        used_at    TEXT NOT NULL
    );
    """,
    # 4: messages about no request (to IT: a failed reload, the monthly review).
    """
    CREATE TABLE notifications_2 (
        id           INTEGER PRIMARY KEY,
        request_id   TEXT REFERENCES access_requests (id),  -- NULL: not about a request
        channel      TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created      TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt TEXT NOT NULL,
        sent_at      TEXT,
        last_error   TEXT
    );
    INSERT INTO notifications_2 SELECT * FROM notifications;
    DROP TABLE notifications;
    ALTER TABLE notifications_2 RENAME TO notifications;
    CREATE INDEX notifications_due ON notifications (next_attempt) WHERE sent_at IS NULL;
    """,
)


def statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (sqlite3 runs one per execute)."""
    buffer = ""
    for part in script.split(";"):
        buffer += part + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                yield buffer
            buffer = ""
    if buffer.strip(" \n;"):
        raise StateError(f"incomplete statement in migration: {buffer.strip()[:60]}")
