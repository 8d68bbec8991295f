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

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Mapping

from mitmproxy import ctx, http

from gatekeeper.addons.runtime import (
    Runtime,
    decide_flow,
    fail_closed,
    flow_hosts,
    leave_unread,
    log,
    wants_html,
)
from gatekeeper.bodies import (
    BodyError,
    BodyTooLargeError,
    declared_length,
    read_urlencoded_form,
)
from gatekeeper.core.decision import governing_services
from gatekeeper.core.model import Decision, Policy, Reason, Verdict
from gatekeeper.core.paths import path_key
from gatekeeper.notify import Notifier, messages
from gatekeeper.pages import render
from gatekeeper.state import AccessRequest, StateDB, confirm_written
from gatekeeper.state.worker import StateOperationError

PORTAL_KEY = "gatekeeper.portal"  # flow.metadata: the endpoint path that answers this flow
OUTCOME_HEADER = "X-Gatekeeper-Portal"
# Every path below it on a governed host is ours; in `path_key` form (lower case, no slash).
PORTAL_PREFIX = "/.well-known/gatekeeper"
REQUEST_ACCESS_PATH = f"{PORTAL_PREFIX}/request-access"
REQUEST_PURPOSE = "request-access"
REQUESTABLE = frozenset({Reason.NOT_APPROVED, Reason.EXPIRED})
MAX_FORM_BYTES = 16 * 1024  # a justification is at most 500 characters
MAX_RETURN_TO = 2048
DEFAULT_REQUESTS_PER_HOUR = 5
NOT_RECORDED = "not_recorded"  # the outcome when the state database could not record a form
NOT_RECORDED_RETRY_SECONDS = 60
# The proxy's pages load nothing, post only to their own origin and may not be framed (a
# framed "I accept" button could be clicked on someone's behalf).
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"

Handler = Callable[[http.HTTPFlow], Awaitable[None]]


