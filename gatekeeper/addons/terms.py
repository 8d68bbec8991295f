"""Terms of Use: an approved employee accepts the service's current terms before using it.

For an allowed flow whose grant requires it (`Policy.terms_required`) and whose employee has
not accepted the service's current `terms_url`, the request is blocked with reason
`terms_not_acknowledged` through the shared `decisions.enforce()` (so report mode, metrics,
the log and the review record stay the same as for every other block). A browser gets an
interstitial (gatekeeper.addons.responses) instead of the block page, still 403 with the
reason header (nothing of the service was served): a link to the terms and an "I have read
and accept" button that posts to `/.well-known/gatekeeper/acknowledge-terms` (a portal
endpoint); the acceptance is recorded and the browser is sent (303) back to the page it asked
for. A changed `terms_url` asks again.

The terms page itself passes when it lives on the service's own host (Facebook's terms are on
facebook.com), so that the link works. Acceptances are kept in memory (loaded at start,
added on accept): the request path never reads the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import http

from gatekeeper.addons import responses
from gatekeeper.addons.context import FlowContext, decided, require_context
from gatekeeper.addons.decisions import enforce, fail_closed
from gatekeeper.addons.forms import (
    ACKNOWLEDGE_TERMS_PATH,
    TERMS_PURPOSE,
    Handler,
    PortalError,
    check_csrf,
    posted_form,
    safe_return_to,
)
from gatekeeper.addons.runtime import Runtime, log
from gatekeeper.core.hosts import normalize_host
from gatekeeper.core.model import Decision, Policy, Reason, Verdict
from gatekeeper.statedb import StateDB, confirm_written
from gatekeeper.statedb.worker import StateOperationError


class Terms:
    """Listed after the Enforcer: it reads the decision and only acts on allowed flows."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.acknowledged: set[tuple[str, str, str]] = set()  # (employee, service, terms_url)

    def endpoints(self) -> dict[str, Handler]:
        """The portal endpoint this addon answers."""
        return {ACKNOWLEDGE_TERMS_PATH: self.acknowledge}

    def running(self) -> None:
        """Read the acceptances into memory (the state was opened by Lifecycle.running, which
        runs first); a damaged database leaves none: the terms are asked for again."""
        worker = self.runtime.state_worker
        if worker is None:
            return
        try:
            acknowledgements = worker.call("load_acknowledgements",
                                           lambda db: db.acknowledgements(), reading=True)
        except StateOperationError:
            return  # logged and counted by the worker
        self.acknowledged = {(a.employee, a.service, a.terms_url) for a in acknowledgements}

    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """Synchronous, except in one of several workers (`serve --workers`) when the terms
        look unaccepted: another worker may have recorded the acceptance."""
        context = decided(flow)
        if flow.response is not None or context is None:
            return None
        decision = context.decision
        if decision.verdict is not Verdict.ALLOW or decision.reason is not Reason.APPROVED:
            return None
        terms_url = self.pending_terms(context.policy, decision)
        if terms_url is None or _is_terms_page(flow, terms_url):
            return None
        if self.runtime.in_pool:
            return self._ask_unless_accepted_elsewhere(flow, context, terms_url)
        self._ask(flow, context, terms_url)
        return None

    async def _ask_unless_accepted_elsewhere(self, flow: http.HTTPFlow, context: FlowContext,
                                             terms_url: str) -> None:
        if not await self._accepted_elsewhere(context.decision, terms_url):
            self._ask(flow, context, terms_url)

    def _ask(self, flow: http.HTTPFlow, context: FlowContext, terms_url: str) -> None:
        """Block the flow with the Terms-of-Use interstitial."""
        decision = context.decision
        context.terms_url = terms_url  # the interstitial links to them
        blocked = Decision(Verdict.BLOCK, Reason.TERMS_NOT_ACKNOWLEDGED, decision.service,
                           decision.employee)
        enforce(self.runtime, flow, context, blocked)

    def pending_terms(self, policy: Policy, decision: Decision) -> str | None:
        """The terms URL the employee still has to accept for this service, if any."""
        employee, service_id = decision.employee, decision.service or ""
        grant = policy.grants.get((employee or "", service_id))
        service = policy.services.get(service_id)
        if (grant is None or service is None or not service.terms_url
                or not policy.terms_required(grant)):
            return None
        if (grant.employee, service_id, service.terms_url) in self.acknowledged:
            return None
        return service.terms_url

    async def _accepted_elsewhere(self, decision: Decision, terms_url: str) -> bool:
        """With several proxy workers: whether another one recorded the acceptance (read
        from the shared database, off the loop; every acceptance read is kept)."""
        try:
            acknowledgements = await self.runtime.state_call(
                "read_acknowledgements", lambda db: db.acknowledgements())
        except StateOperationError:
            return False  # logged and counted; the terms are asked for, as with one process
        self.acknowledged |= {(a.employee, a.service, a.terms_url) for a in acknowledgements}
        return (decision.employee, decision.service, terms_url) in self.acknowledged

    # --- the portal endpoint ----------------------------------------------------------------

    async def acknowledge(self, flow: http.HTTPFlow) -> None:
        """Record the acceptance of the service's current terms and go back (303)."""
        context = require_context(flow)
        policy, decision = context.policy, context.decision
        employee, service_id = decision.employee, decision.service or ""
        service = policy.services.get(service_id)
        if decision.verdict is not Verdict.ALLOW or employee is None or service is None:
            raise PortalError(403, "not_allowed", "Your access to this service is not approved, "
                              "so there are no terms to accept.")
        terms_url = service.terms_url
        if not terms_url:
            raise PortalError(404, "no_terms", "This service has no Terms of Use to accept.")
        form = posted_form(flow)
        # The token names the terms URL the page showed: a changed URL needs a fresh page.
        check_csrf(self.runtime, form.get("csrf", ""), TERMS_PURPOSE, employee,
                   responses.terms_subject(service_id, terms_url))
        return_to = safe_return_to(form.get("return_to", ""))
        if return_to is None:
            log.warning("terms_return_to_refused", employee=employee, service=service_id)
            raise PortalError(400, "bad_return_to", "The address to go back to is not a page "
                              "of this site.")
        accepted = (employee, service_id, terms_url)
        now = dt.datetime.now(dt.UTC)

        def record(db: StateDB) -> None:
            """On the state worker: the acceptance, read back as the review will read it."""
            db.acknowledge(employee, service_id, terms_url, now)
            confirm_written(db, "the acceptance of the terms", lambda reader: accepted in {
                (a.employee, a.service, a.terms_url) for a in reader.acknowledgements()})

        try:
            await self.runtime.state_call("acknowledge_terms", record)
        except StateOperationError as e:
            log.warning("terms_not_recorded", employee=employee, service=service_id,
                        kind=e.kind)
            flow.response = responses.not_recorded(
                policy, "Your acceptance could not be recorded",
                f"Please try again in a few minutes; if it keeps failing, tell "
                f"{policy.approver}.", return_to)
            return
        self.acknowledged.add(accepted)
        log.info("terms_acknowledged", employee=employee, service=service_id,
                 terms_url=terms_url)
        flow.response = responses.terms_acknowledged(return_to)


def _is_terms_page(flow: http.HTTPFlow, terms_url: str) -> bool:
    """Whether the flow reads exactly the terms page (its host and path, any query)."""
    request = flow.request
    if request.method not in ("GET", "HEAD"):
        return False
    terms = urlsplit(terms_url)
    return (
        normalize_host(request.pretty_host) == normalize_host(terms.hostname or "")
        and request.path.partition("?")[0] == (terms.path or "/")
    )
