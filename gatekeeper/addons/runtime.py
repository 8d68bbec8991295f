"""What gatekeeper's addons share: the live policy, the metrics, the state, and small flow
helpers. A flow's own decision is in its context (gatekeeper.addons.context)."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from mitmproxy import http

from gatekeeper.addons.recorder import Recorder
from gatekeeper.bodies import declared_length, drainable
from gatekeeper.core.model import Policy
from gatekeeper.csrf import CsrfTokens
from gatekeeper.logs import get_logger
from gatekeeper.metrics import AdminServer, Metrics, Reply
from gatekeeper.reload import PolicyHolder
from gatekeeper.statedb import DB_FILE, Event, StateDB, StateError, load_secret
from gatekeeper.statedb.worker import Job, StateWorker, fault_kind

if TYPE_CHECKING:
    from gatekeeper.directory.live import LiveDirectory

log = get_logger("gatekeeper")
T = TypeVar("T")


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
        # Wakes the notifier (gatekeeper.addons.portal) after a message was queued.
        self.wake_notifier: Callable[[], None] = lambda: None
        # Where the reloader installs the files' policy: the live holder itself, or, with an
        # office directory (gateway.yaml `directory:`), the directory, which composes the two.
        self.directory: LiveDirectory | None = None
        self.file_policy: PolicyHolder = self.holder
        # gatekeeper's own HTTP listeners (metrics and health; the PAC file), once started:
        # the destination guard refuses their ports, /readyz gains the directory's line.
        self.listeners: list[AdminServer] = []
        self.admin: AdminServer | None = None
        # With `serve --workers N`: one of several processes sharing the state database (other
        # workers bind sessions too), whether it sends the shared outbox's messages (one worker
        # does), and the supervisor's listeners, refused like its own.
        self.in_pool = False
        self.secret: bytes | None = None  # STATE_DIR/secret.key, once the state is open
        self.delivers_notifications = True
        self.group_ports: frozenset[int] = frozenset()

    def open_state(self, state_dir: Path) -> StateWorker:
        """Open the state database (once; later calls return it), check its integrity and
        start its worker and the recorder.

        A damaged database does not stop the proxy: it enforces the policy as always, answers
        that nothing can be recorded, and reports the damage (`/readyz`,
        `gatekeeper_state_healthy`). Anything else that makes the state unusable (a directory
        it cannot write, a newer schema, a damaged secret.key) raises StateError or OSError.
        """
        if self.state_worker is None:
            secret = load_secret(state_dir)
            csrf = CsrfTokens(secret)
            try:
                state, problem = StateDB(state_dir), None
            except StateError as e:
                if fault_kind(e) != "corrupt":
                    raise
                state, problem = None, str(e.__cause__ or e)
            worker = StateWorker(state, Path(state_dir) / DB_FILE, self.metrics, problem=problem)
            worker.check()  # PRAGMA quick_check before the first request
            worker.start()
            self.recorder.start(functools.partial(_record_events, worker),
                                functools.partial(_prune_events, worker, self.holder))
            self.state, self.state_worker, self.csrf = state, worker, csrf
            self.secret = secret
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


def _prune_events(worker: StateWorker, holder: PolicyHolder, now: dt.datetime) -> None:
    """Delete the events older than the live policy's retention window (approvals.yaml
    `event_retention_days`), through the one state writer; logs what went."""
    policy = holder.policy
    if policy is None:
        return
    before = now - dt.timedelta(days=policy.event_retention_days)
    pruned = worker.call("prune_events", lambda db: db.prune_events(before))
    if any(pruned.values()):
        log.info("events_pruned", before=before.date().isoformat(), **pruned)


def employee_of(flow: http.HTTPFlow, policy: Policy) -> str | None:
    """The employee behind a flow: proxy-auth user name, else the device's source address.

    Only the user name is read from mitmproxy's `proxyauth` metadata; the password beside it
    is never copied anywhere.
    """
    auth = flow.metadata.get("proxyauth")
    user = auth[0] if auth else None
    peer = flow.client_conn.peername
    return policy.identify(user, peer[0] if peer else None)


def flow_hosts(flow: http.HTTPFlow) -> tuple[str | None, ...]:
    """Every host name the flow names: connect target, TLS SNI, Host header."""
    request = flow.request
    return (request.host, flow.client_conn.sni, request.host_header)


def header_items(message: http.Message) -> list[tuple[str, str]]:
    """Every header field as text, in order: what mitmproxy's `headers.items(multi=True)`
    gives, decoded the same way, without its per-field bookkeeping."""
    return [(name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            for name, value in message.headers.fields]


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


def directory_readyz(runtime: Runtime) -> None:
    """/readyz waits for the first read of the directory and says how it went (called once
    the admin listener exists, by `ProxySignIn.running`)."""
    admin = runtime.admin
    directory = runtime.directory
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
