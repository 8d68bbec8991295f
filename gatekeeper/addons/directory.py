"""Employees and proxy sign-in from the office directory (gateway.yaml `directory:`).

`DirectoryEmployees` comes first in the addon chain: when the config directory is set it reads
the `directory:` section, so that `Lifecycle`'s reloader installs the files' policy through
the directory (`Runtime.file_policy`). `DirectorySignIn` comes right after `Lifecycle` and
replaces mitmproxy's `proxyauth` for the directory: it checks `Proxy-Authorization` by a bind
as the user (in a worker, with a deadline), and answers a failure exactly as `proxyauth` does
(407 with `Proxy-Authenticate`), or 503 when the directory does not answer. On success
`flow.metadata["proxyauth"]` is `(employee id, "")`: the password is kept nowhere.
"""

from __future__ import annotations

import binascii
import weakref
from collections.abc import MutableMapping
from pathlib import Path

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.addons.proxyauth import is_http_proxy, make_auth_required_response

from gatekeeper.addons.responses import REASON_HEADER
from gatekeeper.addons.runtime import Runtime, log
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.directory.live import LiveDirectory, SignInResult
from gatekeeper.directory.store import directory_settings
from gatekeeper.metrics import Reply

UNAVAILABLE_REASON = "directory_unavailable"


class DirectoryEmployees:
    """Owns the `LiveDirectory` (list, refresh thread, sign-in pool)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def configure(self, updated: set[str]) -> None:
        if "gatekeeper_config_dir" in updated and ctx.options.gatekeeper_config_dir:
            self._setup(Path(ctx.options.gatekeeper_config_dir))
        if self.runtime.directory is not None and ctx.options.proxyauth:
            raise exceptions.OptionsError(
                "proxyauth and a directory: section in gateway.yaml both sign people in: "
                "remove proxyauth (the directory signs people in)"
            )

    def _setup(self, config_dir: Path) -> None:
        try:
            settings = directory_settings(config_dir)
        except ConfigError as e:
            raise exceptions.OptionsError(
                "invalid gateway.yaml:\n" + "\n".join(str(p) for p in e.problems)
            ) from e
        self.done()
        runtime = self.runtime
        if settings is None:
            runtime.directory, runtime.file_policy = None, runtime.holder
            return
        state_dir = Path(ctx.options.gatekeeper_state_dir)
        runtime.directory = LiveDirectory(settings, runtime.holder, lambda: runtime.metrics,
                                          state_dir)
        runtime.file_policy = runtime.directory.inbox

    def running(self) -> None:
        if self.runtime.directory is not None:
            self.runtime.directory.start()

    def done(self) -> None:
        if self.runtime.directory is not None:
            self.runtime.directory.stop()


class DirectorySignIn:
    """Proxy sign-in against the directory, per request or once per CONNECT tunnel."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.authenticated: MutableMapping[connection.Client, tuple[str, str]] = (
            weakref.WeakKeyDictionary()
        )

    def running(self) -> None:
        """/readyz waits for the first read of the directory and says how it went."""
        lifecycle = ctx.master.addons.get("lifecycle")
        admin = getattr(lifecycle, "admin", None)
        directory = self.runtime.directory
        if admin is None or directory is None or "/readyz" not in admin.routes:
            return
        probe = admin.routes["/readyz"]

        def readyz() -> Reply:
            reply = probe()
            if not directory.attempted.is_set():
                return Reply(503, reply.content_type, b"not ready: reading the directory\n")
            line = f"{directory.status()}\n".encode()
            return Reply(reply.status, reply.content_type, reply.body + line)

        admin.routes["/readyz"] = readyz

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        if self.runtime.directory is not None and await self._sign_in(flow):
            self.authenticated[flow.client_conn] = flow.metadata["proxyauth"]

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.runtime.directory is None or not is_http_proxy(flow):
            return  # transparent listeners know people by their device's address
        if flow.client_conn in self.authenticated:
            flow.metadata["proxyauth"] = self.authenticated[flow.client_conn]
        elif not flow.is_replay:
            await self._sign_in(flow)

    async def _sign_in(self, flow: http.HTTPFlow) -> bool:
        directory = self.runtime.directory
        assert directory is not None
        credentials = _basic_credentials(flow.request.headers.get("Proxy-Authorization", ""))
        if credentials is None:
            flow.response = make_auth_required_response(True)
            return False
        try:
            result, employee = await directory.sign_in(*credentials)
        except Exception:  # fail closed: mitmproxy would let the flow through unchecked
            log.exception("internal_error", hook="DirectorySignIn.sign_in")
            result, employee = SignInResult.UNAVAILABLE, None
        if employee is not None:
            flow.metadata["proxyauth"] = (employee, "")
            del flow.request.headers["Proxy-Authorization"]
            return True
        if result is SignInResult.UNAVAILABLE:
            flow.response = http.Response.make(
                503,
                b"The office directory is not answering, so your sign-in cannot be checked. "
                b"Try again in a minute; if it persists, tell IT.\n",
                {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "30",
                 REASON_HEADER: UNAVAILABLE_REASON, "Cache-Control": "no-store"},
            )
        else:
            flow.response = make_auth_required_response(True)
        return False


def _basic_credentials(header: str) -> tuple[str, str] | None:
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
