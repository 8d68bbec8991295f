"""CSRF tokens for the forms the proxy serves itself (request access, accept the terms).

A token is `<issued unix time>.<HMAC>` over (purpose, employee, subject, issued time), keyed
by a key derived from the state directory's secret. It is bound to one employee and one
subject (a service, or a service and its Terms-of-Use URL), so a page from another site, or
another employee's form, cannot post for someone; and it ages out after `max_age`. Nothing is
stored per token: any proxy process with the same state directory can check it.
"""

from __future__ import annotations

import hashlib
import hmac

MAX_AGE_SECONDS = 12 * 3600  # a block page left open over a working day still works
CLOCK_SKEW_SECONDS = 60


class CsrfTokens:
    def __init__(self, secret: bytes, *, max_age: float = MAX_AGE_SECONDS) -> None:
        # A derived key: the state secret also keys the session-binding hashes.
        self._key = hmac.new(secret, b"gatekeeper csrf v1", hashlib.sha256).digest()
        self.max_age = max_age

    def issue(self, purpose: str, employee: str, subject: str, now: float) -> str:
        issued = int(now)
        return f"{issued}.{self._mac(purpose, employee, subject, issued)}"

    def valid(self, token: str, purpose: str, employee: str, subject: str, now: float) -> bool:
        """Whether `token` was issued for exactly this (purpose, employee, subject) and is
        neither too old nor from the future."""
        issued_text, _, mac = token.partition(".")
        if not issued_text.isdigit() or not mac:
            return False
        issued = int(issued_text)
        if not (now - self.max_age <= issued <= now + CLOCK_SKEW_SECONDS):
            return False
        return hmac.compare_digest(mac, self._mac(purpose, employee, subject, issued))

    def _mac(self, purpose: str, employee: str, subject: str, issued: int) -> str:
        message = "\0".join((purpose, employee, subject, str(issued))).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
