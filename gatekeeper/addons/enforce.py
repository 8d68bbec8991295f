"""The access decision for each intercepted request: allow, block (403) or pass untouched."""

from __future__ import annotations

import time

from mitmproxy import http

from gatekeeper.addons.runtime import (
    DECISION_KEY,
    Runtime,
    block_response,
    employee_of,
    fail_closed,
    flow_hosts,
    log,
)
from gatekeeper.core.decision import decide
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
        if flow.response is not None:  # answered by an earlier addon (proxy auth, portal)
            return
        policy = self.runtime.policy
        if policy is None:
            raise RuntimeError("no policy loaded")
        metrics = self.runtime.metrics
        started = time.perf_counter()
        employee = employee_of(flow, policy)
        decision = decide(policy, employee, flow_hosts(flow), self.runtime.today())
        if decision.verdict is Verdict.PASS:
            return
        metrics.decision_duration.observe(time.perf_counter() - started)
        # A governed body is never streamed: login and action checks need all of it.
        flow.request.stream = False
        enforce(self.runtime, flow, policy, decision)


def enforce(runtime: Runtime, flow: http.HTTPFlow, policy: Policy, decision: Decision) -> None:
    """Apply a decision to a governed flow: record it, log it, count it, block if needed.

    Shared by every addon that decides (access, accounts, terms) so that each decision is
    handled the same way: in report mode a block is logged and counted, and let through.
    """
    metrics = runtime.metrics
    who = metrics.who(decision.employee)
    flow.metadata[DECISION_KEY] = decision
    service = decision.service or "unknown"
    enforced = True
    if decision.verdict is Verdict.ALLOW:
        metrics.allowed.labels(service, *who).inc()
    elif policy.mode is Mode.REPORT and decision.reason is not Reason.INTERNAL_ERROR:
        enforced = False
        metrics.would_block.labels(service, decision.reason.value, *who).inc()
    else:
        metrics.blocked.labels(service, decision.reason.value, *who).inc()
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
    if decision.blocked and enforced:
        flow.response = block_response(flow, decision, policy)
