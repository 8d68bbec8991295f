"""Proxy sign-in failures: counted, logged, slowed down per client address; the realm named.

mitmproxy's `proxyauth` (or gatekeeper's `ProxySignIn`, for an htpasswd file or the directory)
checks the `Proxy-Authorization` header and answers a failure with a 407 in `http_connect`
(tunnels) or `requestheaders` (plain HTTP). This addon runs right after both. A 407 for a
request that carried credentials is a wrong password: counted in
`gatekeeper_proxy_auth_failures_total`, logged with the user name and the client address (the
header is parsed here and only its user part kept, never the password) and, past a few
failures, held back by `LoginThrottle` with `asyncio.sleep`, which pauses that one request
only (`ProxySignIn` also waits that long before a new password check from such an address).
A 407 without credentials is the ordinary first challenge of a browser: not a failure. Every
407 names the office's realm (`gatekeeper_proxy_realm`) instead of "mitmproxy".
"""

from __future__ import annotations

import asyncio
import binascii
import time
from collections.abc import Coroutine
from typing import Any

from mitmproxy import ctx, exceptions, http

from gatekeeper.addons.runtime import Runtime, log
from gatekeeper.core.login_throttle import LoginThrottle, ThrottleSettings

DEFAULT_REALM = "gatekeeper"
DEFAULTS = ThrottleSettings()
MAX_LOGGED_USER = 64  # characters of a (client-chosen) user name kept in the log
# option -> (ThrottleSettings field, factor to its unit: seconds)
SETTINGS_OPTIONS = {
    "gatekeeper_proxy_auth_free_failures": ("free_failures", 1),
    "gatekeeper_proxy_auth_window": ("window", 1),
    "gatekeeper_proxy_auth_first_delay_ms": ("first_delay", 0.001),
    "gatekeeper_proxy_auth_max_delay_ms": ("max_delay", 0.001),
}


class ProxyLoginGuard:
    """Listed first among gatekeeper's request hooks, so it sees proxyauth's verdict untouched."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.throttle = LoginThrottle()
        self.challenge = _challenge(DEFAULT_REALM)

    def load(self, loader) -> None:
        loader.add_option(
            "gatekeeper_proxy_realm", str, DEFAULT_REALM,
            "The realm of the proxy's sign-in prompt (browsers show it): name the office.",
        )
        loader.add_option(
            "gatekeeper_proxy_auth_free_failures", int, DEFAULTS.free_failures,
            "Wrong proxy passwords one client address may send within "
            "gatekeeper_proxy_auth_window seconds before every further answer is delayed.",
        )
        loader.add_option(
            "gatekeeper_proxy_auth_window", int, int(DEFAULTS.window),
            "Seconds after which a client address's wrong proxy passwords are forgotten.",
        )
        loader.add_option(
            "gatekeeper_proxy_auth_first_delay_ms", int, int(DEFAULTS.first_delay * 1000),
            "Milliseconds the first delayed answer waits; each further failure doubles it.",
        )
        loader.add_option(
            "gatekeeper_proxy_auth_max_delay_ms", int, int(DEFAULTS.max_delay * 1000),
            "The longest one answer to a client guessing proxy passwords waits (milliseconds).",
        )

    def configure(self, updated: set[str]) -> None:
        if "gatekeeper_proxy_realm" in updated:
            realm = ctx.options.gatekeeper_proxy_realm
            if not realm or not realm.isprintable() or '"' in realm or "\\" in realm:
                raise exceptions.OptionsError(
                    "gatekeeper_proxy_realm must be printable text without quotes or backslashes"
                )
            self.challenge = _challenge(realm)
        if updated & SETTINGS_OPTIONS.keys():
            values = {field: getattr(ctx.options, name) * unit
                      for name, (field, unit) in SETTINGS_OPTIONS.items()}
            if min(values.values()) < 0 or values["max_delay"] <= 0:
                raise exceptions.OptionsError(
                    "gatekeeper_proxy_auth_* must not be negative (max_delay_ms: positive)"
                )
            self.throttle = LoginThrottle(ThrottleSettings(**values))

    def delay_before_check(self, client: str) -> float:
        """Seconds `ProxySignIn` waits before an expensive password check from `client`: an
        address already slowed down is slowed down before the check too, not only after."""
        return self.throttle.delay(client, time.monotonic())

    def http_connect(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        return self._judge(flow)

    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        return self._judge(flow)

    def _judge(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """Synchronous unless the answer must wait: a coroutine is returned only then, so an
        ordinary request costs a dict lookup, not a task."""
        peer = flow.client_conn.peername
        client = peer[0] if peer else "unknown"
        auth = flow.metadata.get("proxyauth")
        if auth is not None:
            user = auth[0]  # never the password beside it
            return self._hold(flow, client, self.throttle.succeeded(client, user), user)
        response = flow.response
        if response is None or response.status_code != 407:
            return None
        response.headers["Proxy-Authenticate"] = self.challenge
        presented = flow.request.headers.get("Proxy-Authorization")
        if presented is None:
            return None  # the first challenge of every browser: no failure
        user = user_of(presented)
        delay = self.throttle.failed(client, user or "", time.monotonic())
        self.runtime.metrics.proxy_auth_failures.inc()
        log.warning(
            "proxy_auth_failed", user=user, client=client,
            failures=self.throttle.failures(client),
            delay=round(delay, 3) if delay is not None else None,
            dropped=delay is None,
        )
        return self._hold(flow, client, delay)

    def _hold(self, flow: http.HTTPFlow, client: str, delay: float | None,
              signed_in: str | None = None) -> Coroutine[Any, Any, None] | None:
        """Drop the request, let it go, or return the wait (then forgive `signed_in`)."""
        if delay is None:  # DROP
            if flow.killable:
                flow.kill()  # too many answers of this address waiting already
            return None
        if delay <= 0:
            return None
        return self._wait(client, delay, signed_in)

    async def _wait(self, client: str, delay: float, signed_in: str | None) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            self.throttle.done_waiting(client)
        if signed_in is not None:
            self.throttle.forgive(client, signed_in)


def user_of(header: str) -> str | None:
    """The user part of a Basic `Proxy-Authorization` value; the password is dropped here."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = binascii.a2b_base64(encoded.strip().encode("ascii"))
    except (binascii.Error, UnicodeEncodeError):
        return None
    user = decoded.partition(b":")[0].decode("utf-8", "replace")[:MAX_LOGGED_USER]
    return "".join(c if c.isprintable() else "?" for c in user)  # no forged log lines


def _challenge(realm: str) -> str:
    return f'Basic realm="{realm}"'
