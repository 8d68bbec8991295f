"""The proxy's own endpoints on governed hosts: `/.well-known/gatekeeper/...` form posts.

A browser blocked on, say, www.facebook.com posts the "Request access" form to
`https://www.facebook.com/.well-known/gatekeeper/request-access`; the portal claims that flow
before any access decision, reads the form when its body has arrived, and answers it itself:
the flow is never forwarded, so the upstream never sees it. Other addons add endpoints of
their own (the Terms-of-Use acknowledgement) through `routes`.

Every request under `/.well-known/gatekeeper/` on a governed host is the proxy's, whatever
its spelling (`//`, `/./`, `..`, `;x`, %-escapes, upper case, a trailing slash: compared as
`core.paths.path_key` reads them): a known endpoint answers a form post, anything else gets
404 or 405 from the proxy; none is ever forwarded. Forms are read by gatekeeper's bounded
parser (gatekeeper.bodies), never by mitmproxy's unbounded `urlencoded_form`: a form larger
than MAX_FORM_BYTES is 413, an encoded or odd one 415.

Forms carry a CSRF token bound to the employee and the service (gatekeeper.csrf). The same
path on a non-governed host is not ours and passes untouched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Coroutine, Mapping
from typing import Any

from mitmproxy import ctx, http

from gatekeeper.addons import responses
from gatekeeper.addons.context import (
    FlowContext,
    context_of,
    decided,
    open_context,
    require_context,
)
from gatekeeper.addons.decisions import fail_closed
from gatekeeper.addons.forms import (
    PORTAL_PREFIX,
    REQUEST_ACCESS_PATH,
    REQUEST_PURPOSE,
    Handler,
    PortalError,
    check_csrf,
    check_post,
    posted_form,
    safe_return_to,
)
from gatekeeper.addons.runtime import Runtime, leave_unread, log
from gatekeeper.console.links import LinkSigner
from gatekeeper.core.model import Verdict
from gatekeeper.core.paths import path_key
from gatekeeper.notify import POLL_SECONDS, POOL_POLL_SECONDS, Notifier, messages
from gatekeeper.statedb import AccessRequest, StateDB, confirm_written
from gatekeeper.statedb.worker import StateOperationError

DEFAULT_REQUESTS_PER_HOUR = 5
# How long a block page waits for the employee's request state before it goes without.
STATUS_WAIT_SECONDS = 0.25


class Portal:
    """Answers the portal endpoints; listed before the Enforcer, which skips claimed flows."""

    def __init__(self, runtime: Runtime, routes: Mapping[str, Handler] | None = None) -> None:
        self.runtime = runtime
        endpoints = {REQUEST_ACCESS_PATH: self.request_access, **(routes or {})}
        self.routes: dict[str, Handler] = {path_key(p): h for p, h in endpoints.items()}
        self.notifier: Notifier | None = None
        self.links: LinkSigner | None = None  # the notifications' links into the console

    # --- lifecycle --------------------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option(
            "gatekeeper_requests_per_hour", int, DEFAULT_REQUESTS_PER_HOUR,
            "How many access requests one employee may submit per hour (429 beyond).",
        )

    def running(self) -> None:
        state = self.runtime.state  # opened by Lifecycle.running, which runs first
        if state is None or self.notifier is not None:
            return
        self.links = LinkSigner(self.runtime.secret)
        if not self.runtime.delivers_notifications:
            return  # another worker sends them
        self.notifier = Notifier(state, lambda: self.runtime.policy, self.runtime.metrics,
                                 poll_seconds=POOL_POLL_SECONDS if self.runtime.in_pool
                                 else POLL_SECONDS)
        self.notifier.start()
        self.runtime.wake_notifier = self.notifier.wake

    def done(self) -> None:
        if self.notifier is not None:
            self.notifier.stop()

    # --- hooks ------------------------------------------------------------------------------

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        path = flow.request.path.partition("?")[0]
        if "%" not in path and "well-known" not in path.lower():
            return  # cannot be ours: no need to normalize (the common case)
        key = path_key(path)
        if key != PORTAL_PREFIX and not key.startswith(PORTAL_PREFIX + "/"):
            return
        context = open_context(self.runtime, flow)
        if context.decision.verdict is Verdict.PASS:
            return  # the same path on another site is that site's business
        context.portal = key
        flow.request.stream = False
        try:
            if key not in self.routes:
                raise PortalError(404, "not_found", "There is no such page of the proxy.")
            check_post(flow.request)
        except PortalError as e:
            flow.response = responses.refusal(e)
            leave_unread(flow)

    def request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """Synchronous for every flow but the portal's own: a coroutine only for those."""
        context = context_of(flow)
        if context is None or context.portal is None or flow.response is not None:
            return None
        return self._answer(flow)

    @fail_closed
    async def _answer(self, flow: http.HTTPFlow) -> None:
        path = require_context(flow).portal
        assert path is not None  # `request` hands over the portal's flows only
        try:
            await self.routes[path](flow)
        except PortalError as e:
            flow.response = responses.refusal(e)
        if flow.response is None:  # a claimed flow must never go upstream
            raise RuntimeError(f"portal endpoint {path} gave no answer")

    # --- request access ---------------------------------------------------------------------

    async def request_access(self, flow: http.HTTPFlow) -> None:
        runtime = self.runtime
        context = require_context(flow)
        policy, decision = context.policy, context.decision
        employee, service = decision.employee, decision.service
        if employee is None or service is None:
            raise PortalError(403, "unknown_employee", "We could not tell who you are, so you "
                              "cannot request access. Sign in to the proxy with your office "
                              "account and try again.")
        form = posted_form(flow)
        return_to = safe_return_to(form.get("return_to", "")) or "/"
        if decision.verdict is Verdict.ALLOW:
            flow.response = responses.already_allowed(return_to)
            return
        if decision.reason not in responses.REQUESTABLE:
            raise PortalError(403, "not_requestable", "Access cannot be requested here.")
        check_csrf(runtime, form.get("csrf", ""), REQUEST_PURPOSE, employee, service)
        limit = ctx.options.gatekeeper_requests_per_hour
        justification = form.get("justification", "")
        now = dt.datetime.now(dt.UTC)

        def record(db: StateDB) -> tuple[AccessRequest, bool] | None:
            """On the state worker: the rate limit, the request and its notifications, then
            read back as the approver will list it. None when the limit is reached."""
            if db.count_recent_requests(employee, now - dt.timedelta(hours=1)) >= limit:
                return None
            request, created = db.submit_request(
                employee, service, justification, now,
                notifications=lambda r: messages(policy, r, self.console_url(r.id)),
            )
            confirm_written(db, "the access request",
                            lambda reader: request.id in {r.id for r in reader.pending_requests()})
            return request, created

        try:
            recorded = await runtime.state_call("request_access", record)
        except ValueError as e:  # an empty or overlong justification
            raise PortalError(400, "invalid_form", str(e)) from e
        except StateOperationError as e:
            log.warning("access_request_not_recorded", employee=employee, service=service,
                        kind=e.kind)
            flow.response = responses.not_recorded(
                policy, "Your request could not be recorded",
                f"Nothing was sent to {policy.approver}: please tell {policy.approver} "
                f"directly that you need access to {policy.services[service].name}, or try "
                "again in a few minutes.", return_to)
            return
        if recorded is None:
            log.warning("access_request_rate_limited", employee=employee, service=service)
            response = responses.refusal(PortalError(
                429, "rate_limited", f"You have sent {limit} requests in the last hour. Please "
                f"wait before sending another, or speak to {policy.approver}."))
            response.headers["Retry-After"] = "3600"
            flow.response = response
            return
        request, created = recorded
        if created:
            runtime.metrics.access_requests.labels(service).inc()
            if self.notifier is not None:
                self.notifier.wake()
        log.info("access_requested", employee=employee, service=service,
                 request_id=request.id, created=created)
        flow.response = responses.request_sent(policy, service, request, created=created,
                                               return_to=return_to)

    def console_url(self, request_id: str) -> str | None:
        """The signed link to the request's page in the approver's console, if it is on."""
        host = getattr(ctx.options, "gatekeeper_console_host", "")
        if not host or self.links is None:
            return None
        return self.links.url(host, request_id, time.time())


class RequestStatus:
    """The block page says where the employee's latest request for the service stands
    (pending since when, denied with the approver's reason, approved but expired), read from
    the state worker while only that flow waits; without an answer the page stays as it was."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """Synchronous unless this is a browser's block page that a request could change."""
        context = decided(flow)
        response = flow.response
        if context is None or response is None or response.status_code != 403:
            return None
        decision = context.decision
        if (decision.employee is None or decision.service is None
                or decision.reason not in responses.REQUESTABLE
                or not context.enforced or not responses.wants_html(flow)):
            return None
        return self._show_status(flow, context)

    async def _show_status(self, flow: http.HTTPFlow, context: FlowContext) -> None:
        decision = context.decision
        employee, service = decision.employee, decision.service
        try:  # briefly: a busy or locked database must not hold up the refusal
            latest = await asyncio.wait_for(self.runtime.state_call(
                "latest_request", lambda db: db.latest_request(employee, service)),
                STATUS_WAIT_SECONDS)
        except (StateOperationError, TimeoutError):
            return  # the page as it was: the request form
        if latest is not None:
            flow.response = responses.block_response(flow, decision, context.policy,
                                                     self.runtime.csrf, latest)
