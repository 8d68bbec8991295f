"""The state: what the config files do not hold, in one SQLite file in the state directory.

`schema` (migrations), `records` (the values stored), `errors`, `files` (private files),
`sessions` (session bindings and their key), `database` (`StateDB`); the proxy's one thread for
state operations is `gatekeeper.statedb.worker` (imported by name: it needs the metrics).
The names most callers use are importable from here.
"""

from gatekeeper.statedb.database import (
    BUSY_TIMEOUT_MS,
    DB_FILE,
    StateDB,
    confirm_written,
    deadline,
    integrity_problems,
)
from gatekeeper.statedb.errors import (
    RequestDecidedError,
    StateCorruptError,
    StateError,
    StateTimeoutError,
    UnknownRequestError,
)
from gatekeeper.statedb.records import (
    ACCOUNT_CREATED,
    APPROVED,
    DECISIONS,
    DENIED,
    EMPLOYEE_CHANNEL,
    ID_ALPHABET,
    ID_LENGTH,
    MAX_JUSTIFICATION,
    PENDING,
    RECORDED,
    REFUSED,
    REPORTED,
    UNREADABLE,
    WITHDRAWN,
    AccessRequest,
    Acknowledgement,
    AuditedAction,
    Binding,
    BlockedAttempt,
    BlockedSummary,
    Event,
    GrantUse,
    Notification,
    ReviewData,
    clean_justification,
    normalize_request_id,
)
from gatekeeper.statedb.schema import MIGRATIONS
from gatekeeper.statedb.sessions import (
    KEEP_BINDINGS,
    SECRET_FILE,
    SessionCache,
    load_secret,
    session_digest,
)

__all__ = [
    "ACCOUNT_CREATED", "APPROVED", "BUSY_TIMEOUT_MS", "DB_FILE", "DECISIONS", "DENIED",
    "EMPLOYEE_CHANNEL", "ID_ALPHABET", "ID_LENGTH",
    "KEEP_BINDINGS", "MAX_JUSTIFICATION", "MIGRATIONS", "PENDING", "RECORDED", "REFUSED",
    "REPORTED", "SECRET_FILE", "UNREADABLE", "WITHDRAWN",
    "AccessRequest", "Acknowledgement", "AuditedAction", "Binding", "BlockedAttempt",
    "BlockedSummary", "Event", "GrantUse", "Notification", "RequestDecidedError", "ReviewData",
    "SessionCache", "StateCorruptError", "StateDB", "StateError", "StateTimeoutError",
    "UnknownRequestError", "clean_justification", "confirm_written", "deadline",
    "integrity_problems", "load_secret", "normalize_request_id", "session_digest",
]
