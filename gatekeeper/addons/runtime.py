"""What gatekeeper's addons share: the live policy, the metrics, and small flow helpers."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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
from gatekeeper.state import DB_FILE, Event, StateDB, StateError, load_secret
from gatekeeper.state.worker import Job, StateWorker, fault_kind

if TYPE_CHECKING:
    from gatekeeper.directory.live import LiveDirectory

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
        # The state database, opened once per process by `open_state` (Lifecycle.running):
        # `state` for the threads that read it on their own (notifier, scrape), `state_worker`
        # for everything else, off the event loop; the CSRF keys of the proxy's own forms; the
        # review events.
        self.state: StateDB | None = None
        self.state_worker: StateWorker | None = None
        self.csrf: CsrfTokens | None = None
        self.recorder = Recorder()
        # Where the reloader installs the files' policy: the live holder itself, or, with an
        # office directory (gateway.yaml `directory:`), the directory, which composes the two.
        self.directory: LiveDirectory | None = None
        self.file_policy: PolicyHolder = self.holder

    def open_state(self, state_dir: Path) -> StateWorker:
        """Open the state database (once; later calls return it), check its integrity and
        start its worker and the recorder.

        A damaged database does not stop the proxy: it enforces the policy as always, answers
        that nothing can be recorded, and reports the damage (`/readyz`,
        `gatekeeper_state_healthy`). Anything else that makes the state unusable (a directory
        it cannot write, a newer schema, a damaged secret.key) raises StateError or OSError.
        """
        if self.state_worker is None:
            csrf = CsrfTokens(load_secret(state_dir))
            try:
                state, problem = StateDB(state_dir), None
            except StateError as e:
                if fault_kind(e) != "corrupt":
                    raise
                state, problem = None, str(e.__cause__ or e)
            worker = StateWorker(state, Path(state_dir) / DB_FILE, self.metrics, problem=problem)
            worker.check()  # PRAGMA quick_check before the first request
            worker.start()
            self.recorder.start(functools.partial(_record_events, worker))
            self.state, self.state_worker, self.csrf = state, worker, csrf
        return self.state_worker

    async def state_call(self, operation: str, job: Job[T]) -> T:
        """Run a state job for a hook: off the event loop, within the state deadline.
        Raises StateOperationError when it did not happen."""
        if self.state_worker is None:
            raise RuntimeError("the state database is not open")
        return await self.state_worker.run(operation, job)

    @property
    def policy(self) -> Policy | None:
        return self.holder.policy

    @staticmethod
    def today() -> dt.date:
        return dt.date.today()


def _record_events(worker: StateWorker, events: list[Event]) -> None:
    """The recorder's batches go through the one state writer (from the recorder's thread)."""
    worker.call("record_events", lambda db: db.record_many(events))


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
T = TypeVar("T")


def fail_closed(hook: F) -> F:
    """Wrap an addon hook (plain or `async def`) so that any error blocks the flow (mitmproxy
    would let it through).

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
    def wrapper(self: Any, flow: http.HTTPFlow) -> None:
        try:
            hook(self, flow)
        except Exception:
            _internal_error(self.runtime, flow, hook)

    return wrapper  # type: ignore[return-value]


def _internal_error(runtime: Runtime, flow: http.HTTPFlow, hook: Callable[..., Any]) -> None:
    """Block the flow of a hook that raised (called while the exception is handled)."""
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
