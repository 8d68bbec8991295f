"""Session bindings in the proxy's memory: keyed hashes (HMAC) of session cookie values, never the
values, under a key kept in `<state_dir>/secret.key`."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from gatekeeper.statedb.errors import StateError
from gatekeeper.statedb.files import ensure_private_dir, match_dir_owner
from gatekeeper.statedb.records import Binding

if TYPE_CHECKING:
    from gatekeeper.statedb.database import StateDB

SECRET_FILE = "secret.key"
SECRET_BYTES = 32
KEEP_BINDINGS = 5  # session bindings kept per (employee, service): one per device, roughly


class SessionCache:
    """The proxy's in-memory view of the session bindings: a lookup never touches the disk.

    Fill it from `StateDB.load_bindings()` at start; `bind` updates memory and returns the
    `Binding` to persist with `StateDB.store_bindings` (which trims by the same rule), possibly
    batched on a writer thread. Not thread-safe: use it from the event loop only.
    """

    def __init__(
        self, secret: bytes, bindings: Iterable[Binding] = (), keep: int = KEEP_BINDINGS
    ) -> None:
        self._secret = secret
        self._keep = keep
        self._owner: dict[bytes, str] = {}  # digest (which includes the service) -> employee
        self._recent: dict[tuple[str, str], OrderedDict[bytes, None]] = {}
        for binding in bindings:  # oldest first, as load_bindings returns them
            self._add(binding.service, binding.digest, binding.employee)

    @classmethod
    def from_db(cls, db: StateDB, keep: int = KEEP_BINDINGS) -> SessionCache:
        return cls(load_secret(db.state_dir), db.load_bindings(), keep)

    def owner(self, service: str, cookie_value: str) -> str | None:
        """The employee this session value was bound to, or None if it never was."""
        return self._owner.get(session_digest(self._secret, service, cookie_value))

    def digest(self, service: str, cookie_value: str) -> bytes:
        return session_digest(self._secret, service, cookie_value)

    def learn(self, service: str, digests: dict[bytes, str]) -> None:
        """Add bindings read from the database (made by another proxy worker)."""
        for digest, employee in digests.items():
            if self._owner.get(digest) != employee:
                self._add(service, digest, employee)

    def bind(self, service: str, cookie_value: str, employee: str, now: dt.datetime) -> Binding:
        digest = session_digest(self._secret, service, cookie_value)
        self._add(service, digest, employee)
        return Binding(service, digest, employee, now)

    def _add(self, service: str, digest: bytes, employee: str) -> None:
        previous = self._owner.get(digest)
        if previous is not None:
            self._recent[(previous, service)].pop(digest, None)
        self._owner[digest] = employee
        recent = self._recent.setdefault((employee, service), OrderedDict())
        recent[digest] = None
        while len(recent) > self._keep:
            oldest, _ = recent.popitem(last=False)
            del self._owner[oldest]


def session_digest(secret: bytes, service: str, cookie_value: str) -> bytes:
    """HMAC-SHA256 of (service, cookie value): the same value on two services differs."""
    message = service.encode() + b"\0" + cookie_value.encode("utf-8", "surrogateescape")
    return hmac.new(secret, message, hashlib.sha256).digest()


def load_secret(state_dir: Path) -> bytes:
    """The binding key in `<state_dir>/secret.key`: created (0600, random) on first use.

    Created under a temporary name and linked into place, so two processes starting at once
    agree on one key and nobody ever reads a half-written file.
    """
    state_dir = Path(state_dir)
    path = state_dir / SECRET_FILE
    if not path.exists():
        ensure_private_dir(state_dir)
        tmp = state_dir / f".{SECRET_FILE}.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.urandom(SECRET_BYTES))
            os.fsync(fd)
            match_dir_owner(fd, state_dir)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won the race: use its key
        finally:
            tmp.unlink()
    secret = path.read_bytes()
    if len(secret) != SECRET_BYTES:
        raise StateError(f"{path} must hold exactly {SECRET_BYTES} bytes (it is damaged)")
    return secret
