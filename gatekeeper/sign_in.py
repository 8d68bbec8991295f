"""Proxy sign-in checks that never hold up mitmproxy's event loop, whatever checks the password.

A `Verifier` knows where the accounts are (the office directory, an htpasswd file): it names
the account behind a user name at once (a dict lookup, on the loop) and starts the expensive
part, the password check, in a pool of its own. `SignIns` puts the same machinery around every
verifier: the check runs under a deadline, identical attempts already waiting share one check,
and a success is remembered for a short while as a keyed hash of the account and the password
(never the password itself), so a browser that sends its credentials with every plain-HTTP
request costs one HMAC, not one password hash, per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import NamedTuple, Protocol

from gatekeeper.logs import get_logger

log = get_logger("gatekeeper.sign_in")
MAX_CACHED_SIGN_INS = 10_000


class SignInResult(enum.StrEnum):
    """How one sign-in went (label values of `gatekeeper_directory_sign_ins_total`)."""

    SUCCESS = "success"
    CACHED = "cached"
    REJECTED = "rejected"  # wrong password, or not an employee: 407
    UNAVAILABLE = "unavailable"  # the check did not finish in time: 503


class SignInUnavailableError(Exception):
    """The verifier cannot say now (the directory is not answering, no list read yet)."""


class Account(NamedTuple):
    """Who signs in: the name put into `flow.metadata["proxyauth"]`, and what the password is
    checked against (a directory entry, a stored hash): a change there invalidates the cache."""

    employee: str
    subject: str


class Verifier(Protocol):
    """Where the accounts are. `account` runs on the loop and must be a lookup; `check` starts
    the password check elsewhere and returns its future (True: the password is right)."""

    name: str  # in log events: "directory", "htpasswd"
    timeout_seconds: float
    cache_seconds: float
    unavailable_reason: str  # X-Gatekeeper-Reason of the 503
    unavailable_text: bytes  # the 503's body, for the employee

    def account(self, user: str) -> Account | None: ...

    def check(self, account: Account, password: str) -> asyncio.Future[bool]: ...


class SignIns:
    """One verifier with a deadline, shared checks and a short cache of successes."""

    def __init__(self, verifier: Verifier,
                 count: Callable[[SignInResult], object] = lambda result: None) -> None:
        self.verifier = verifier
        self._count = count
        self._key = os.urandom(32)  # for the cache's keyed hashes; never stored
        self._cache: dict[str, tuple[bytes, float]] = {}  # subject -> (keyed hash, valid until)
        self._pending: dict[bytes, asyncio.Future[bool]] = {}  # one check per attempt at a time

    async def sign_in(self, user: str, password: str,
                      gate: AbstractAsyncContextManager[object] | None = None,
                      ) -> tuple[SignInResult, str | None]:
        """The employee on success. A new check waits for `gate` first (per-address limits);
        then neither it nor an identical attempt joining it waits longer than the timeout."""
        try:
            account = self.verifier.account(user)
        except SignInUnavailableError:
            return self._counted(SignInResult.UNAVAILABLE), None
        if account is None or not password:
            return self._counted(SignInResult.REJECTED), None
        digest = hmac.new(self._key, "\0".join((*account, password)).encode(),
                          hashlib.sha256).digest()
        if self.cached(account, digest):
            return self._counted(SignInResult.CACHED), account.employee
        try:
            pending = self._pending.get(digest)
            if pending is not None:  # an identical attempt is being checked: wait for it
                valid = await self._within_deadline(pending)
            else:
                async with gate or contextlib.nullcontext():
                    if self.cached(account, digest):  # an identical attempt succeeded meanwhile
                        return self._counted(SignInResult.CACHED), account.employee
                    valid = await self._within_deadline(self._check(digest, account, password))
        except (TimeoutError, SignInUnavailableError) as e:
            log.warning(f"{self.verifier.name}_sign_in_unavailable", error=str(e) or "timed out")
            return self._counted(SignInResult.UNAVAILABLE), None
        if not valid:
            self._cache.pop(account.subject, None)
            return self._counted(SignInResult.REJECTED), None
        if len(self._cache) >= MAX_CACHED_SIGN_INS:
            self._cache.clear()
        self._cache[account.subject] = (digest, time.monotonic() + self.verifier.cache_seconds)
        return self._counted(SignInResult.SUCCESS), account.employee

    def cached(self, account: Account, digest: bytes) -> bool:
        entry = self._cache.get(account.subject)
        return bool(entry and entry[1] > time.monotonic() and hmac.compare_digest(entry[0],
                                                                                  digest))

    async def _within_deadline(self, check: asyncio.Future[bool]) -> bool:
        return await asyncio.wait_for(asyncio.shield(check), self.verifier.timeout_seconds)

    def _check(self, digest: bytes, account: Account, password: str) -> asyncio.Future[bool]:
        """The check of this attempt, shared by identical attempts already waiting on one."""
        pending = self._pending.get(digest)
        if pending is None:
            pending = self.verifier.check(account, password)
            self._pending[digest] = pending
            pending.add_done_callback(lambda _: self._pending.pop(digest, None))
        return pending

    def _counted(self, result: SignInResult) -> SignInResult:
        self._count(result)
        return result
