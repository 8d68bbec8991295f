"""What happens to a decided flow, the same way for every addon that decides (access, terms,
accounts): recorded in the flow's context, logged, counted, and answered when it blocks; and
`fail_closed`, which turns an error in any hook into such a block."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from mitmproxy import http

from gatekeeper.addons.context import FlowContext, context_of
from gatekeeper.addons.responses import block_response, refused
from gatekeeper.addons.runtime import Runtime, log
from gatekeeper.core.model import Decision, Reason, Verdict

F = TypeVar("F", bound=Callable[..., Any])


def enforce(runtime: Runtime, flow: http.HTTPFlow, context: FlowContext,
            decision: Decision) -> None:
    """Make `decision` the flow's current one; log, count and block if it blocks.

    In report mode a block is logged and counted, and let through (`Decision.enforced`). An
    allow is only recorded here; `AllowedCounter` counts it once every check has passed.
    """
    context.decision = decision
    if decision.verdict is Verdict.ALLOW:
        return
    metrics = runtime.metrics
    who = metrics.who(decision.employee)
    service = decision.service or "unknown"
    enforced = context.enforced
    counter = metrics.blocked if enforced else metrics.would_block
    metrics.child(counter, service, decision.reason.value, *who).inc()
    log_decision(flow, decision, enforced=enforced)
    if enforced:
        runtime.recorder.blocked(decision.employee, service, decision.reason.value)
        flow.request.stream = False  # answered here: nothing may be streamed upstream
        flow.response = refused(flow, context, runtime.csrf)


def log_decision(flow: http.HTTPFlow, decision: Decision, *, enforced: bool) -> None:
    """One `decision` event per governed request: who, what, why; the path without query.
    Nothing is computed when the log level leaves it out (`--log-level warning`)."""
    if not log.is_enabled_for(logging.INFO):
        return
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


def fail_closed(hook: F) -> F:
    """Wrap an addon hook (plain or `async def`) so that any error blocks the flow (mitmproxy
    would let it through). A plain hook that returns an awaitable (synchronous unless it has
    to wait this time) is covered while that is awaited too.

    The error is logged and counted as reason `internal_error`.
    """
    if inspect.iscoroutinefunction(hook):

        @functools.wraps(hook)
        async def async_wrapper(self: Any, flow: http.HTTPFlow) -> None:
            try:
                await hook(self, flow)
            except Exception:
                _internal_error(self.runtime, flow, hook)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(hook)
    def wrapper(self: Any, flow: http.HTTPFlow) -> Awaitable[None] | None:
        try:
            result = hook(self, flow)
        except Exception:
            _internal_error(self.runtime, flow, hook)
            return None
        if result is not None and inspect.isawaitable(result):  # it has to wait this time
            return _closed_on_error(self, flow, hook, result)
        return None

    return wrapper  # type: ignore[return-value]


async def _closed_on_error(addon: Any, flow: http.HTTPFlow, hook: Callable[..., Any],
                           pending: Awaitable[Any]) -> None:
    """Await what a plain hook returned when it had to wait, blocking the flow on an error."""
    try:
        await pending
    except Exception:
        _internal_error(addon.runtime, flow, hook)


def _internal_error(runtime: Runtime, flow: http.HTTPFlow, hook: Callable[..., Any]) -> None:
    """Block the flow of a hook that raised (called while the exception is handled)."""
    context = context_of(flow)
    service = context.decision.service if context is not None else None
    log.exception("internal_error", hook=hook.__qualname__, service=service)
    blocked = Decision(Verdict.BLOCK, Reason.INTERNAL_ERROR, service)
    runtime.metrics.blocked.labels(
        service or "unknown", Reason.INTERNAL_ERROR.value, *runtime.metrics.who(None)
    ).inc()
    # Undecided (no policy yet, or the decision itself failed): the live policy names the
    # approver on the page, when there is one.
    policy = context.policy if context is not None else runtime.policy
    if context is not None:
        context.decision = blocked
    flow.request.stream = False  # answered here: nothing may be streamed upstream
    flow.response = block_response(flow, blocked, policy, runtime.csrf)
