"""Proxy sign-in, checked off mitmproxy's event loop: the office directory or an htpasswd file.

mitmproxy's `proxyauth` checks an htpasswd password on the event loop (a sha256-crypt or
bcrypt hash: a fraction of a second during which every employee's traffic waits), and again
for every plain-HTTP request. So gatekeeper takes the `@FILE` form of the option over: mitmproxy
still declares and validates `proxyauth` (the documented interface is unchanged), this addon
then disables mitmproxy's check and signs people in itself, through `SignIns` (a worker with a
deadline, a short cache of successes). The office directory (gateway.yaml `directory:`) is
checked the same way. `any` and `user:pass` cost nothing and stay with mitmproxy.

A failure is answered exactly as `proxyauth` does (407 with `Proxy-Authenticate`, on CONNECT
and on plain requests), so `ProxyLoginGuard`, right after, counts and slows it; a check that
does not finish in time is a 503. An address the guard already slows down waits before its
next expensive check too, and one address has one expensive check running at a time. On
success `flow.metadata["proxyauth"]` is `(user, "")`: the password is kept nowhere, and
`Proxy-Authorization` does not go upstream. Transparent listeners know people by address.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import weakref
from collections.abc import AsyncIterator, Coroutine, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.addons.proxyauth import is_http_proxy, make_auth_required_response

from gatekeeper.addons.responses import REASON_HEADER
from gatekeeper.addons.runtime import Runtime, directory_readyz, log
from gatekeeper.htpasswd import HtpasswdVerifier
from gatekeeper.sign_in import SignInResult, SignIns

if TYPE_CHECKING:  # the guard is handed in: addons do not import each other
    from gatekeeper.addons.proxy_login_guard import ProxyLoginGuard


class ProxySignIn:
    """Per request, or once per CONNECT tunnel, as mitmproxy's `proxyauth`."""

    def __init__(self, runtime: Runtime, guard: ProxyLoginGuard) -> None:
        self.runtime = runtime
        self.guard = guard
        self.htpasswd: SignIns | None = None
        self.started = False  # `running` has been: a file named later starts at once
        self.authenticated: MutableMapping[connection.Client, tuple[str, str]] = (
            weakref.WeakKeyDictionary()
        )
        self._turns: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # address -> lock, users

    def configure(self, updated: set[str]) -> None:
        if "proxyauth" not in updated:
            return
        self._stop_htpasswd()
        spec = ctx.options.proxyauth or ""
        if not spec.startswith("@"):
            return  # none, `any`, `user:pass`: mitmproxy's own check is cheap
        try:
            verifier = HtpasswdVerifier(Path(spec[1:]))  # start-up, before anyone connects
        except (OSError, ValueError) as e:
            raise exceptions.OptionsError(f"Could not open htpasswd file: {spec[1:]}") from e
        ctx.master.addons.get("proxyauth").validator = None  # mitmproxy checks no more
        self.htpasswd = SignIns(verifier)
        if self.started:
            verifier.start()

    def running(self) -> None:
        self.started = True
        directory_readyz(self.runtime)
        if self.htpasswd is not None:
            self.htpasswd.verifier.start()

    def done(self) -> None:
        self._stop_htpasswd()

    def _stop_htpasswd(self) -> None:
        if self.htpasswd is not None:
            self.htpasswd.verifier.stop()
            self.htpasswd = None

    def sign_ins(self) -> SignIns | None:
        """The proxy's password check in force (the console's sign-in uses it too)."""
        directory = self.runtime.directory
        return directory.sign_ins if directory is not None else self.htpasswd

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        sign_ins = self.sign_ins()
        if sign_ins is not None and await self._sign_in(sign_ins, flow):
            self.authenticated[flow.client_conn] = flow.metadata["proxyauth"]

    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, bool] | None:
        """Synchronous unless a password must be checked: a coroutine only then."""
        sign_ins = self.sign_ins()
        if sign_ins is None or not is_http_proxy(flow):
            return None  # transparent listeners know people by their device's address
        if flow.client_conn in self.authenticated:
            flow.metadata["proxyauth"] = self.authenticated[flow.client_conn]
            return None
        return None if flow.is_replay else self._sign_in(sign_ins, flow)

    async def _sign_in(self, sign_ins: SignIns, flow: http.HTTPFlow) -> bool:
        credentials = basic_credentials(flow.request.headers.get("Proxy-Authorization", ""))
        if credentials is None:
            flow.response = make_auth_required_response(True)
            return False
        peer = flow.client_conn.peername
        try:
            result, employee = await sign_ins.sign_in(*credentials,
                                                      self._turn(peer[0] if peer else ""))
        except Exception:  # fail closed: the flow must not go through unchecked
            log.exception("internal_error", hook="ProxySignIn.sign_in")
            result, employee = SignInResult.UNAVAILABLE, None
        if employee is not None:
            flow.metadata["proxyauth"] = (employee, "")
            del flow.request.headers["Proxy-Authorization"]
            return True
        if result is SignInResult.UNAVAILABLE:
            flow.response = http.Response.make(
                503, sign_ins.verifier.unavailable_text,
                {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "30",
                 REASON_HEADER: sign_ins.verifier.unavailable_reason,
                 "Cache-Control": "no-store"},
            )
        else:
            flow.response = make_auth_required_response(True)
        return False

    @contextlib.asynccontextmanager
    async def _turn(self, client: str) -> AsyncIterator[None]:
        """One expensive check per client address at a time, after the guard's delay for an
        address that keeps sending wrong passwords: a guesser cannot occupy every worker."""
        lock, users = self._turns.setdefault(client, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                delay = self.guard.delay_before_check(client)
                if delay > 0:
                    await asyncio.sleep(delay)
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._turns[client]


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of a `Basic` header; a password may contain colons."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = binascii.a2b_base64(value.strip().encode()).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon and user else None
