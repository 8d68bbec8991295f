"""Prometheus metrics and the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`, ...).

All metrics live on one `CollectorRegistry` owned by a `Metrics` instance, so tests and an
embedding process can build their own. Label values are fixed vocabularies (service ids,
reasons, results); never a host, a URL or, unless the admin opts in, an employee.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

# `_created` series double every counter for no use on a dashboard.
disable_created_metrics()

# Decisions take microseconds; the buckets resolve that and still show a slow outlier.
DECISION_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1)


class Metrics:
    """Every gatekeeper metric. `employee_label` adds an `employee` label to the decision
    counters (opt-in for small offices; off by default)."""

    def __init__(self, *, employee_label: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.employee_label = employee_label
        who = ("employee",) if employee_label else ()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.blocked = Counter(
            "gatekeeper_blocked",
            "Requests to governed services that were blocked, by reason. A rising "
            "personal_account or account_mismatch count means someone keeps trying an account "
            "the policy forbids; not_approved means people want access: check the requests.",
            ("service", "reason", *who),
            registry=r,
        )
        self.allowed = Counter(
            "gatekeeper_allowed",
            "Requests to governed services that were let through under an approved grant.",
            ("service", *who),
            registry=r,
        )
        self.would_block = Counter(
            "gatekeeper_would_block",
            "Requests that would have been blocked but were let through because the policy is "
            "in report mode. Review these before switching to mode: enforce.",
            ("service", "reason", *who),
            registry=r,
        )
        self.decision_duration = Histogram(
            "gatekeeper_decision_duration_seconds",
            "Time spent deciding one governed request inside the proxy. Should stay well under "
            "a millisecond; if not, report it as a bug.",
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.logins = Counter(
            "gatekeeper_logins",
            "Sign-ins to governed services seen by the proxy, by result: company (allowed), "
            "personal, mismatch (another employee's account), unverifiable.",
            ("service", "result"),
            registry=r,
        )
        self.audited_actions = Counter(
            "gatekeeper_audited_actions",
            "Actions recorded for the moderators (such as group creation). Each one should be "
            "reviewed by the business unit that moderates the service.",
            ("service", "action"),
            registry=r,
        )
        self.access_requests = Counter(
            "gatekeeper_access_requests",
            "Access requests submitted by employees from the block page.",
            ("service",),
            registry=r,
        )
        self.notifications = Counter(
            "gatekeeper_notifications",
            "Messages to the approver about new access requests, by channel and result. "
            "Failures are retried; persistent failures mean the approver is not being told.",
            ("channel", "result"),
            registry=r,
        )
        self.console_sign_ins = Counter(
            "gatekeeper_console_sign_ins",
            "Sign-ins to the approver's console, by result: success, rejected (wrong user name "
            "or password), refused (not the approver: 403), throttled (too many failures from "
            "one device: 429), unavailable (the password check did not finish in time).",
            ("result",),
            registry=r,
        )
        self.console_changes = Counter(
            "gatekeeper_console_changes",
            "Changes the approver made in the console, by action: approved, denied, revoked, "
            "extended (each also logged with who and when).",
            ("action",),
            registry=r,
        )
        self.config_reloads = Counter(
            "gatekeeper_config_reloads",
            "Attempts to load the configuration, by result. On failure the last good policy "
            "stays in force: run `gatekeeper check` and fix the file named in the log.",
            ("result",),
            registry=r,
        )
        self.config_loaded_at = Gauge(
            "gatekeeper_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            registry=r,
        )
        self.config_load_ok = Gauge(
            "gatekeeper_config_last_reload_successful",
            "1 if the last attempt to load the configuration succeeded, 0 if it failed (the "
            "previous policy is still in force). Alert on 0: fix the file named in the log.",
            registry=r,
        )
        self.state_healthy = Gauge(
            "gatekeeper_state_healthy",
            "1 while the state database is sound; 0 when it is damaged (its integrity check "
            "failed, or an operation found it malformed): nothing can be recorded, /readyz "
            "names the problem. Restore the state directory from a backup and restart.",
            registry=r,
        )
        self.state_errors = Counter(
            "gatekeeper_state_errors",
            "State database operations that failed, by operation and kind (timeout, locked, "
            "readonly, full, io, corrupt, error). A failed access request or Terms-of-Use "
            "acceptance was answered 'could not be recorded'.",
            ("operation", "kind"),
            registry=r,
        )
        self.build_info = Info(
            "gatekeeper_build",
            "The gatekeeper and mitmproxy versions of this process.",
            registry=r,
        )
        self.policy_info = Gauge(
            "gatekeeper_policy_info",
            "Always 1; the sha256 label identifies the policy files in force.",
            ("sha256",),
            registry=r,
        )
        self.unnamed_connections = Counter(
            "gatekeeper_unnamed_connections",
            "Connections that reached the proxy by IP address, or carried neither TLS nor HTTP, "
            "by outcome: passthrough (the TLS SNI names a non-governed host), intercepted (no "
            "SNI, or an address as SNI: decrypted, each request decided on its Host header), "
            "refused (nothing names a host: closed before any upstream connection).",
            ("outcome",),
            registry=r,
        )
        self.proxy_auth_failures = Counter(
            "gatekeeper_proxy_auth_failures",
            "Wrong proxy sign-ins (a 407 for a request that carried credentials). A steady "
            "rise means someone is guessing passwords: the log names the user and the device.",
            registry=r,
        )
        self.destinations_refused = Counter(
            "gatekeeper_destinations_refused",
            "Requests and tunnels the proxy refused because they lead to the gateway itself "
            "(loopback, its own addresses and listeners) or to link-local and cloud metadata "
            "addresses, by reason. Someone is probing the gateway, or a legitimate local "
            "upstream needs gatekeeper_allowed_destinations.",
            ("reason",),
            registry=r,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        self.directory_up = Gauge(
            "gatekeeper_directory_up",
            "1 if the last read of the office directory's employees succeeded, 0 if it failed "
            "(the last good list stays in force; /readyz says since when). Stays 0 without a "
            "directory: section in gateway.yaml.",
            registry=r,
        )
        self.directory_refreshes = Counter(
            "gatekeeper_directory_refreshes",
            "Reads of the office directory's employee list, by result.",
            ("result",),
            registry=r,
        )
        self.directory_last_success = Gauge(
            "gatekeeper_directory_last_refresh_success_timestamp_seconds",
            "Unix time of the last successful read of the office directory's employees.",
            registry=r,
        )
        self.directory_employees = Gauge(
            "gatekeeper_directory_employees",
            "Employees known from the office directory in the list in force.",
            registry=r,
        )
        self.directory_sign_ins = Counter(
            "gatekeeper_directory_sign_ins",
            "Proxy sign-ins checked against the office directory, by result: success, cached "
            "(a recent success), rejected (wrong password or not an employee: 407), "
            "unavailable (the directory did not answer in time: 503).",
            ("result",),
            registry=r,
        )
        for outcome in ("passthrough", "intercepted", "refused"):
            self.unnamed_connections.labels(outcome)
        self._children: dict[tuple[Counter, tuple[str, ...]], Counter] = {}

    def child(self, counter: Counter, *labels: str) -> Counter:
        """`counter.labels(*labels)`, kept for the next request: prometheus_client checks the
        labels and takes a lock on every call, a few microseconds per governed request. For
        counters whose series are never removed (the decision counters); the label values
        are fixed vocabularies, so this holds as many entries as the counters have series."""
        key = (counter, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        return child

    def set_policy(self, sha256: str) -> None:
        """Record which policy is live (one series at a time)."""
        self.policy_info.clear()
        self.policy_info.labels(sha256).set(1)

    def who(self, employee: str | None) -> tuple[str, ...]:
        """The extra label values for the opt-in employee label."""
        if not self.employee_label:
            return ()
        return (employee or "unknown",)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes


Route = Callable[[], Reply]


class AdminServer:
    """A small threaded HTTP listener for Prometheus and health checks.

    Routes are callables returning a `Reply`; other parts (the PAC file) add their own.
    It runs in a daemon thread, off mitmproxy's event loop.
    """

    def __init__(self, metrics: Metrics | None, host: str, port: int) -> None:
        self.metrics = metrics  # None: no /metrics (a listener for the PAC file only)
        self.routes: dict[str, Route] = {}
        self.ready: Callable[[], bool] = lambda: False
        self.alive: Callable[[], bool] = lambda: False
        # What keeps a running proxy from being ready (a damaged state database), in sentences.
        self.problems: Callable[[], list[str]] = lambda: []
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "gatekeeper"
            sys_version = ""

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics" and server.metrics is not None:
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    reply = Reply(200, content_type, encoder(server.metrics.registry))
                elif path in server.routes:
                    reply = server.routes[path]()
                else:
                    reply = Reply(404, "text/plain; charset=utf-8", b"not found\n")
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # scrapes are not events worth a log line

        self.routes["/healthz"] = lambda: _probe(server.alive(), "alive")
        self.routes["/readyz"] = self._readiness
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="gatekeeper-admin", daemon=True
        )

    def _readiness(self) -> Reply:
        if not self.ready():
            return _probe(False, "ready")
        problems = self.problems()
        if problems:
            text = "not ready\n" + "".join(f"{problem}\n" for problem in problems)
            return Reply(503, "text/plain; charset=utf-8", text.encode())
        return _probe(True, "ready")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _probe(ok: bool, word: str) -> Reply:
    if ok:
        return Reply(200, "text/plain; charset=utf-8", f"{word}\n".encode())
    return Reply(503, "text/plain; charset=utf-8", f"not {word}\n".encode())
