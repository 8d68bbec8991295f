"""The approver's console: `https://gatekeeper.office/` (option `gatekeeper_console_host`),
answered by the proxy itself, never forwarded, the way mitmproxy answers `mitm.it`.

The name is intercepted like a governed host (Lifecycle adds it to `allow_hosts`; in
transparent mode, where it resolves to the gateway, `tls_clienthello` intercepts it by SNI), so
the browser gets a certificate from the proxy's CA. Every request to it is claimed in
`requestheaders` (a provisional 503 answer, so no later addon decides it and nothing can go
upstream) and answered in `request`, once a form's body has arrived.

Only the approver (approvals.yaml `approver`, or the employee with that e-mail) signs in: with
their proxy password (htpasswd or office directory, through the proxy's own checks) or the
password set with `gatekeeper approver-password` (same checks, off the event loop). Anyone the
proxy already knows as another employee, or who signs in as one, gets 403. Sessions live in
memory (gatekeeper.console.sessions); every form carries a CSRF token bound to the session;
failed sign-ins slow the device down (`LoginThrottle`). Changes (decisions, grants, employees)
go through gatekeeper.approving: approvals.yaml edited in a thread with a deadline, the state
database through the state worker; each is logged with who and when and counted. Reports
(review, activity) are read through the state worker and built by the same functions as the
commands (gatekeeper.review, gatekeeper.activity).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import time
import urllib.parse
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from mitmproxy import ctx, http, tls

from gatekeeper import approving
from gatekeeper.activity import CATEGORIES, activity_report
from gatekeeper.addons.forms import PortalError, check_post, posted_form
from gatekeeper.addons.responses import CSP
from gatekeeper.addons.runtime import Runtime, employee_of, leave_unread, log
from gatekeeper.approvals_edit import ConcurrentEditError, EditError
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.console import links, sessions
from gatekeeper.console.links import LinkSigner, LinkState
from gatekeeper.console.password import password_path
from gatekeeper.console.sessions import COOKIE, Session, Sessions
from gatekeeper.core.hosts import normalize_host
from gatekeeper.core.login_throttle import DROP, LoginThrottle, ThrottleSettings
from gatekeeper.core.model import Policy
from gatekeeper.directory.store import office_policy
from gatekeeper.htpasswd import HtpasswdVerifier
from gatekeeper.pages import render
from gatekeeper.review import format_review_text, review_report
from gatekeeper.sign_in import SignInResult, SignIns
from gatekeeper.statedb import (
    PENDING,
    AccessRequest,
    StateDB,
    UnknownRequestError,
    load_secret,
    normalize_request_id,
)
from gatekeeper.statedb.worker import StateOperationError

T = TypeVar("T")
E = TypeVar("E")
CLAIMED = "gatekeeper_console"  # flow.metadata: this flow is the console's
OUTCOME_HEADER = "X-Gatekeeper-Console"
CSRF_PURPOSE = "console"
EDIT_SECONDS = 15.0  # approvals.yaml: the lock wait (10 s) and two loads of the file
READ_SECONDS = 5.0  # the review's reads
THROTTLE = ThrottleSettings(free_failures=3, first_delay=1.0, max_delay=30.0, max_waiting=4)
REVIEW_DAYS = 30
_REQUEST_PATH = re.compile(r"\A/requests/([0-9A-Za-z-]{1,16})(/approve|/deny)?\Z")
NAV = (("/requests", "Requests"), ("/grants", "Grants"), ("/employees", "Employees"),
       ("/review", "Access review"), ("/activity", "Activity"),
       ("/acknowledgements", "Terms of Use"), ("/health", "Policy health"))

SignInsNow = Callable[[], SignIns | None]


class ConsoleError(Exception):
    """A page to answer with instead (raised from deep inside a handler)."""

    def __init__(self, status: int, outcome: str, heading: str, message: str,
                 details: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status, self.outcome, self.heading = status, outcome, heading
        self.message, self.details = message, details


class Console:
    def __init__(self, runtime: Runtime, proxy_sign_ins: SignInsNow = lambda: None) -> None:
        self.runtime = runtime
        self.proxy_sign_ins = proxy_sign_ins  # the proxy's own check (htpasswd, directory)
        self.password_sign_ins: SignIns | None = None  # `gatekeeper approver-password`
        self.host = ""
        self.sessions = Sessions()
        self.throttle = LoginThrottle(THROTTLE)
        self.links: LinkSigner | None = None
        self.before_replace: Callable[[], None] | None = None  # tests: a concurrent edit

    # --- lifecycle --------------------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option(
            "gatekeeper_console_host", str, links.DEFAULT_HOST,
            "The name of the approver's console, answered by the proxy itself "
            "(https://NAME/); empty turns the console off.",
        )
        loader.add_option(
            "gatekeeper_console_idle_minutes", int, sessions.IDLE_SECONDS // 60,
            "Minutes without a request after which a console sign-in ends.",
        )

    def configure(self, updated: set[str]) -> None:
        if updated & {"gatekeeper_console_host", "gatekeeper_console_idle_minutes"}:
            self._read_options()

    def _read_options(self) -> None:
        self.host = normalize_host(ctx.options.gatekeeper_console_host or "")
        self.sessions.idle = max(1, ctx.options.gatekeeper_console_idle_minutes) * 60

    def running(self) -> None:
        self._read_options()  # options left at their defaults are never `updated`
        if self.links is None and self.runtime.state_worker is not None:
            self.links = LinkSigner(load_secret(Path(ctx.options.gatekeeper_state_dir)))

    def done(self) -> None:
        if self.password_sign_ins is not None:
            self.password_sign_ins.verifier.stop()

    # --- hooks ------------------------------------------------------------------------------

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """Transparent mode: the console's name resolves to an address whose TLS
        `UnnamedConnections` relays by SNI; the console's own name is intercepted instead."""
        if self.host and self._named(data.client_hello.sni):
            data.ignore_connection = False

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not self.host or flow.response is not None or not self._ours(flow):
            return
        flow.metadata[CLAIMED] = True
        flow.request.stream = False
        flow.response = _page(503, "unanswered", "Not answered", "The console did not answer.")
        if flow.request.method == "POST":
            try:
                check_post(flow.request)
            except PortalError as e:
                flow.metadata[CLAIMED] = False  # answered for good
                flow.response = _page(e.status, e.outcome, "Not accepted", e.message)
                leave_unread(flow)

    def request(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """Synchronous for every flow but the console's own."""
        return self._respond(flow) if flow.metadata.get(CLAIMED) else None

    async def _respond(self, flow: http.HTTPFlow) -> None:
        try:
            flow.response = await self._answer(flow)
        except ConsoleError as e:
            flow.response = _page(e.status, e.outcome, e.heading, e.message, e.details)
        except PortalError as e:  # a form that could not be read
            flow.response = _page(e.status, e.outcome, "Not accepted", e.message)
        except Exception:  # the provisional 503 stays: nothing is forwarded
            log.exception("internal_error", hook="Console.request")

    def _ours(self, flow: http.HTTPFlow) -> bool:
        """Whether any name the flow carries is the console's: a few string operations, as
        every intercepted request asks. An odd spelling of the name is simply not the console
        (it goes the way of any non-governed name)."""
        request = flow.request
        return (self._named(request.host) or self._named(flow.client_conn.sni)
                or self._named((request.host_header or "").partition(":")[0]))

    def _named(self, name: str | None) -> bool:
        return bool(name) and name.lower().rstrip(".") == self.host

    # --- routing ----------------------------------------------------------------------------

    async def _answer(self, flow: http.HTTPFlow) -> http.Response:
        request = flow.request
        path = request.path.partition("?")[0]
        if request.scheme != "https":
            return http.Response.make(301, b"", {"Location": f"https://{self.host}{path}",
                                                 "Cache-Control": "no-store"})
        policy = self.runtime.policy
        if policy is None or self.runtime.csrf is None or self.links is None:
            raise ConsoleError(503, "not_ready", "Not ready", "The gateway is starting; try again.")
        known = employee_of(flow, policy) if flow.metadata.get("proxyauth") else None
        if known is not None and known != approver_id(policy):
            self._count_sign_in("refused")
            log.warning("console_refused", employee=known)
            raise ConsoleError(403, "not_the_approver", "Only the approver",
                         f"The console is for {policy.approver} only.")
        now = time.time()
        session = self.sessions.get(request.cookies.get(COOKIE), now)
        fresh = session is None
        if session is None:
            session = self.sessions.new(now)
        view = View(self, flow, policy, session, now)
        response = await view.route(path, request.method)
        if fresh or view.session is not session:
            response.headers["Set-Cookie"] = sessions.cookie(view.session)
        return response

    # --- sign-in ----------------------------------------------------------------------------

    async def verify(self, policy: Policy, user: str, password: str,
                     client: str) -> SignInResult:
        """Whether `user`/`password` is the approver, held back for a device that keeps
        failing. Someone else's user name is refused at once (ConsoleError 403)."""
        user = user.strip()
        employee = approver_id(policy)
        if user.casefold() not in {policy.approver.casefold(), (employee or "").casefold()}:
            self._count_sign_in("refused")
            log.warning("console_sign_in", result="refused", client=client)
            raise ConsoleError(403, "not_the_approver", "Only the approver",
                         f"The console is for {policy.approver} only.")
        result = SignInResult.REJECTED
        checks: list[tuple[SignIns, str]] = []
        proxy = self.proxy_sign_ins()
        if proxy is not None and employee is not None:
            checks.append((proxy, employee))
        own = await self._password_sign_ins()
        if own is not None:
            checks.append((own, policy.approver))
        if not checks:
            self._count_sign_in("unavailable")
            raise ConsoleError(503, "no_password", "No console password yet",
                               "The proxy has no password for the approver: run `gatekeeper "
                               "approver-password` on the gateway, then sign in here.")
        for sign_ins, name in checks:
            result, _ = await sign_ins.sign_in(name, password)
            if result in (SignInResult.SUCCESS, SignInResult.CACHED):
                break
        ok = result in (SignInResult.SUCCESS, SignInResult.CACHED)
        if result is SignInResult.UNAVAILABLE:
            self._count_sign_in("unavailable")
            raise ConsoleError(503, "sign_in_unavailable", "Try again",
                         "The password could not be checked in time. Try again in a minute.")
        now = time.monotonic()
        hold = self.throttle.succeeded(client, user) if ok else self.throttle.failed(
            client, user, now)
        if hold is DROP:
            self._count_sign_in("throttled")
            raise ConsoleError(429, "throttled", "Too many failed sign-ins",
                         "Wait a few minutes before you try again.")
        if hold:
            try:
                await asyncio.sleep(hold)
            finally:
                self.throttle.done_waiting(client)
        if ok:
            self.throttle.forgive(client, user)
        self._count_sign_in("success" if ok else "rejected")
        log.info("console_sign_in", result="success" if ok else "rejected", client=client,
                 failures=self.throttle.failures(client))
        return SignInResult.SUCCESS if ok else SignInResult.REJECTED

    async def _password_sign_ins(self) -> SignIns | None:
        """The approver-password check, opened (off the loop) once the file exists."""
        if self.password_sign_ins is None:
            path = password_path(Path(ctx.options.gatekeeper_state_dir))
            verifier = await asyncio.to_thread(_open_verifier, path)
            if verifier is not None and self.password_sign_ins is None:
                self.password_sign_ins = SignIns(verifier)
        return self.password_sign_ins

    def _count_sign_in(self, result: str) -> None:
        self.runtime.metrics.console_sign_ins.labels(result).inc()

    # --- off the loop -----------------------------------------------------------------------

    async def state(self, operation: str, job: Callable[[StateDB], T],
                    timeout: float | None = None) -> T:
        """A state job on the state worker; a failure is a 503 page."""
        worker = self.runtime.state_worker
        if worker is None:
            raise ConsoleError(503, "not_recorded", "The database is not open", "Try again later.")
        try:
            if timeout is None:
                return await worker.run(f"console_{operation}", job)
            return await worker.run(f"console_{operation}", job, timeout=timeout)
        except StateOperationError as e:
            raise ConsoleError(503, "not_recorded", "The gateway's database did not answer",
                         f"Nothing was changed in the database ({e.kind}). Try again in a "
                         "minute.") from e

    async def edit(self, change: Callable[[], E]) -> E:
        """A change of approvals.yaml, in a thread, within EDIT_SECONDS; refusals as pages."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(change), EDIT_SECONDS)
        except ConcurrentEditError as e:
            raise ConsoleError(409, "concurrent_edit", "approvals.yaml was changed meanwhile",
                         f"{e} Nothing was written: reload this page to see the file as it "
                         "is now, then decide again.") from e
        except ConfigError as e:
            raise ConsoleError(409, "config_invalid", "The configuration is invalid",
                         "Nothing was changed: fix these problems in the files first "
                         "(`gatekeeper check` lists them too).",
                         tuple(str(p) for p in e.problems)) from e
        except EditError as e:
            raise ConsoleError(400, "refused", "Not changed", str(e)) from e
        except TimeoutError as e:
            raise ConsoleError(503, "edit_timeout", "approvals.yaml is busy",
                         "The change did not finish in time; reload to see whether it was "
                         "made.") from e


class View:
    """One console request: who asks, through which session, and the page for it."""

    def __init__(self, console: Console, flow: http.HTTPFlow, policy: Policy,
                 session: Session, now: float) -> None:
        self.console = console
        self.flow = flow
        self.policy = policy
        self.session = session
        self.now = now
        peer = flow.client_conn.peername
        self.client = peer[0] if peer else ""

    async def route(self, path: str, method: str) -> http.Response:
        path = path.rstrip("/") or "/"
        match = _REQUEST_PATH.match(path)
        if method == "POST":
            form = posted_form(self.flow)
            self._check_csrf(form.get("csrf", ""))
            if path == "/sign-in":
                return await self.sign_in(form)
            if path == "/sign-out":
                self.console.sessions.end(self.session)
                self.session = self.console.sessions.new(self.now)
                return self.render(200, "signed_out", "console_sign_in.html",
                                   notice="You are signed out.")
            self._require_sign_in()
            if match and match.group(2):
                return await self.decide(normalize_request_id(match.group(1)), match.group(2),
                                         form)
            if path in ("/grants/revoke", "/grants/extend"):
                return await self.change_grant(path.rpartition("/")[2], form)
            if path == "/employees/add":
                return await self.add_employee(form)
            if path == "/employees/remove":
                return await self.remove_employee(form)
            raise ConsoleError(404, "not_found", "No such page", "There is no such form here.")
        if method not in ("GET", "HEAD"):
            raise ConsoleError(405, "method_not_allowed", "Not allowed", "Use the console's pages.")
        if match and not match.group(2):
            link = self.flow.request.query.get("t")
            if link is not None:
                return await self.open_link(normalize_request_id(match.group(1)), link)
        if self.session.approver is None:
            return self.sign_in_page()
        if path == "/":
            return _redirect("/requests")
        if match and not match.group(2):
            return await self.request_page(normalize_request_id(match.group(1)))
        pages = {"/requests": self.requests_page, "/grants": self.grants_page,
                 "/employees": self.employees_page, "/review": self.review_page,
                 "/activity": self.activity_page,
                 "/acknowledgements": self.acknowledgements_page, "/health": self.health_page}
        if path in pages:
            return await pages[path]()
        raise ConsoleError(404, "not_found", "No such page", "The console has no such page.")

    # --- sign-in and links ------------------------------------------------------------------

    def sign_in_page(self, status: int = 200, outcome: str = "sign_in",
                     notice: str | None = None) -> http.Response:
        return self.render(status, outcome, "console_sign_in.html", notice=notice)

    async def sign_in(self, form: dict[str, str]) -> http.Response:
        result = await self.console.verify(self.policy, form.get("user", ""),
                                           form.get("password", ""), self.client)
        if result is not SignInResult.SUCCESS:
            return self.sign_in_page(401, "sign_in_rejected",
                                     "Wrong user name or password.")
        self.session = self.console.sessions.sign_in(self.session, self.policy.approver,
                                                     self.now)
        log.info("console_signed_in", approver=self.policy.approver, client=self.client)
        link, self.session.link = self.session.link, None
        if link is not None:
            request_id, token = link
            used = await self.console.state(
                "use_link", lambda db: db.use_link(links.digest(token), request_id,
                                                   _utc(self.now)))
            if used is None:
                return _redirect(f"/requests/{request_id}")
        return _redirect("/requests")

    async def open_link(self, request_id: str, token: str) -> http.Response:
        """A notification's link: checked, never acting; shows the request after sign-in."""
        signer = self.console.links
        assert signer is not None
        state = signer.check(request_id, token, self.now)
        if state is LinkState.INVALID:
            raise ConsoleError(400, "link_invalid", "This link is not valid",
                         "The link is damaged or was changed. Nothing was changed; sign in to "
                         "the console to see the pending requests.")
        if state is LinkState.EXPIRED:
            raise ConsoleError(410, "link_expired", "This link has expired",
                         f"Links in notifications work for {signer.max_age // 86400:g} days. "
                         "Nothing was changed; sign in to the console to see the pending "
                         "requests.")
        digest = links.digest(token)
        if self.session.approver is None:
            used = await self.console.state("link_used", lambda db: db.link_used(digest))
        else:
            used = await self.console.state(
                "use_link", lambda db: db.use_link(digest, request_id, _utc(self.now)))
        if used is not None:
            raise ConsoleError(410, "link_used", "This link was already used",
                         f"It was opened on {approving.local_time(used)}. Each link works "
                         "once; sign in to the console to see the request.")
        if self.session.approver is None:
            self.session.link = (request_id, token)
            return self.sign_in_page(notice=f"Sign in to see access request {request_id}.")
        return await self.request_page(request_id)

    # --- requests ---------------------------------------------------------------------------

    async def requests_page(self) -> http.Response:
        pending = await self.console.state("pending", lambda db: db.pending_requests())
        return self.render(200, "requests", "console_requests.html",
                           requests=[self._request_view(r) for r in pending])

    async def request_page(self, request_id: str) -> http.Response:
        request = await self._request(request_id)
        return self.render(200, "request", "console_request.html",
                           request=self._request_view(request))

    async def _request(self, request_id: str, *, pending: bool = False) -> AccessRequest:
        """The request (`pending`: still to decide, else 409), or a 404 page."""
        found = await self.console.state("request", lambda db: _find(db, request_id))
        if found is None:
            raise ConsoleError(404, "unknown_request", "No such request",
                         f"There is no access request {request_id}.")
        if pending and found.status != PENDING:
            raise ConsoleError(409, "already_decided", "Already decided",
                         f"Access request {found.id} was already {found.status} by "
                         f"{found.decided_by or '?'} on "
                         f"{approving.local_time(found.decided_on) or '?'}; nothing was "
                         "changed.")
        return found

    async def decide(self, request_id: str, action: str, form: dict[str, str]) -> http.Response:
        console, by = self.console, self.session.approver or ""
        request = await self._request(request_id, pending=True)
        now = _utc(self.now)
        if action == "/deny":
            reason = form.get("reason", "").strip() or None
            decided = await console.state(
                "deny", lambda db: approving.deny(db, request.id, by, reason, now))
            self._changed("denied", request.employee, request.service, request_id=request.id)
            return self.done("denied", f"Denied request {request.id} of {request.employee} "
                             f"for {self._service(request.service)}"
                             + (f": {decided.decision_reason}" if decided.decision_reason
                                else "."))
        expires = _date(form.get("expires", ""))
        accounts = form.get("accounts", "").replace(",", " ").split() or None
        config_dir, state_dir = _dirs()
        result = await console.edit(lambda: approving.grant(
            config_dir, state_dir, request.employee, request.service, expires=expires,
            accounts=accounts, before_replace=console.before_replace))
        try:
            await console.state("approve",
                                lambda db: approving.mark_approved(db, request, result, now))
        except ConsoleError as e:
            raise ConsoleError(503, "not_marked", "Granted, but not marked approved",
                         approving.not_marked(request, result, Exception(e.message))) from e
        self._changed("approved", request.employee, request.service, request_id=request.id,
                      expires=str(expires) if expires else None)
        return self.done("approved", f"Approved: {approving.grant_summary(result)} (request "
                         f"{request.id}). The proxy applies it within a second.")

    # --- grants -----------------------------------------------------------------------------

    async def change_grant(self, action: str, form: dict[str, str]) -> http.Response:
        employee, service = form.get("employee", ""), form.get("service", "")
        config_dir, state_dir = _dirs()
        before = self.console.before_replace
        if action == "revoke":
            await self.console.edit(lambda: approving.revoke(config_dir, employee, service,
                                                             before_replace=before))
            self._changed("revoked", employee, service)
            return self.done("revoked", f"Revoked: {employee} may no longer use "
                             f"{self._service(service)}. The proxy applies it within a second.")
        expires = _date(form.get("expires", ""))
        if expires is None:
            raise ConsoleError(400, "refused", "Not changed", "Give the new expiry date.")
        result = await self.console.edit(lambda: approving.grant(
            config_dir, state_dir, employee, service, expires=expires, before_replace=before))
        self._changed("extended", employee, service, expires=str(expires))
        return self.done("extended", f"Extended: {approving.grant_summary(result)}.")

    async def _report(self) -> dict[str, Any]:
        since = dt.datetime.fromtimestamp(self.now, dt.UTC) - dt.timedelta(days=REVIEW_DAYS)
        data = await self.console.state("review", lambda db: db.review(since),
                                        timeout=READ_SECONDS)
        return review_report(self.policy, data, dt.date.today())

    async def grants_page(self) -> http.Response:
        report = await self._report()
        return self.render(200, "grants", "console_grants.html", report=report,
                           tomorrow=(dt.date.today() + dt.timedelta(days=1)).isoformat())

    async def review_page(self) -> http.Response:
        report = await self._report()
        return self.render(200, "review", "console_review.html",
                           text=format_review_text(report), leavers=report["leaver_grants"])

    async def activity_page(self) -> http.Response:
        """`gatekeeper activity` in the browser: the same report, filtered by the query's
        since/employee/service, read through the state worker."""
        query = self.flow.request.query
        today = dt.date.today()
        since = _date(query.get("since", "")) or today - dt.timedelta(days=REVIEW_DAYS)
        employee = query.get("employee", "").strip() or None
        service = query.get("service", "").strip() or None
        start = dt.datetime.combine(since, dt.time(), dt.UTC)
        events = await self.console.state(
            "activity", lambda db: db.activity(start, employee=employee, service=service),
            timeout=READ_SECONDS)
        report = activity_report(events, self.policy.employees, since, today,
                                 self.policy.event_retention_days)
        return self.render(200, "activity", "console_activity.html", report=report,
                           categories=CATEGORIES, employee=employee or "",
                           service=service or "", employees=sorted(self.policy.employees),
                           services=sorted(self.policy.services))

    async def acknowledgements_page(self) -> http.Response:
        report = await self._report()
        return self.render(200, "acknowledgements", "console_acknowledgements.html",
                           acknowledgements=report["acknowledgements"])

    async def employees_page(self) -> http.Response:
        policy = self.policy
        people = [
            {"id": eid, "email": e.email, "name": e.display_name,
             "addresses": [str(a) for a in e.addresses],
             "grants": sorted(s for (who, s) in policy.grants if who == eid)}
            for eid, e in sorted(policy.employees.items())
        ]
        return self.render(200, "employees", "console_employees.html", employees=people)

    async def add_employee(self, form: dict[str, str]) -> http.Response:
        employee, email = form.get("employee", "").strip(), form.get("email", "").strip()
        addresses = form.get("addresses", "").replace(",", " ").split()
        if not employee or not email:
            raise ConsoleError(400, "refused", "Not changed",
                               "Give the employee's id and company e-mail address.")
        config_dir, state_dir = _dirs()
        before = self.console.before_replace
        result = await self.console.edit(lambda: approving.add_employee(
            config_dir, state_dir, employee, email, addresses=addresses,
            before_replace=before))
        self._changed("employee_added", result.employee, email=result.email,
                      addresses=addresses)
        devices = f", devices {', '.join(addresses)}" if addresses else ""
        return self.done("employee_added", f"Added: employee {result.employee} "
                         f"<{result.email}>{devices}. The proxy applies it within a second.")

    async def remove_employee(self, form: dict[str, str]) -> http.Response:
        """Refused while the employee holds grants (named), unless the form's "also remove
        their grants" box is ticked: `gatekeeper employee remove --force`."""
        employee = form.get("employee", "").strip()
        with_grants = form.get("with_grants") == "yes"
        held = sorted(s for (who, s) in self.policy.grants if who == employee)
        if held and not with_grants:
            raise ConsoleError(409, "holds_grants", "Not removed",
                               f"{employee} holds grants for {', '.join(held)}. Revoke them "
                               "first, or tick \"also remove their grants\" and remove again.")
        config_dir, state_dir = _dirs()
        before = self.console.before_replace
        result = await self.console.edit(lambda: approving.remove_employee(
            config_dir, state_dir, employee, with_grants=with_grants, before_replace=before))
        self._changed("employee_removed", result.employee, revoked=list(result.revoked))
        grants = f" and their grants for {', '.join(result.revoked)}" if result.revoked else ""
        return self.done("employee_removed", f"Removed: employee {result.employee} "
                         f"<{result.email}>{grants}. The proxy applies it within a second.")

    async def health_page(self) -> http.Response:
        """The policy in force and whether the files on disk load now (off the loop)."""
        metrics = self.console.runtime.metrics
        loaded_at = metrics.config_loaded_at._value.get()
        config_dir, state_dir = _dirs()
        try:  # as the proxy composes it: with the office directory's last list, if any
            await asyncio.wait_for(asyncio.to_thread(office_policy, config_dir, state_dir),
                                   EDIT_SECONDS)
            problems: list[str] = []
        except ConfigError as e:
            problems = [str(p) for p in e.problems]
        except TimeoutError:
            problems = ["the files could not be read in time"]
        worker = self.console.runtime.state_worker
        return self.render(
            200, "health", "console_health.html",
            sha256=self.policy.sha256,
            last_ok=bool(metrics.config_load_ok._value.get()),
            loaded_at=approving.local_time(dt.datetime.fromtimestamp(loaded_at, dt.UTC))
            if loaded_at else "",
            problems=problems, state_problems=worker.problems() if worker else [],
        )

    # --- helpers ----------------------------------------------------------------------------

    def _require_sign_in(self) -> None:
        if self.session.approver is None:
            raise ConsoleError(403, "not_signed_in", "Sign in first",
                         "Your sign-in has ended (15 minutes without a click, or a restart "
                         "of the gateway). Nothing was changed: sign in and try again.")

    def _check_csrf(self, token: str) -> None:
        csrf = self.console.runtime.csrf
        if csrf is None or not csrf.valid(token, CSRF_PURPOSE, self.session.id, CSRF_PURPOSE,
                                          self.now):
            log.warning("console_csrf_refused", client=self.client)
            raise ConsoleError(403, "csrf_invalid", "This form has expired",
                         "The form did not come from this page or is too old. Nothing was "
                         "changed: go back, reload the page and try again.")

    def _changed(self, action: str, employee: str, service: str | None = None,
                 **details: Any) -> None:
        self.console.runtime.metrics.console_changes.labels(action).inc()
        log.info("console_change", action=action, by=self.session.approver, employee=employee,
                 service=service, at=_utc(self.now).isoformat(timespec="seconds"), **details)

    def _service(self, service: str) -> str:
        found = self.policy.services.get(service)
        return found.name if found else service

    def _request_view(self, request: AccessRequest) -> dict[str, Any]:
        person = self.policy.employees.get(request.employee)
        return {
            **request.to_json(),
            "service_name": self._service(request.service),
            "employee_name": person.display_name if person else "",
            "created_local": approving.local_time(request.created),
            "decided_local": approving.local_time(request.decided_on),
            "pending": request.status == PENDING,
        }

    def done(self, outcome: str, message: str) -> http.Response:
        return self.render(200, outcome, "console_message.html", heading="Done",
                           message=message, details=())

    def render(self, status: int, outcome: str, template: str, **values: Any) -> http.Response:
        csrf = self.console.runtime.csrf
        assert csrf is not None
        body = render(template, host=self.console.host, nav=NAV,
                      approver=self.session.approver,
                      csrf=csrf.issue(CSRF_PURPOSE, self.session.id, CSRF_PURPOSE, self.now),
                      **values)
        return _response(status, outcome, body)


# --- module helpers -----------------------------------------------------------------------------


def approver_id(policy: Policy) -> str | None:
    """The employee whose e-mail is the approver's, if there is one."""
    wanted = policy.approver.casefold()
    return next((eid for eid, e in policy.employees.items() if e.email.casefold() == wanted),
                None)


def _find(db: StateDB, request_id: str) -> AccessRequest | None:
    try:
        return db.get_request(request_id)
    except UnknownRequestError:
        return None


def _open_verifier(path: Path) -> HtpasswdVerifier | None:
    """In a thread: the approver-password file's verifier, started; None without the file."""
    with contextlib.suppress(FileNotFoundError):
        verifier = HtpasswdVerifier(path)
        verifier.start()
        return verifier
    return None


def _dirs() -> tuple[Path, Path]:
    return Path(ctx.options.gatekeeper_config_dir), Path(ctx.options.gatekeeper_state_dir)


def _date(text: str) -> dt.date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConsoleError(400, "refused", "Not changed",
                           f"Not a date (YYYY-MM-DD): {text!r}") from None


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC)


def _redirect(path: str) -> http.Response:
    return http.Response.make(303, b"", {"Location": urllib.parse.quote(path, safe="/?=&"),
                                         "Cache-Control": "no-store",
                                         "Referrer-Policy": "no-referrer"})


def _page(status: int, outcome: str, heading: str, message: str,
          details: tuple[str, ...] = ()) -> http.Response:
    body = render("console_message.html", host="", nav=(), approver=None, csrf="",
                  heading=heading, message=message, details=details)
    return _response(status, outcome, body)


def _response(status: int, outcome: str, body: bytes) -> http.Response:
    return http.Response.make(status, body, {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": CSP,
        "Referrer-Policy": "no-referrer",  # a link's token never leaves in a Referer
        "X-Content-Type-Options": "nosniff",
        OUTCOME_HEADER: outcome,
    })
