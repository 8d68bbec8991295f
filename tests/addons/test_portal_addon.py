"""The proxy's own endpoints (gatekeeper.addons.portal) in process: the request-access form
from the block page to the state database, and the refusals."""

from __future__ import annotations

import re

from support.flows import HTML, cycle, form_post, make_flow, metric

from gatekeeper.addons.destinations import GatewayDestinations
from gatekeeper.addons.enforce import Enforcer
from gatekeeper.addons.portal import Portal

REQUEST = "/.well-known/gatekeeper/request-access"


def request_form_token(runtime, user: str) -> str:
    page = cycle(Enforcer(runtime), flow=make_flow("www.facebook.com", "/groups/1", user=user,
                                                   accept=HTML)).response.get_text()
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_a_request_from_the_block_page_is_recorded_and_confirmed(runtime) -> None:
    portal = Portal(runtime)
    post = form_post("www.facebook.com", REQUEST, {
        "csrf": request_form_token(runtime, "bob"), "return_to": "/groups/1",
        "justification": "Patient outreach page"}, user="bob")
    cycle(portal, GatewayDestinations(runtime), Enforcer(runtime), flow=post,
          gatekeeper_requests_per_hour=5)
    assert post.response.status_code == 200
    assert post.response.headers["X-Gatekeeper-Portal"] == "request_recorded"
    assert "Patient outreach page" in post.response.get_text()
    pending = runtime.state.pending_requests()
    assert [(r.employee, r.service) for r in pending] == [("bob", "facebook")]
    assert metric(runtime, "gatekeeper_access_requests_total", service="facebook") == 1


def test_an_allowed_employee_has_nothing_to_request(runtime) -> None:
    post = form_post("www.linkedin.com", REQUEST, {"csrf": "x"}, user="alice")
    cycle(Portal(runtime), flow=post, gatekeeper_requests_per_hour=5)
    assert post.response.headers["X-Gatekeeper-Portal"] == "already_allowed"


def test_a_forged_token_and_a_get_are_refused_and_never_forwarded(runtime) -> None:
    post = form_post("www.facebook.com", REQUEST, {"csrf": "forged", "justification": "x"},
                     user="bob")
    cycle(Portal(runtime), Enforcer(runtime), flow=post, gatekeeper_requests_per_hour=5)
    assert (post.response.status_code, post.response.headers["X-Gatekeeper-Portal"]) == (
        403, "csrf_invalid")
    get = make_flow("www.facebook.com", "/.well-known/gatekeeper/REQUEST-access/", user="bob")
    cycle(Portal(runtime), Enforcer(runtime), flow=get, gatekeeper_requests_per_hour=5)
    assert (get.response.status_code, get.response.headers["X-Gatekeeper-Portal"]) == (
        405, "method_not_allowed")
    unknown = form_post("www.facebook.com", "/.well-known/gatekeeper/admin", {}, user="bob")
    cycle(Portal(runtime), Enforcer(runtime), flow=unknown, gatekeeper_requests_per_hour=5)
    assert unknown.response.status_code == 404
    assert runtime.state.pending_requests() == []


def test_the_same_path_on_another_site_is_that_sites_business(runtime) -> None:
    flow = form_post("example.org", REQUEST, {"csrf": "x"}, user="bob")
    cycle(Portal(runtime), flow=flow, gatekeeper_requests_per_hour=5)
    assert flow.response.status_code == 200  # the upstream's


def test_an_unknown_employee_cannot_request(runtime) -> None:
    post = form_post("www.facebook.com", REQUEST, {"csrf": "x"})
    cycle(Portal(runtime), flow=post, gatekeeper_requests_per_hour=5)
    assert (post.response.status_code, post.response.headers["X-Gatekeeper-Portal"]) == (
        403, "unknown_employee")


def test_the_block_page_says_where_the_employees_request_stands(runtime) -> None:
    import datetime as dt

    from support import configs

    from gatekeeper.addons.portal import RequestStatus

    def block_page(user: str, host: str) -> str:
        flow = make_flow(host, "/feed", user=user, accept=HTML)
        cycle(Enforcer(runtime), RequestStatus(runtime), flow=flow)
        assert flow.response.status_code == 403
        return flow.response.get_text()

    now = dt.datetime.now(dt.UTC)
    assert 'id="request-state"' not in block_page("bob", "www.facebook.com")  # never asked
    request, _ = runtime.state.submit_request("bob", "facebook", "patients ask", now)
    pending = block_page("bob", "www.facebook.com")
    assert 'data-status="pending"' in pending
    assert 'id="request-access"' not in pending  # no second form while it waits
    runtime.state.decide_request(request.id, "denied", configs.APPROVER, "Not for reception",
                                 now)
    denied = block_page("bob", "www.facebook.com")
    assert 'data-status="denied"' in denied
    assert '<span id="denial-reason">Not for reception</span>' in denied
    assert now.astimezone().strftime("%Y-%m-%d") in denied
    assert 'id="request-access"' in denied  # a way to ask again
    # carol's LinkedIn grant has expired: her approved request says so.
    approved, _ = runtime.state.submit_request("carol", "linkedin", "recruiting", now)
    runtime.state.decide_request(approved.id, "approved", configs.APPROVER, None, now)
    expired = block_page("carol", "www.linkedin.com")
    assert 'id="approval-expired"' in expired and 'id="request-access"' in expired


def test_a_notification_carries_the_signed_console_link(runtime) -> None:
    import time
    from urllib.parse import parse_qs, urlsplit

    from support.flows import run_hooks

    from gatekeeper.addons.console import Console
    from gatekeeper.console.links import LinkSigner, LinkState
    from gatekeeper.statedb import load_secret

    portal = Portal(runtime)
    portal.links = LinkSigner(load_secret(runtime.state.state_dir))

    async def link(tctx) -> str | None:
        return portal.console_url("abcd2345")

    url = run_hooks(Console(runtime), call=link)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https", "gatekeeper.office", "/requests/abcd2345")
    token = parse_qs(parts.query)["t"][0]
    assert portal.links.check("abcd2345", token, time.time()) is LinkState.VALID
    assert run_hooks(Console(runtime), call=link, gatekeeper_console_host="") is None
