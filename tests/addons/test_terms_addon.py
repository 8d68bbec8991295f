"""Terms of Use (gatekeeper.addons.terms) in process: the interstitial, its acknowledgement
through the portal, and the terms page itself passing."""

from __future__ import annotations

import re

import pytest
from support.flows import HTML, cycle, form_post, make_flow, make_policy, make_runtime, metric

from gatekeeper.addons.context import context_of
from gatekeeper.addons.enforce import AllowedCounter, Enforcer
from gatekeeper.addons.portal import Portal
from gatekeeper.addons.terms import Terms
from gatekeeper.core.model import Reason

TERMS = "https://www.linkedin.com/legal/user-agreement"


@pytest.fixture
def runtime(tmp_path, services, approvals):
    approvals["require_terms_acknowledgement"] = True
    return make_runtime(tmp_path, make_policy(tmp_path / "config", services=services,
                                              approvals=approvals))


def chain(runtime):
    terms = Terms(runtime)
    return terms, (Portal(runtime, terms.endpoints()), Enforcer(runtime), terms,
                   AllowedCounter(runtime))


def test_a_browser_gets_the_interstitial_an_api_client_the_json_403(runtime) -> None:
    _, addons = chain(runtime)
    page = cycle(*addons, flow=make_flow("www.linkedin.com", "/feed/", user="alice",
                                         accept=HTML))
    assert page.response.status_code == 403
    assert page.response.headers["X-Gatekeeper-Reason"] == "terms_not_acknowledged"
    assert "frame-ancestors 'none'" in page.response.headers["Content-Security-Policy"]
    assert TERMS in page.response.get_text()
    api = cycle(*addons, flow=make_flow("www.linkedin.com", "/voyager/api", user="alice"))
    assert api.response.headers["Content-Type"] == "application/json"
    assert api.response.headers["X-Gatekeeper-Reason"] == "terms_not_acknowledged"
    assert metric(runtime, "gatekeeper_blocked_total", reason="terms_not_acknowledged") == 2
    assert metric(runtime, "gatekeeper_allowed_total") == 0


def test_the_terms_page_itself_passes(runtime) -> None:
    _, addons = chain(runtime)
    flow = cycle(*addons, flow=make_flow("www.linkedin.com", "/legal/user-agreement?x=1",
                                         user="alice", accept=HTML))
    assert flow.response.status_code == 200
    assert context_of(flow).decision.reason is Reason.APPROVED


def test_accepting_the_terms_lets_the_employee_through(runtime) -> None:
    terms, addons = chain(runtime)
    page = cycle(*addons, flow=make_flow("www.linkedin.com", "/feed/", user="alice",
                                         accept=HTML)).response.get_text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    post = form_post("www.linkedin.com", "/.well-known/gatekeeper/acknowledge-terms",
                     {"csrf": csrf, "return_to": "/feed/"}, user="alice")
    cycle(*addons, flow=post)
    assert post.response.status_code == 303
    assert post.response.headers["Location"] == "/feed/"
    assert post.response.headers["X-Gatekeeper-Portal"] == "terms_acknowledged"
    assert ("alice", "linkedin", TERMS) in terms.acknowledged
    again = cycle(*addons, flow=make_flow("www.linkedin.com", "/feed/", user="alice"))
    assert again.response.status_code == 200
    assert metric(runtime, "gatekeeper_allowed_total", service="linkedin") == 1


def test_a_forged_acknowledgement_is_refused(runtime) -> None:
    terms, addons = chain(runtime)
    post = form_post("www.linkedin.com", "/.well-known/gatekeeper/acknowledge-terms",
                     {"csrf": "forged", "return_to": "/feed/"}, user="alice")
    cycle(*addons, flow=post)
    assert post.response.status_code == 403
    assert post.response.headers["X-Gatekeeper-Portal"] == "csrf_invalid"
    assert terms.acknowledged == set()


def test_the_acceptances_are_read_back_at_start(runtime) -> None:
    import datetime as dt

    runtime.state_worker.call("seed", lambda db: db.acknowledge(
        "alice", "linkedin", TERMS, dt.datetime.now(dt.UTC)))
    terms = Terms(runtime)
    terms.running()
    assert terms.acknowledged == {("alice", "linkedin", TERMS)}
