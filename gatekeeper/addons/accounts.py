"""Company accounts only, for the flows the access decision allowed.

- `requestheaders`: the catalog's tenant headers replace the client's copies; a session
  cookie or token must be bound to this employee; prohibited actions that need no body are
  refused; a login body announced larger than the limit is refused before it is read; where
  no login rule applies, a credential in a header, or a form too large to read, is refused
  (the credential guard, gatekeeper.core.credentials).
- `request` (body read): login identifiers must be the grant's accounts; so must the address
  of a sign-up (else refused with action `sign_up`; a company sign-up is recorded as
  `account_created`); where no login or sign-up rule applies, a request that carries a
  credential is refused (`unrecognized_sign_in`); prohibited actions that look at field
  values; audited actions are recorded with their target.
- Action rules that look at field values fail closed: when one applies and the body cannot be
  read whole (length unknown or over the limit, judged on the headers; or undecodable), a
  prohibited one refuses the request (`unreadable_request`) and an audited one is recorded
  as `unreadable`.
- `response`: session cookies and tokens the service hands out while a company login is in
  progress are bound to (employee, service), as keyed hashes in the state database.

Every block goes through the shared `decisions.enforce()`, so report mode, metrics and the
`decision` log stay the same as for the access decision. Every hook reads the flow's context
(gatekeeper.addons.context): the policy its decision read, never a reloaded one.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.net.http import cookies as http_cookies

from gatekeeper.addons.context import FlowContext, decided
from gatekeeper.addons.decisions import enforce, fail_closed
from gatekeeper.addons.runtime import Runtime, header_items, leave_unread, log
from gatekeeper.bodies import BodyError, declared_length, decode_body
from gatekeeper.core import credentials, protobuf
from gatekeeper.core.hosts import normalize_host
from gatekeeper.core.identifiers import mask_identifier
from gatekeeper.core.logins import (
    Form,
    LoginCheck,
    LoginResult,
    Target,
    accounts_of,
    action_target,
    applicable,
    check_login,
    first_action,
    form_tokens,
    issued_cookies,
    issued_tokens,
    make_target,
    read_form,
    read_json,
    request_tokens,
    session_reason,
    step_of,
)
from gatekeeper.core.model import (
    Decision,
    FieldPath,
    ProtobufFields,
    Reason,
    Rules,
    Service,
    Verdict,
)
from gatekeeper.statedb import (
    ACCOUNT_CREATED,
    RECORDED,
    REFUSED,
    REPORTED,
    UNREADABLE,
    SessionCache,
    load_secret,
)
from gatekeeper.statedb.worker import StateOperationError, StateWorker

DEFAULT_MAX_LOGIN_BODY = 1024 * 1024
# After a company login is allowed, session cookies the service sets for this employee are
# bound for this long: long enough for a second-factor step, short enough that a later
# unchecked sign-in is not covered.
LOGIN_WINDOW_SECONDS = 600.0
EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"
# Headers that, given twice, servers resolve differently (first, last, or joined).
SINGLE_HEADERS = ("content-type", "content-encoding")
SIGN_UP = "sign_up"  # the action named when a sign-up is refused
MAX_RECENT_SIGNUPS = 1000
FORM = "application/x-www-form-urlencoded"


class Accounts:
    """Enforces issue 3's account rules on allowed flows; one instance per proxy."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.sessions: SessionCache | None = None
        # (employee, service) -> monotonic deadline of the login in progress
        self.logins_in_progress: dict[tuple[str, str], float] = {}
        # (employee, service, masked address) -> monotonic time an account creation was
        # recorded: a sign-up of several steps (a dry run, then the real one) is one creation
        self.recent_signups: dict[tuple[str, str, str], float] = {}

    # --- lifecycle --------------------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option(
            "gatekeeper_max_login_body", int, DEFAULT_MAX_LOGIN_BODY,
            "Largest login request body (bytes, after decompression) the proxy reads; a "
            "larger login is refused as unverifiable_login.",
        )

    def running(self) -> None:
        """Read the bindings into memory once the state is open (Lifecycle.running, just
        before), so that no request ever waits on the disk for a lookup. A damaged database
        leaves the cache empty: sessions bound before must sign in again."""
        worker = self.runtime.state_worker
        if self.sessions is not None or worker is None:
            return
        try:
            bindings = worker.call("load_bindings", lambda db: db.load_bindings(), reading=True)
        except StateOperationError:
            bindings = []  # logged and counted by the worker
        secret = load_secret(Path(ctx.options.gatekeeper_state_dir))
        self.sessions = SessionCache(secret, bindings)

    # --- hooks ------------------------------------------------------------------------------

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """Synchronous, except in one of several workers (`serve --workers`): there a session
        another worker bound is first looked up in the shared database (off the loop)."""
        if self.runtime.in_pool:
            return self._learn_then_check(flow)
        self._check_headers(flow)
        return None

    async def _learn_then_check(self, flow: http.HTTPFlow) -> None:
        governed = _governed(flow)
        if governed is not None and governed[0].decision.verdict is Verdict.ALLOW:
            await self._learn_bindings(flow, *governed)
        self._check_headers(flow)

    def _check_headers(self, flow: http.HTTPFlow) -> None:
        governed = _governed(flow)
        if governed is None:
            return
        context, service = governed
        decision = context.decision
        for name, value in service.headers:  # replaces the client's copies, whatever case
            flow.request.headers.set_all(name, [value])
        if decision.verdict is not Verdict.ALLOW:
            return
        target = _target(flow, context, service)
        rules = context.rules
        prohibited = first_action(rules.prohibited, None)
        if prohibited is not None:  # first: its query may hold an OAuth request token, and
            # its target, if any (an app's client id)
            query = read_form("", b"", target.query) if prohibited.target else None
            self._block(flow, context, Reason.PROHIBITED_ACTION, prohibited.action,
                        action_target(prohibited, target, query))
            return
        if self._session_refused(flow, context, service):
            return
        request = flow.request
        if rules.needs_body or _guard_reads(service, target, request, rules) \
                or _token_body(service, target, rules) \
                or _guard_message(service, target, request, rules):
            request.stream = False  # the request hook reads it: never forward it early
        if self._actions_unreadable(flow, context, service, target):
            leave_unread(flow)
            return
        if rules.account is None:
            self._guard_headers(flow, context, service, target)
            return
        detail = _unreadable_login(request, self.max_body)
        if detail is not None:
            context.body_unread = True
            check = LoginCheck(LoginResult.UNVERIFIABLE, detail=detail)
            if rules.login is not None:
                self._login_checked(flow, context, check)
            else:
                self._signup_checked(flow, context, check)
            leave_unread(flow)

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        governed = _governed(flow)
        if governed is None:
            return
        context, service = governed
        decision = context.decision
        if decision.verdict is not Verdict.ALLOW or context.body_unread:
            return
        target = _target(flow, context, service)
        rules = context.rules
        request = flow.request
        guarded = _guard_reads(service, target, request, rules)
        first = rules.login
        if first is not None and first.protobuf is not None:
            form = self._message(flow, first.protobuf)
        else:
            form = self._form(flow) if rules.needs_body or guarded else None
        if form is None and not context.actions_unread \
                and self._actions_unread(flow, context, service, "unreadable_body"):
            return
        if _token_body(service, target, rules):
            form = form or self._form(flow)
            tokens = form_tokens(service.session_tokens, target, form)  # type: ignore[arg-type]
            if self._session_refused(flow, context, service, tokens):
                return
        if guarded and self._guard_refused(flow, context, credentials.guard_form(
                service, request.headers.get("content-type", ""), form)):
            return
        passwords = _guard_message(service, target, request, rules)
        if passwords and self._guard_refused(flow, context, self._message_check(flow, passwords)):
            return
        if rules.account is not None \
                and not self._accounts_checked(flow, context, service, rules, form):
            return
        fields = None if context.actions_unread else form  # unread: field rules never match
        prohibited = first_action(rules.prohibited, fields)
        if prohibited is not None:
            self._block(flow, context, Reason.PROHIBITED_ACTION, prohibited.action,
                        action_target(prohibited, target, fields))
            return
        audited = first_action(rules.audited, fields)
        if audited is not None:
            self._audit(decision.employee, service.id, audited.action,
                        action_target(audited, target, fields))

    def _accounts_checked(self, flow: http.HTTPFlow, context: FlowContext, service: Service,
                          rules: Rules, form: Form | None) -> bool:
        """The login and the sign-up the request makes, checked against the grant's
        accounts; True when it may go on."""
        policy, decision = context.policy, context.decision
        accounts = accounts_of(policy, decision.employee, service.id)
        rule = step_of(rules.logins, form) if rules.login is not None else None
        if rule is not None:
            continuing = decision.employee is not None \
                and self._login_in_progress(decision.employee, service.id)
            check = check_login(rule, accounts, decision.employee, policy.accounts, form,
                                continuing)
            if not self._login_checked(flow, context, check):
                return False
        signup = step_of(rules.signups, form)
        if signup is not None:
            check = check_login(signup, accounts, decision.employee, policy.accounts, form)
            if not self._signup_checked(flow, context, check):
                return False
        return True

    @fail_closed
    def response(self, flow: http.HTTPFlow) -> None:
        governed = _governed(flow, answered=True)
        if governed is None or flow.response is None:
            return
        context, service = governed
        decision = context.decision
        employee = decision.employee
        if decision.verdict is not Verdict.ALLOW or employee is None \
                or not (service.session_cookie or service.session_tokens):
            return
        sessions = self._sessions()
        values = [
            value
            for value, attrs in (flow.response.cookies.get_all(service.session_cookie)
                                 if service.session_cookie
                                 and flow.response.headers.get_all("set-cookie") else ())
            if value and not _expires_now(attrs)
        ]
        if service.session_tokens is not None and self._login_in_progress(employee, service.id):
            values += self._issued_tokens(flow, service)
        values = [v for v in values if sessions.owner(service.id, v) != employee]
        if not values:
            return  # nothing set, a deletion, or a value already bound to this employee
        if not self._login_in_progress(employee, service.id):
            log.warning("session_not_bound", employee=employee, service=service.id,
                        hint="the service set its session cookie outside a checked login")
            return
        now = dt.datetime.now(dt.UTC)
        bindings = [sessions.bind(service.id, value, employee, now) for value in values]
        self._state_worker().submit("store_bindings", lambda db: db.store_bindings(bindings))
        log.info("session_bound", employee=employee, service=service.id, count=len(bindings))

    # --- checks -----------------------------------------------------------------------------

    @property
    def max_body(self) -> int:
        return ctx.options.gatekeeper_max_login_body

    def _session_refused(self, flow: http.HTTPFlow, context: FlowContext,
                         service: Service, values: list[str] | None = None) -> bool:
        """A session cookie or token bound to someone else, or never bound, is refused; a
        refused unbound cookie is also expired, so that the next attempt starts signed out.
        `values`: tokens found in the body; by default the cookie, token headers and query."""
        if values is None:
            values = _session_values(flow, context, service)
        if not values:
            return False  # not signed in: nothing to check
        sessions = self._sessions()
        decision = context.decision
        owners = [sessions.owner(service.id, value) for value in values]
        reason = session_reason(owners, decision.employee)
        if reason is None:
            return False
        if reason is Reason.ACCOUNT_MISMATCH:
            log.warning("session_mismatch", employee=decision.employee, service=service.id,
                        account_owner=next(o for o in owners if o and o != decision.employee))
        self._block(flow, context, reason)
        if reason is Reason.UNVERIFIED_SESSION and flow.response is not None \
                and service.session_cookie:  # enforced: the client drops the cookie
            for header in _expiring_cookies(flow, service, service.session_cookie):
                flow.response.headers.add("Set-Cookie", header)
        return True

    def _actions_unreadable(self, flow: http.HTTPFlow, context: FlowContext, service: Service,
                            target: Target) -> bool:
        """Field-matched action rules on a body that cannot be read whole, judged on the
        headers (as a login's); True when the request was refused."""
        rules = context.rules
        if not rules.field_rules:
            return False
        detail = _unreadable_login(flow.request, self.max_body)
        if detail is None:
            return False
        context.actions_unread = True
        if self._actions_unread(flow, context, service, detail):
            return True
        if rules.account is None and not _guard_reads(service, target, flow.request, rules):
            flow.request.stream = True  # recorded unread: forwarded as it comes, never held
        return False

    def _actions_unread(self, flow: http.HTTPFlow, context: FlowContext, service: Service,
                        detail: str) -> bool:
        """Fail closed where field-matched action rules apply to a body that was not read: a
        prohibited one could match, so the request is refused (`unreadable_request`); an
        audited one is recorded as `unreadable`, never dropped. True when refused."""
        prohibited = [rule for rule in context.rules.prohibited if rule.fields]
        audited = [rule for rule in context.rules.audited if rule.fields]
        if not (prohibited or audited):
            return False
        decision = context.decision
        log.warning("actions_unreadable", employee=decision.employee, service=service.id,
                    detail=detail, actions=sorted({r.action for r in (*prohibited, *audited)}))
        if prohibited:
            return self._block(flow, context, Reason.UNREADABLE_REQUEST)
        self._audit(decision.employee, service.id, UNREADABLE, outcome=UNREADABLE)
        return False

    async def _learn_bindings(self, flow: http.HTTPFlow, context: FlowContext,
                              service: Service) -> None:
        """With several proxy workers, a session this one does not know as the employee's may
        have been bound by another: read those from the shared database (off the loop)."""
        sessions = self._sessions()
        employee = context.decision.employee
        digests = [sessions.digest(service.id, value)
                   for value in _session_values(flow, context, service)
                   if sessions.owner(service.id, value) != employee]
        if not digests:
            return
        try:
            owners = await self.runtime.state_call(
                "read_bindings", lambda db: db.binding_owners(service.id, digests))
        except StateOperationError:
            return  # logged and counted; memory decides, as with one process
        sessions.learn(service.id, owners)

    def _guard_headers(self, flow: http.HTTPFlow, context: FlowContext, service: Service,
                       target: Target) -> None:
        """The credential guard on the headers, where no login rule applies: a credential in
        a header, or a form-like body that cannot be read whole, is refused now."""
        request = flow.request
        check = credentials.guard_headers(service, target, header_items(request))
        if check is None and _guard_reads(service, target, request, context.rules) \
                and credentials.form_like(request.headers.get("content-type", "")):
            detail = _unreadable_login(request, self.max_body)
            check = detail and LoginCheck(LoginResult.UNVERIFIABLE, detail=detail)
        if check:
            context.body_unread = True
            self._guard_refused(flow, context, check)
            leave_unread(flow)

    def _guard_refused(self, flow: http.HTTPFlow, context: FlowContext,
                       check: LoginCheck | None) -> bool:
        """Act on the credential guard's check; True when the request was refused. A sign-in
        the catalog does not know is logged with its host and path only, so that IT can
        add a rule."""
        if check is None:
            return False
        if check.result is LoginResult.UNRECOGNIZED:
            request = flow.request
            log.warning("unrecognized_sign_in", service=context.decision.service,
                        host=normalize_host(request.pretty_host),
                        path=request.path.partition("?")[0])
        return not self._login_checked(flow, context, check)

    def _issued_tokens(self, flow: http.HTTPFlow, service: Service) -> list[str]:
        """The session tokens a response hands out during a checked login: in its headers,
        and in a JSON or text body no larger than the login limit (read with a cap)."""
        tokens = service.session_tokens
        response = flow.response
        assert tokens is not None and response is not None
        body: Form | None = None
        text: str | None = None
        media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        wanted = tokens.issued_fields or tokens.issued_cookies or tokens.issued_pattern
        cookies: list[str] = []
        if wanted and (media.endswith("json") or media.startswith("text/") or media == FORM):
            try:
                raw = decode_body(response.raw_content or b"",
                                  response.headers.get_all("content-encoding"), self.max_body)
            except BodyError:
                raw = b""
            if tokens.issued_fields:  # JSON, or a form-encoded answer (xAuth's oauth_token)
                body = read_json(raw) if media != FORM else None
                body = body or read_form(FORM, raw)
            if tokens.issued_cookies and service.session_cookie:
                cookies = issued_cookies(raw, tokens.issued_cookies, service.session_cookie)
            text = raw.decode("utf-8", "replace") if tokens.issued_pattern else None
        return issued_tokens(tokens, header_items(response), body, text) + cookies

    def _login_checked(self, flow: http.HTTPFlow, context: FlowContext,
                       check: LoginCheck) -> bool:
        """Count and act on a login check; True when the login may go on."""
        decision = context.decision
        employee, service = decision.employee, decision.service or ""
        self.runtime.metrics.logins.labels(service, check.result.value).inc()
        key = (employee or "", service)
        if check.reason is None:
            self.logins_in_progress[key] = time.monotonic() + LOGIN_WINDOW_SECONDS
            log.info("login_checked", employee=employee, service=service,
                     result=check.result.value)
            return True
        self.logins_in_progress.pop(key, None)  # the latest sign-in was not a company one
        log.warning(
            "login_refused", employee=employee, service=service, result=check.result.value,
            identifier=mask_identifier(check.identifier) if check.identifier else None,
            account_owner=check.owner, detail=check.detail,
        )
        self._block(flow, context, check.reason)
        return False

    def _signup_checked(self, flow: http.HTTPFlow, context: FlowContext,
                        check: LoginCheck) -> bool:
        """Act on a sign-up check; True when the account may be created. A company sign-up is
        recorded (masked address) once per address within the login window, and the session
        the site then hands out is bound as after a login; any other is refused, action
        `sign_up`."""
        decision = context.decision
        employee, service = decision.employee, decision.service or ""
        named = check.account or check.identifier
        masked = mask_identifier(named) if named else None
        if check.reason is not None:
            log.warning("signup_refused", employee=employee, service=service,
                        result=check.result.value, identifier=masked, detail=check.detail)
            self._block(flow, context, check.reason, SIGN_UP, masked)
            return False
        now = time.monotonic()
        self.logins_in_progress[(employee or "", service)] = now + LOGIN_WINDOW_SECONDS
        log.info("signup_checked", employee=employee, service=service, account=masked)
        key = (employee or "", service, masked or "")
        recorded = self.recent_signups.get(key)
        if recorded is None or now - recorded > LOGIN_WINDOW_SECONDS:
            if len(self.recent_signups) >= MAX_RECENT_SIGNUPS:
                self.recent_signups.clear()
            self.recent_signups[key] = now
            self._audit(employee, service, ACCOUNT_CREATED, masked)
        return True

    def _login_in_progress(self, employee: str, service: str) -> bool:
        deadline = self.logins_in_progress.get((employee, service))
        if deadline is None:
            return False
        if time.monotonic() < deadline:
            return True
        del self.logins_in_progress[(employee, service)]
        return False

    def _block(self, flow: http.HTTPFlow, context: FlowContext, reason: Reason,
               action: str | None = None, target: str | None = None) -> bool:
        """Refuse the flow through the shared path; False in report mode (let through). A
        refused action (a prohibited one, a sign-up) is also recorded for the activity
        report, with what it was about when the rule names it."""
        decision = context.decision
        blocked = Decision(Verdict.BLOCK, reason, decision.service, decision.employee, action)
        enforce(self.runtime, flow, context, blocked)
        refused = flow.response is not None
        if action is not None and decision.employee is not None:
            self.runtime.recorder.audited(decision.employee, decision.service or "", action,
                                          target, REFUSED if refused else REPORTED)
        return refused

    def _audit(self, employee: str | None, service: str, action: str,
               target: str | None = None, outcome: str = RECORDED) -> None:
        """Log, count and record (for the review and the activity report) an action the
        moderators check; `target` is the site's id of what it was about, never a body."""
        self.runtime.metrics.audited_actions.labels(service, action).inc()
        log.info("audited_action", employee=employee, service=service, action=action,
                 target=target)
        if employee is not None:
            self.runtime.recorder.audited(employee, service, action, target, outcome)

    def _form(self, flow: http.HTTPFlow) -> Form | None:
        """The request's fields; None when the body is too large, ambiguous, or cannot be
        decoded or parsed (then a login is unverifiable and a field-matched action does not
        match)."""
        body = self._body(flow.request)
        if body is None:
            return None
        query = flow.request.path.partition("?")[2]
        return read_form(flow.request.headers.get("content-type", ""), body, query)

    def _message(self, flow: http.HTTPFlow, fields: ProtobufFields) -> Form | None:
        """The identifier and password values of a protobuf (gRPC-Web) sign-in, by field
        path; None when the body cannot be read exactly (then the login is unverifiable)."""
        body = self._body(flow.request)
        if body is None:
            return None
        try:
            return protobuf.read_message(flow.request.headers.get("content-type", ""), body,
                                         (*fields.identifiers, *fields.passwords))
        except protobuf.ProtobufError:
            return None

    def _message_check(self, flow: http.HTTPFlow,
                       passwords: tuple[FieldPath, ...]) -> LoginCheck | None:
        """The guard on a protobuf body where no login rule applies: a value at a password
        path of the service's protobuf sign-ins makes it a sign-in. A body that is not such
        a message (too large, another encoding, malformed) is another call: it passes."""
        body = self._body(flow.request)
        if body is None:
            return None
        try:
            message = protobuf.read_message(flow.request.headers.get("content-type", ""), body,
                                            passwords)
        except protobuf.ProtobufError:
            return None
        return credentials.guard_message(message)

    def _body(self, request: http.Request) -> bytes | None:
        """The decoded body; None when it is too large, ambiguous or cannot be decoded.
        Decoding stops at the size limit, whatever the body expands to."""
        headers = request.headers
        if any(len(headers.get_all(name)) > 1 for name in SINGLE_HEADERS):
            return None
        try:
            return decode_body(request.raw_content or b"", headers.get_all("content-encoding"),
                               self.max_body)
        except BodyError:
            return None

    # --- state ------------------------------------------------------------------------------

    def _sessions(self) -> SessionCache:
        if self.sessions is None:
            raise RuntimeError("the state database is not open")
        return self.sessions

    def _state_worker(self) -> StateWorker:
        """Bindings are persisted by the one state writer, in order, off the event loop; a
        failure is logged and counted there (never with a value)."""
        worker = self.runtime.state_worker
        if worker is None:
            raise RuntimeError("the state database is not open")
        return worker


