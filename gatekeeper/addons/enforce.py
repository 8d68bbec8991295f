"""The access decision for each intercepted request: allow, block (403) or pass untouched."""

from __future__ import annotations

import time

from mitmproxy import http

from gatekeeper.addons.portal import PORTAL_KEY, request_form
from gatekeeper.addons.runtime import (
    DECISION_KEY,
    REQUEST_FORM_KEY,
    Runtime,
    block_response,
    decide_flow,
    fail_closed,
    leave_unread,
    log,
)
from gatekeeper.core.model import Decision, Mode, Policy, Reason, Verdict


class Enforcer:
    """Decides in `requestheaders`, before the body is read or an upstream is contacted.

    Only governed hosts reach here over TLS (the rest is relayed by mitmproxy's passthrough);
    plain HTTP to other hosts costs one host lookup and is then left alone, unlogged.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or PORTAL_KEY in flow.metadata:  # the portal answers it
            return
        started = time.perf_counter()
        policy, decision = decide_flow(self.runtime, flow)
        if decision.verdict is Verdict.PASS:
            return
        self.runtime.metrics.decision_duration.observe(time.perf_counter() - started)
        enforce(self.runtime, flow, policy, decision)
        if flow.response is not None:
            leave_unread(flow)  # a blocked upload is never buffered beyond a small body


class Conclude:
    """Listed after every addon that may still refuse an allowed flow (terms, accounts): a
    flow that is still allowed when its request is complete is counted and logged here, once,
    so a request refused by a later check is never also counted as allowed."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        decision = flow.metadata.get(DECISION_KEY)
        if flow.response is None and isinstance(decision, Decision) and (
            decision.verdict is Verdict.ALLOW
        ):
            service = decision.service or "unknown"
            runtime = self.runtime
            runtime.metrics.allowed.labels(service, *runtime.metrics.who(decision.employee)).inc()
            if decision.reason is Reason.APPROVED and decision.employee:
                runtime.recorder.used(decision.employee, service)  # the review's "last used"
            _log_decision(flow, decision, enforced=True)


def enforce(runtime: Runtime, flow: http.HTTPFlow, policy: Policy, decision: Decision) -> None:
    """Apply a decision to a governed flow: record it; log, count and block if it blocks.

    Shared by every addon that decides (access, accounts, terms) so that each decision is
    handled the same way: in report mode a block is logged and counted, and let through. An
    allow is only recorded here; `Conclude` counts it once every check has passed.
    """
    flow.metadata[DECISION_KEY] = decision
    if decision.verdict is Verdict.ALLOW:
        return
    metrics = runtime.metrics
    who = metrics.who(decision.employee)
    service = decision.service or "unknown"
    enforced = policy.mode is not Mode.REPORT or decision.reason is Reason.INTERNAL_ERROR
    if enforced:
        metrics.blocked.labels(service, decision.reason.value, *who).inc()
    else:
        metrics.would_block.labels(service, decision.reason.value, *who).inc()
    _log_decision(flow, decision, enforced=enforced)
    if enforced:
        runtime.recorder.blocked(decision.employee, service, decision.reason.value)
        form = request_form(runtime, flow, decision)
        if form is not None:
            flow.metadata[REQUEST_FORM_KEY] = form
        flow.request.stream = False  # answered here: nothing may be streamed upstream
        flow.response = block_response(flow, decision, policy)


def _log_decision(flow: http.HTTPFlow, decision: Decision, *, enforced: bool) -> None:
    """One `decision` event per governed request: who, what, why; the path without query."""
    request = flow.request
    log.info(
        "decision",
        employee=decision.employee,
        service=decision.service,
        decision=decision.verdict.value,
        reason=decision.reason.value,
        action=decision.action,
        enforced=enforced,
        method=request.method,
        host=request.pretty_host,
        path=request.path.split("?", 1)[0],
    )
