"""Every answer the proxy gives itself on a governed host, built from the flow's context.

- a refused request (`refused`): the block page for a browser, JSON for anything else, or the
  Terms-of-Use interstitial; always 403 with `X-Gatekeeper-Reason`;
- the portal's pages (`X-Gatekeeper-Portal` names the outcome): the request confirmation,
  "already allowed", "not recorded" (503) and the refusals of a form post.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from typing import Any, TypeVar

from mitmproxy import http

from gatekeeper.addons.context import FlowContext
from gatekeeper.addons.forms import (
    ACKNOWLEDGE_TERMS_PATH,
    REQUEST_ACCESS_PATH,
    REQUEST_PURPOSE,
    TERMS_PURPOSE,
    PortalError,
    return_path,
)
from gatekeeper.core.model import REASON_TEXT, Decision, Policy, Reason
from gatekeeper.csrf import CsrfTokens
from gatekeeper.pages import render
from gatekeeper.statedb import APPROVED, DENIED, PENDING, AccessRequest

T = TypeVar("T")
REASON_HEADER = "X-Gatekeeper-Reason"
OUTCOME_HEADER = "X-Gatekeeper-Portal"
REQUESTABLE = frozenset({Reason.NOT_APPROVED, Reason.EXPIRED})  # the page offers a request
NOT_RECORDED = "not_recorded"  # the outcome when the state database could not record a form
NOT_RECORDED_RETRY_SECONDS = 60
# The proxy's pages load nothing, post only to their own origin and may not be framed (a
# framed "I accept" button could be clicked on someone's behalf).
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"


def wants_html(flow: http.HTTPFlow) -> bool:
    return "text/html" in flow.request.headers.get("accept", "")


# --- refusals ---------------------------------------------------------------------------------


def refused(flow: http.HTTPFlow, context: FlowContext, csrf: CsrfTokens | None) -> http.Response:
    """The 403 for the context's (blocking) decision."""
    decision = context.decision
    if (decision.reason is Reason.TERMS_NOT_ACKNOWLEDGED and context.terms_url
            and wants_html(flow)):
        return terms_interstitial(flow, context, context.terms_url, csrf)
    return block_response(flow, decision, context.policy, csrf)


def block_response(flow: http.HTTPFlow, decision: Decision, policy: Policy | None,
                   csrf: CsrfTokens | None,
                   latest: AccessRequest | None = None) -> http.Response:
    """The 403 for a blocked request: an HTML page for a browser, JSON for anything else.
    `latest` is the employee's latest request for the service: the page says where it stands
    (pending: no new form)."""
    if not wants_html(flow):
        return _fresh(_json_refusal(decision.service, decision.reason, decision.action))
    service = policy.services.get(decision.service) if policy and decision.service else None
    body = render(
        "block.html",
        service_name=service.name if service else (decision.service or "This service"),
        reason=decision.reason.value,
        reason_text=REASON_TEXT.get(decision.reason, decision.reason.value),
        action=decision.action,
        approver=policy.approver if policy else "your IT administrator",
        employee=decision.employee,
        request_form=None if latest is not None and latest.status == PENDING
        else request_form(flow, decision, csrf),
        latest=_request_state(latest),
    )
    headers = {
        REASON_HEADER: decision.reason.value,
        "Cache-Control": "no-store",
        "Content-Type": "text/html; charset=utf-8",
    }
    return http.Response.make(403, body, headers)


def _request_state(latest: AccessRequest | None) -> dict[str, str] | None:
    """What the block page says about the employee's latest request (dates in the gateway's
    time zone)."""
    if latest is None or latest.status not in (PENDING, APPROVED, DENIED):
        return None

    def day(moment: dt.datetime | None) -> str:
        return moment.astimezone().strftime("%Y-%m-%d") if moment else "?"

    return {
        "id": latest.id,
        "status": latest.status,
        "created": day(latest.created),
        "since": latest.created.astimezone().strftime("%Y-%m-%d %H:%M"),
        "decided": day(latest.decided_on),
        "by": latest.decided_by or "",
        "reason": latest.decision_reason or "",
    }


@functools.lru_cache(maxsize=1024)  # services x reasons x actions of the catalog
def _json_refusal(service: str | None, reason: Reason, action: str | None) -> http.Response:
    """The JSON 403, the same bytes for the same (service, reason, action): built once, and
    each refusal gets a copy (`_fresh`)."""
    payload: dict[str, Any] = {"blocked": True, "service": service, "reason": reason.value}
    if action:
        payload["action"] = action
    headers = {
        REASON_HEADER: reason.value,
        "Cache-Control": "no-store",
        "Content-Type": "application/json",
    }
    return http.Response.make(403, json.dumps(payload).encode(), headers)


