"""The access decision for each intercepted request: allow, block (403) or pass untouched."""

from __future__ import annotations

import time

from mitmproxy import http

from gatekeeper.addons.context import context_of, decided, open_context
from gatekeeper.addons.decisions import enforce, fail_closed, log_decision
from gatekeeper.addons.runtime import Runtime, leave_unread
from gatekeeper.core.model import Reason, Verdict


class Enforcer:
    """Decides in `requestheaders`, before the body is read or an upstream is contacted.

    Only governed hosts reach here over TLS (the rest is relayed by mitmproxy's passthrough);
    plain HTTP to other hosts costs one host lookup and is then left alone, unlogged.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        context = context_of(flow)
        if context is not None and context.portal is not None:  # the portal answers it
            return
        started = time.perf_counter()
        context = open_context(self.runtime, flow)
        decision = context.decision
        if decision.verdict is Verdict.PASS:
            return
        self.runtime.metrics.decision_duration.observe(time.perf_counter() - started)
        enforce(self.runtime, flow, context, decision)
        if flow.response is not None:
            leave_unread(flow)  # a blocked upload is never buffered beyond a small body


class AllowedCounter:
    """Listed after every addon that may still refuse an allowed flow (terms, accounts): a
    flow that is still allowed when its request is complete is counted and logged here, once,
    so a request refused by a later check is never also counted as allowed."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        context = decided(flow)
        if flow.response is not None or context is None:
            return
        decision = context.decision
        if decision.verdict is not Verdict.ALLOW:
            return
        service = decision.service or "unknown"
        runtime = self.runtime
        metrics = runtime.metrics
        metrics.child(metrics.allowed, service, *metrics.who(decision.employee)).inc()
        if decision.reason is Reason.APPROVED and decision.employee:
            runtime.recorder.used(decision.employee, service)  # the review's "last used"
        log_decision(flow, decision, enforced=True)
