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
