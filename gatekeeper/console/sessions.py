"""The console's sign-in sessions: in memory (a restart signs the approver out), each behind a
random id in an HttpOnly, Secure, SameSite=Strict cookie, ended after `idle` seconds without a
request. Every visitor gets a session before signing in, so the sign-in form has a CSRF token
too; signing in replaces the id (a planted cookie cannot be signed in for someone)."""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

IDLE_SECONDS = 15 * 60
MAX_SESSIONS = 1000  # oldest forgotten first: a flood of visitors cannot fill the memory
COOKIE = "__Host-gatekeeper-console"


@dataclass(slots=True)
class Session:
    id: str
    last_seen: float
    approver: str | None = None  # the approver's address once signed in
    # A notification link opened before signing in: (request id, token), used after it.
    link: tuple[str, str] | None = None


class Sessions:
    def __init__(self, idle: float = IDLE_SECONDS) -> None:
        self.idle = idle
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session with this id, its idle clock restarted; None if none or idle."""
        session = self._by_id.get(session_id or "")
        if session is None:
            return None
        if now - session.last_seen > self.idle:
            del self._by_id[session.id]
            return None
        session.last_seen = now
        self._by_id.move_to_end(session.id)
        return session

    def new(self, now: float) -> Session:
        session = Session(secrets.token_urlsafe(32), now)
        self._by_id[session.id] = session
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return session

    def sign_in(self, session: Session, approver: str, now: float) -> Session:
        """A signed-in session under a new id (the old one ends)."""
        self.end(session)
        signed_in = self.new(now)
        signed_in.approver = approver
        signed_in.link = session.link
        return signed_in

    def end(self, session: Session) -> None:
        self._by_id.pop(session.id, None)


def cookie(session: Session) -> str:
    """The Set-Cookie value: only over HTTPS, never to scripts, never on a cross-site
    request (`__Host-`: this host only, path /)."""
    return f"{COOKIE}={session.id}; Path=/; Secure; HttpOnly; SameSite=Strict"
