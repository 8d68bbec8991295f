"""Signed, expiring links from a notification to one request's page in the console.

`https://<console host>/requests/<id>?t=<token>`, the token `<expiry unix time>.<HMAC>` over the
request id and the expiry, keyed by a key derived from the state directory's secret (as the
CSRF tokens are). A link proves nothing about who opens it: it only leads to the request's page,
which needs the approver's sign-in and a button that posts before anything changes (mail
scanners follow links). It is single-use: its first use by the signed-in approver is recorded
in the state database under the token's SHA-256 (`digest`).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import urllib.parse

DEFAULT_HOST = "gatekeeper.office"
LINK_SECONDS = 7 * 86400


class LinkState(enum.StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"  # tampered with, or for another request


class LinkSigner:
    def __init__(self, secret: bytes, *, max_age: float = LINK_SECONDS) -> None:
        self._key = hmac.new(secret, b"gatekeeper console link v1", hashlib.sha256).digest()
        self.max_age = max_age

    def token(self, request_id: str, now: float) -> str:
        expires = int(now + self.max_age)
        return f"{expires}.{self._mac(request_id, expires)}"

    def url(self, host: str, request_id: str, now: float) -> str:
        query = urllib.parse.urlencode({"t": self.token(request_id, now)})
        return f"https://{host}/requests/{request_id}?{query}"

    def check(self, request_id: str, token: str, now: float) -> LinkState:
        expires_text, _, mac = token.partition(".")
        if not expires_text.isdigit() or len(expires_text) > 12 or not mac:
            return LinkState.INVALID
        expires = int(expires_text)
        if not hmac.compare_digest(mac, self._mac(request_id, expires)):
            return LinkState.INVALID
        return LinkState.VALID if now < expires else LinkState.EXPIRED

    def _mac(self, request_id: str, expires: int) -> str:
        message = f"{request_id}\0{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def expiry(token: str) -> int | None:
    """The expiry a (checked) token names, as unix time."""
    text = token.partition(".")[0]
    return int(text) if text.isdigit() else None


def digest(token: str) -> str:
    """What the state database keeps of a used link: never the token itself."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
