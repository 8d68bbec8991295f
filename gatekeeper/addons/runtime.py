"""What gatekeeper's addons share: the live policy, the metrics, and small flow helpers."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mitmproxy import http

from gatekeeper.addons.recorder import Recorder
from gatekeeper.bodies import declared_length, drainable
from gatekeeper.core.decision import decide
from gatekeeper.core.model import REASON_TEXT, Decision, Policy, Reason, Verdict
from gatekeeper.csrf import CsrfTokens
from gatekeeper.logs import get_logger
from gatekeeper.metrics import Metrics
from gatekeeper.pages import render
from gatekeeper.reload import PolicyHolder
from gatekeeper.state import StateDB, load_secret

DECISION_KEY = "gatekeeper.decision"
REASON_HEADER = "X-Gatekeeper-Reason"
REQUEST_FORM_KEY = "gatekeeper.request_form"  # the block page's "Request access" form, if any

log = get_logger("gatekeeper")


class Runtime:
    """One per proxy process; every gatekeeper addon holds a reference to it."""

    def __init__(self) -> None:
        self.holder = PolicyHolder()
        self.metrics: Metrics = Metrics()
        self.ready = False
        # The state database, opened once per process by `open_state` (Lifecycle.running) and
        # shared by every addon; the CSRF keys of the proxy's own forms; the review events.
        self.state: StateDB | None = None
        self.csrf: CsrfTokens | None = None
        self.recorder = Recorder()

    def open_state(self, state_dir: Path) -> StateDB:
        """Open the state database (once; later calls return it) and start its writer.
        Raises StateError or OSError when it cannot be used."""
        if self.state is None:
            state = StateDB(state_dir)
            self.csrf = CsrfTokens(load_secret(state_dir))
            self.recorder.start(state)
            self.state = state
        return self.state

    @property
    def policy(self) -> Policy | None:
        return self.holder.policy

    @staticmethod
    def today() -> dt.date:
        return dt.date.today()


def employee_of(flow: http.HTTPFlow, policy: Policy) -> str | None:
    """The employee behind a flow: proxy-auth user name, else the device's source address.

    Only the user name is read from mitmproxy's `proxyauth` metadata; the password beside it
    is never copied anywhere.
    """
    auth = flow.metadata.get("proxyauth")
    user = auth[0] if auth else None
    peer = flow.client_conn.peername
    return policy.identify(user, peer[0] if peer else None)


def decide_flow(runtime: Runtime, flow: http.HTTPFlow) -> tuple[Policy, Decision]:
    """The live policy and the access decision for a flow: who asks, for which hosts, today."""
    policy = runtime.policy
    if policy is None:
        raise RuntimeError("no policy loaded")
    employee = employee_of(flow, policy)
    return policy, decide(policy, employee, flow_hosts(flow), runtime.today())


def flow_hosts(flow: http.HTTPFlow) -> tuple[str | None, ...]:
    """Every host name the flow names: connect target, TLS SNI, Host header."""
    request = flow.request
    return (request.host, flow.client_conn.sni, request.host_header)


def leave_unread(flow: http.HTTPFlow) -> None:
    """For a request answered in `requestheaders`: keep its body out of memory. mitmproxy 11
    sends an answer only once the whole request has arrived, buffering the body meanwhile,
    so a small body is read for the answer and a large or endless one (chunked, HTTP/2
    without a length) ends the connection unanswered. Without an answer (report mode) the
    body streams upstream unread."""
    request = flow.request
    if flow.response is None:
        request.stream = True
    elif not drainable(declared_length(request.method, request.headers, request.http_version)):
        flow.kill()


def wants_html(flow: http.HTTPFlow) -> bool:
    return "text/html" in flow.request.headers.get("accept", "")


def block_response(flow: http.HTTPFlow, decision: Decision, policy: Policy | None) -> http.Response:
    """The 403 for a blocked request: an HTML page for a browser, JSON for anything else."""
    service = policy.services.get(decision.service) if policy and decision.service else None
    service_name = service.name if service else (decision.service or "This service")
    headers = {
        REASON_HEADER: decision.reason.value,
        "Cache-Control": "no-store",
    }
    if wants_html(flow):
        body = render(
            "block.html",
            service_name=service_name,
            reason=decision.reason.value,
            reason_text=REASON_TEXT.get(decision.reason, decision.reason.value),
            action=decision.action,
            approver=policy.approver if policy else "your IT administrator",
            employee=decision.employee,
            request_form=flow.metadata.get(REQUEST_FORM_KEY),
        )
        headers["Content-Type"] = "text/html; charset=utf-8"
    else:
        payload: dict[str, Any] = {
            "blocked": True,
            "service": decision.service,
            "reason": decision.reason.value,
        }
        if decision.action:
            payload["action"] = decision.action
        body = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    return http.Response.make(403, body, headers)


F = TypeVar("F", bound=Callable[..., Any])


def fail_closed(hook: F) -> F:
    """Wrap an addon hook so that any error blocks the flow (mitmproxy would let it through).

    The error is logged and counted as reason `internal_error`.
    """

    @functools.wraps(hook)
    def wrapper(self: Any, flow: http.HTTPFlow) -> None:
        try:
            hook(self, flow)
        except Exception:
            runtime: Runtime = self.runtime
            decision = flow.metadata.get(DECISION_KEY)
            service = decision.service if isinstance(decision, Decision) else None
            log.exception("internal_error", hook=hook.__qualname__, service=service)
            blocked = Decision(Verdict.BLOCK, Reason.INTERNAL_ERROR, service)
            runtime.metrics.blocked.labels(
                service or "unknown", Reason.INTERNAL_ERROR.value, *runtime.metrics.who(None)
            ).inc()
            flow.metadata[DECISION_KEY] = blocked
            flow.request.stream = False  # answered here: nothing may be streamed upstream
            flow.response = block_response(flow, blocked, runtime.policy)

    return wrapper  # type: ignore[return-value]