def _session_values(flow: http.HTTPFlow, context: FlowContext, service: Service) -> list[str]:
    """The session cookie values (where `session: when` says the browser is signed in) and
    tokens the request carries for `service`. A sign-in request's tokens (Facebook's app token
    on auth/login) are not sessions."""
    request = flow.request
    values: list[str] = []
    if service.session_cookie:
        cookies = _cookies(request)
        if cookies and _signed_in(cookies, service):
            values = [v for name, v in cookies if name == service.session_cookie and v]
    target = _target(flow, context, service)
    if service.session_tokens is not None and context.rules.login is None:
        values += request_tokens(service.session_tokens, target, header_items(request))
    return values


def _cookies(request: http.Request) -> tuple[tuple[str, str], ...]:
    """The request's cookies as (name, value) pairs, in order (mitmproxy's `cookies` view
    parses the headers again at each lookup); nothing to parse without a Cookie header."""
    headers = request.headers.get_all("cookie")
    return tuple(http_cookies.parse_cookie_headers(headers)) if headers else ()


def _governed(
    flow: http.HTTPFlow, *, answered: bool = False
) -> tuple[FlowContext, Service] | None:
    """The context and service of a governed flow that is still going upstream (`answered`:
    or came back from it); the policy is the one its decision read."""
    context = decided(flow)
    if context is None or context.decision.verdict is Verdict.PASS:
        return None
    if flow.response is not None and not answered:
        return None
    service = context.policy.services.get(context.decision.service or "")
    if service is None:
        return None
    return context, service