def _fresh(template: http.Response) -> http.Response:
    """A copy of a prebuilt answer, its own headers and timestamps. mitmproxy's
    `Response.make` type-checks every field, most of what a refusal costs; a copy does not
    have to (the template was checked once). Its headers are an immutable tuple inside, so
    a later change to the copy's headers never reaches the template."""
    response = _shallow_copy(template)
    response.data = data = _shallow_copy(template.data)
    data.headers = _shallow_copy(template.data.headers)
    data.timestamp_start = data.timestamp_end = time.time()
    return response


def _shallow_copy(obj: T) -> T:
    """What `copy.copy` makes of these plain objects (a new instance sharing the attribute
    values), at a fifth of its cost: `copy.copy` goes through the pickle protocol."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def request_form(flow: http.HTTPFlow, decision: Decision,
                 csrf: CsrfTokens | None) -> dict[str, str] | None:
    """The block page's "Request access" form, for a browser of a known employee whose access
    is not (or no longer) approved; None when the page should not offer one."""
    employee, service = decision.employee, decision.service
    if (decision.reason not in REQUESTABLE or employee is None or service is None
            or csrf is None or not wants_html(flow)):
        return None
    return {
        "action": REQUEST_ACCESS_PATH,
        "csrf": csrf.issue(REQUEST_PURPOSE, employee, service, time.time()),
        "return_to": return_path(flow),
    }


def terms_interstitial(flow: http.HTTPFlow, context: FlowContext, terms_url: str,
                       csrf: CsrfTokens | None) -> http.Response:
    """The page that asks the employee to accept the service's terms (403: nothing of the
    service was served); its button posts to the portal's acknowledge endpoint."""
    decision = context.decision
    employee, service_id = decision.employee or "", decision.service or ""
    if csrf is None:
        raise RuntimeError("the state database is not open")
    body = render(
        "terms.html",
        service_name=context.policy.services[service_id].name,
        terms_url=terms_url,
        action=ACKNOWLEDGE_TERMS_PATH,
        csrf=csrf.issue(TERMS_PURPOSE, employee, terms_subject(service_id, terms_url),
                        time.time()),
        return_to=return_path(flow),
        reason=decision.reason.value,
        employee=employee,
    )
    headers = {
        REASON_HEADER: decision.reason.value,
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": CSP,
    }
    return http.Response.make(403, body, headers)


def terms_subject(service: str, terms_url: str) -> str:
    """What an acknowledgement's CSRF token is bound to: a changed URL needs a fresh page."""
    return f"{service} {terms_url}"


# --- the portal's pages -----------------------------------------------------------------------


def request_sent(policy: Policy, service: str, request: AccessRequest, *, created: bool,
                 return_to: str) -> http.Response:
    """The confirmation of an access request (a new one, or an update of the pending one)."""
    return _html(200, "request_recorded" if created else "request_updated", render(
        "request_sent.html", service_name=policy.services[service].name,
        approver=policy.approver, request_id=request.id, created=created,
        justification=request.justification, return_to=return_to,
    ))


def already_allowed(return_to: str) -> http.Response:
    return page(200, "already_allowed", "You already have access",
                "Your access to this service is approved: nothing to request.",
                return_to=return_to)


def terms_acknowledged(return_to: str) -> http.Response:
    """Back (303) to the page the interstitial stood in for."""
    return http.Response.make(
        303, b"", {"Location": return_to, "Cache-Control": "no-store",
                   OUTCOME_HEADER: "terms_acknowledged"},
    )


def not_recorded(policy: Policy, heading: str, message: str,
                 return_to: str | None) -> http.Response:
    """503 for a form whose answer the state database could not record (locked, read-only,
    full, damaged): the page says so, with what to do instead; the proxy goes on."""
    response = page(503, NOT_RECORDED, heading,
                    f"The gateway cannot write to its database right now. {message}",
                    return_to=return_to)
    response.headers["Retry-After"] = str(NOT_RECORDED_RETRY_SECONDS)
    return response


def refusal(error: PortalError) -> http.Response:
    """A refused form post: its status, its outcome, its sentence."""
    return page(error.status, error.outcome, "Request not accepted", error.message)


def page(status: int, outcome: str, heading: str, message: str, *,
         return_to: str | None = None) -> http.Response:
    """A short page of the proxy's own: a heading, a sentence and maybe a way back."""
    body = render("portal.html", heading=heading, message=message, outcome=outcome,
                  return_to=return_to)
    return _html(status, outcome, body)


def _html(status: int, outcome: str, body: bytes) -> http.Response:
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": CSP,
        OUTCOME_HEADER: outcome,
    }
    return http.Response.make(status, body, headers)