class PortalError(Exception):
    """A refused portal post: the status, a fixed outcome code and a sentence for the page."""

    def __init__(self, status: int, outcome: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.message = message


class Portal:
    """Answers the portal endpoints; listed before the Enforcer, which skips claimed flows."""

    def __init__(self, runtime: Runtime, routes: Mapping[str, Handler] | None = None) -> None:
        self.runtime = runtime
        endpoints = {REQUEST_ACCESS_PATH: self.request_access, **(routes or {})}
        self.routes: dict[str, Handler] = {path_key(p): h for p, h in endpoints.items()}
        self.notifier: Notifier | None = None

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
        self.notifier = Notifier(state, lambda: self.runtime.policy, self.runtime.metrics)
        self.notifier.start()

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
        policy = self.runtime.policy
        if policy is None:
            raise RuntimeError("no policy loaded")
        if not governing_services(policy, flow_hosts(flow)):
            return  # the same path on another site is that site's business
        flow.metadata[PORTAL_KEY] = key
        flow.request.stream = False
        try:
            if key not in self.routes:
                raise PortalError(404, "not_found", "There is no such page of the proxy.")
            _check_post(flow.request)
        except PortalError as e:
            flow.response = refusal(e)
            leave_unread(flow)

    @fail_closed
    async def request(self, flow: http.HTTPFlow) -> None:
        path = flow.metadata.get(PORTAL_KEY)
        if path is None or flow.response is not None:
            return
        try:
            await self.routes[path](flow)
        except PortalError as e:
            flow.response = refusal(e)
        if flow.response is None:  # a claimed flow must never go upstream
            raise RuntimeError(f"portal endpoint {path} gave no answer")

    # --- request access ---------------------------------------------------------------------

    async def request_access(self, flow: http.HTTPFlow) -> None:
        runtime = self.runtime
        policy, decision = decide_flow(runtime, flow)
        employee, service = decision.employee, decision.service
        if employee is None or service is None:
            raise PortalError(403, "unknown_employee", "We could not tell who you are, so you "
                              "cannot request access. Sign in to the proxy with your office "
                              "account and try again.")
        form = posted_form(flow)
        return_to = safe_return_to(form.get("return_to", "")) or "/"
        if decision.verdict is Verdict.ALLOW:
            flow.response = page(200, "already_allowed", "You already have access",
                                 "Your access to this service is approved: nothing to request.",
                                 return_to=return_to)
            return
        if decision.reason not in REQUESTABLE:
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
                notifications=lambda r: messages(policy, r),
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
            flow.response = not_recorded(policy, "Your request could not be recorded",
                                         f"Nothing was sent to {policy.approver}: please tell "
                                         f"{policy.approver} directly that you need access to "
                                         f"{policy.services[service].name}, or try again in a "
                                         "few minutes.", return_to)
            return
        if recorded is None:
            log.warning("access_request_rate_limited", employee=employee, service=service)
            response = refusal(PortalError(
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
        flow.response = _html(200, "request_recorded" if created else "request_updated", render(
            "request_sent.html", service_name=policy.services[service].name,
            approver=policy.approver, request_id=request.id, created=created,
            justification=request.justification, return_to=return_to,
        ))


# --- shared by the endpoints and the block page ----------------------------------------------


def request_form(
    runtime: Runtime, flow: http.HTTPFlow, decision: Decision
) -> dict[str, str] | None:
    """The block page's "Request access" form, for a browser of a known employee whose access
    is not (or no longer) approved; None when the page should not offer one."""
    employee, service = decision.employee, decision.service
    if (decision.reason not in REQUESTABLE or employee is None or service is None
            or runtime.csrf is None or not wants_html(flow)):
        return None
    return {
        "action": REQUEST_ACCESS_PATH,
        "csrf": runtime.csrf.issue(REQUEST_PURPOSE, employee, service, time.time()),
        "return_to": return_path(flow),
    }


def check_csrf(runtime: Runtime, token: str, purpose: str, employee: str, subject: str) -> None:
    if runtime.csrf is None or not runtime.csrf.valid(token, purpose, employee, subject,
                                                     time.time()):
        log.warning("portal_csrf_refused", employee=employee, purpose=purpose)
        raise PortalError(403, "csrf_invalid", "This form has expired or did not come from "
                          "this page. Go back, reload the page and try again.")


def not_recorded(policy: Policy, heading: str, message: str,
                 return_to: str | None) -> http.Response:
    """503 for a form whose answer the state database could not record (locked, read-only,
    full, damaged): the page says so, with what to do instead; the proxy goes on."""
    response = page(503, NOT_RECORDED, heading,
                    f"The gateway cannot write to its database right now. {message}",
                    return_to=return_to)
    response.headers["Retry-After"] = str(NOT_RECORDED_RETRY_SECONDS)
    return response


def return_path(flow: http.HTTPFlow) -> str:
    """Where to send the browser back to: the page it asked for (GET), else the site's root."""
    path = flow.request.path
    if flow.request.method == "GET" and safe_return_to(path):
        return path
    return "/"


def safe_return_to(value: str) -> str | None:
    """`value` if it is a path on this host (so a redirect to it cannot leave the site), else
    None: no scheme, no `//host`, no backslash (browsers read `/\\host` as `//host`), no
    control characters."""
    if (not value.startswith("/") or value.startswith("//") or "\\" in value
            or len(value) > MAX_RETURN_TO or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)):
        return None
    return value


def page(status: int, outcome: str, heading: str, message: str, *,
         return_to: str | None = None) -> http.Response:
    """A short page of the proxy's own: a heading, a sentence and maybe a way back."""
    body = render("portal.html", heading=heading, message=message, outcome=outcome,
                  return_to=return_to)
    return _html(status, outcome, body)


def refusal(error: PortalError) -> http.Response:
    return page(error.status, error.outcome, "Request not accepted", error.message)


def _html(status: int, outcome: str, body: bytes) -> http.Response:
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": CSP,
        OUTCOME_HEADER: outcome,
    }
    return http.Response.make(status, body, headers)


def posted_form(flow: http.HTTPFlow) -> dict[str, str]:
    """The fields of a portal form post (its headers passed `_check_post`), read by the
    bounded parser; 413 or 415 when it is not a small plain form."""
    try:
        return read_urlencoded_form(flow.request.raw_content or b"", MAX_FORM_BYTES)
    except BodyTooLargeError as e:
        raise PortalError(413, "body_too_large", "The form is too large.") from e
    except BodyError as e:
        raise PortalError(415, "invalid_form", "The form could not be read.") from e


def _check_post(request: http.Request) -> None:
    """Before the body is read: only a plain, small, announced form post is read at all."""
    if request.method != "POST":
        raise PortalError(405, "method_not_allowed", "This address only accepts a form post.")
    headers = request.headers
    length = declared_length(request.method, headers, request.http_version)
    if length is None or length > MAX_FORM_BYTES:
        raise PortalError(413, "body_too_large", "The form is too large.")
    content_types = headers.get_all("content-type")
    if (len(content_types) != 1 or not _plain_form(content_types[0])
            or "content-encoding" in headers):  # browsers never encode a form
        raise PortalError(415, "invalid_form", "The form could not be read.")


def _plain_form(content_type: str) -> bool:
    """`application/x-www-form-urlencoded`, with at most `charset=utf-8`: what a browser
    sends for the proxy's pages."""
    media, *params = (part.strip().lower() for part in content_type.split(";"))
    return media == "application/x-www-form-urlencoded" and all(
        param.replace(" ", "") in ("charset=utf-8", 'charset="utf-8"') for param in params
    )