def _target(flow: http.HTTPFlow, context: FlowContext, service: Service) -> Target:
    """What the catalog rules look at, with the rules that apply to it (`context.rules`):
    worked out once per flow, as both request hooks ask."""
    target = context.target
    if target is None:
        request = flow.request
        path, _, query = request.path.partition("?")
        hosts = (_normalized(host) for host in dict.fromkeys(context.hosts) if host)
        target = context.target = make_target(request.method, hosts, path, query)
        context.rules = applicable(service, target)
    return target


# The host names of the flows, normalized once each (a bounded memo: names repeat).
_normalized = functools.lru_cache(maxsize=1024)(normalize_host)


def _guard_reads(service: Service, target: Target, request: http.Request, rules: Rules) -> bool:
    """Whether the credential guard reads this request's body: one that may carry a form,
    sent to a service that needs a grant, where no login or sign-up rule (of `rules`, those
    that apply) does. The method first: a GET's headers are not read for it."""
    return (service.guarded and target.method in credentials.BODY_METHODS
            and rules.account is None
            and credentials.readable_body(target.method, request.headers.get("content-type", "")))


def _signed_in(cookies: tuple[tuple[str, str], ...], service: Service) -> bool:
    """Whether the request's cookies say it is signed in, where the session cookie alone
    does not (`session: when`); a cookie given twice with different values counts if any
    copy has the value, as a server may read either."""
    return all(any(n == name and v == want for n, v in cookies)
               for name, want in service.session_when.items())


def _guard_message(service: Service, target: Target, request: http.Request,
                   rules: Rules) -> tuple[FieldPath, ...]:
    """The password paths the credential guard reads in this protobuf request's body (where
    no login rule of `rules` applies); empty when it does not read it. The method first: a
    GET's headers are not read for it."""
    if rules.login is not None or target.method not in credentials.BODY_METHODS:
        return ()
    return credentials.protobuf_passwords(service, target,
                                          request.headers.get("content-type", ""))


def _token_body(service: Service, target: Target, rules: Rules) -> bool:
    """Whether the request's body may carry a session token (`access_token=` posted to the
    Graph API): a service whose session names params, on its token hosts, no sign-in."""
    tokens = service.session_tokens
    return (tokens is not None and bool(tokens.params) and target.method in credentials.BODY_METHODS
            and (tokens.hosts is None or not tokens.hosts.isdisjoint(target.hosts))
            and rules.login is None)


def _unreadable_login(request: http.Request, limit: int) -> str | None:
    """Why a login request cannot be checked, judged on its headers alone: a header servers
    read differently when repeated, a body announced larger than `limit`, or one whose
    length is not announced (chunked, or HTTP/2 without Content-Length). mitmproxy 11 could
    only count such a body by buffering all of it, or by streaming it, which forwards the
    request upstream before it is checked; browsers and apps announce a form's length."""
    headers = request.headers
    if any(len(headers.get_all(name)) > 1 for name in SINGLE_HEADERS):
        return "ambiguous_headers"
    length = declared_length(request.method, headers, request.http_version)
    if length is None:
        return "body_length_unknown"
    if length > limit:
        return "body_too_large"
    return None


def _expires_now(attrs) -> bool:
    """Whether a Set-Cookie deletes the cookie (Max-Age <= 0 or Expires in the past)."""
    max_age = attrs.get("Max-Age")
    if max_age is not None:
        try:
            return int(max_age) <= 0
        except ValueError:
            pass
    expires = attrs.get("Expires")
    if expires:
        try:
            when = email.utils.parsedate_to_datetime(expires)
        except (TypeError, ValueError):
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when <= dt.datetime.now(dt.UTC)
    return False


def _expiring_cookies(flow: http.HTTPFlow, service: Service, name: str) -> list[str]:
    """Set-Cookie values that delete `name` wherever the service may have set it: for the
    service's domain covering this host, for the host itself, and host-only."""
    host = normalize_host(flow.request.pretty_host)
    domain = next((d for d in service.domains if host == d or host.endswith("." + d)), None)
    secure = "; Secure" if flow.request.scheme == "https" else ""
    base = f"{name}=; Max-Age=0; Expires={EXPIRED}; Path=/{secure}"
    scopes = dict.fromkeys(f"; Domain={d}" for d in (domain, host) if d)
    return [base, *(base + scope for scope in scopes)]
