"""Issue 4, proxy side, end to end: the "Request access" form and the Terms-of-Use interstitial,
answered by a real `gatekeeper serve` on governed hosts, with real HTTPS sites on loopback.
The state database the proxy writes is read back with `StateDB` (another process, as the
approver's CLI would)."""

from __future__ import annotations

import html
import re
import time

import pytest
import requests
from support import configs

from gatekeeper.state import StateDB

pytestmark = pytest.mark.e2e  # starts a real proxy process

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
AUTH_ANY = ["--set", "proxyauth=any"]
REQUEST_ACCESS = "/.well-known/gatekeeper/request-access"
ACKNOWLEDGE = "/.well-known/gatekeeper/acknowledge-terms"
TIMEOUT = 10
TERMS_PATH = "/legal/user-agreement"


def hidden(page: str, name: str) -> str:
    """The value of a hidden form field in a page the proxy served."""
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} field in the page"
    return html.unescape(match.group(1))


def block_page(session: requests.Session, url: str) -> str:
    reply = session.get(url, headers=BROWSER, timeout=TIMEOUT)
    assert reply.status_code == 403
    return reply.text


def post(session: requests.Session, url: str, **fields: str) -> requests.Response:
    return session.post(url, data=fields, headers=BROWSER, timeout=TIMEOUT,
                        allow_redirects=False)


def outcome(reply: requests.Response) -> tuple[int, str | None]:
    return reply.status_code, reply.headers.get("X-Gatekeeper-Portal")


def requests_in(proxy) -> list:
    with StateDB(proxy.state_dir) as db:
        return db.all_requests()


# --- request access -----------------------------------------------------------------------------


def test_request_access_needs_the_right_token_and_never_reaches_upstream(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    facebook = fake_sites.facebook
    bob = proxy.session("bob", "pw")
    page = block_page(bob, facebook.url("/groups/clinic?ref=1"))
    assert 'id="request-access"' in page
    token = hidden(page, "csrf")
    assert hidden(page, "return_to") == "/groups/clinic?ref=1"
    target = facebook.url(REQUEST_ACCESS)

    assert outcome(post(bob, target, justification="patients ask")) == (403, "csrf_invalid")
    forged = token.split(".")[0] + "." + "0" * 64
    assert outcome(post(bob, target, csrf=forged, justification="x")) == (403, "csrf_invalid")
    # Another employee's token, and a token for another service, are refused too.
    assert outcome(post(proxy.session("carol", "pw"), target, csrf=token,
                        justification="x")) == (403, "csrf_invalid")
    assert outcome(post(bob, fake_sites.x.url(REQUEST_ACCESS), csrf=token,
                        justification="x")) == (403, "csrf_invalid")
    assert requests_in(proxy) == []

    reply = post(bob, target, csrf=token, justification="We answer patients' questions there.",
                 return_to="/groups/clinic?ref=1")
    assert outcome(reply) == (200, "request_recorded")
    assert configs.APPROVER in reply.text
    [recorded] = requests_in(proxy)
    assert (recorded.employee, recorded.service, recorded.status) == ("bob", "facebook", "pending")
    assert recorded.justification == "We answer patients' questions there."
    assert recorded.id in reply.text
    assert 'href="/groups/clinic?ref=1"' in reply.text

    # The same pair again updates the pending request instead of adding one.
    again = post(bob, target, csrf=token, justification="Also for the clinic's page.")
    assert outcome(again) == (200, "request_updated")
    [updated] = requests_in(proxy)
    assert (updated.id, updated.justification) == (recorded.id, "Also for the clinic's page.")

    # The proxy answered every post itself: the site saw no connection at all.
    assert facebook.connections == 0 and facebook.requests == []
    assert proxy.metric("gatekeeper_access_requests_total", service="facebook") == 1
    events = proxy.events("access_requested")
    assert [(e["employee"], e["service"], e["created"]) for e in events] == [
        ("bob", "facebook", True), ("bob", "facebook", False)]
    assert "patients" not in proxy.stdout + proxy.stderr  # the justification stays out of logs
    proxy.wait_for_metric("gatekeeper_access_requests_pending", 1)


def test_request_access_refuses_other_methods_and_unknown_employees(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    facebook = fake_sites.facebook
    reply = proxy.session("bob", "pw").get(facebook.url(REQUEST_ACCESS), headers=BROWSER,
                                           timeout=TIMEOUT)
    assert outcome(reply) == (405, "method_not_allowed")
    # Someone the proxy cannot identify gets the block page without a form, and cannot post.
    stranger = proxy.session("mallory", "pw")  # not an employee
    page = block_page(stranger, facebook.url("/"))
    assert "request-access" not in page
    reply = post(stranger, facebook.url(REQUEST_ACCESS), csrf="1.abc", justification="x")
    assert outcome(reply) == (403, "unknown_employee")
    # On a site that is not governed, the path is that site's own.
    bank = fake_sites.bank
    assert proxy.session("bob", "pw").post(bank.url(REQUEST_ACCESS, scheme="http"), data={"a": "b"},
                                           timeout=TIMEOUT).status_code == 200
    assert len(bank.requests_to(REQUEST_ACCESS)) == 1
    assert facebook.connections == 0


def test_expired_grant_offers_the_form_and_an_empty_justification_is_refused(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    linkedin = fake_sites.linkedin
    carol = proxy.session("carol", "pw")
    page = block_page(carol, linkedin.url("/feed"))
    assert 'data-reason="expired"' in page
    token = hidden(page, "csrf")
    reply = post(carol, linkedin.url(REQUEST_ACCESS), csrf=token, justification="  ")
    assert outcome(reply) == (400, "invalid_form")
    assert requests_in(proxy) == []
    reply = post(carol, linkedin.url(REQUEST_ACCESS), csrf=token, justification="renewal")
    assert outcome(reply) == (200, "request_recorded")


def test_requests_are_rate_limited_per_employee(gk, fake_sites):
    proxy = gk(args=[*AUTH_ANY, "--set", "gatekeeper_requests_per_hour=2"])
    bob = proxy.session("bob", "pw")
    for site in (fake_sites.facebook, fake_sites.x):
        token = hidden(block_page(bob, site.url("/")), "csrf")
        reply = post(bob, site.url(REQUEST_ACCESS), csrf=token, justification="work")
        assert outcome(reply) == (200, "request_recorded")
    linkedin = fake_sites.linkedin
    token = hidden(block_page(bob, linkedin.url("/")), "csrf")
    reply = post(bob, linkedin.url(REQUEST_ACCESS), csrf=token, justification="work")
    assert outcome(reply) == (429, "rate_limited")
    assert reply.headers["Retry-After"] == "3600"
    assert sorted(r.service for r in requests_in(proxy)) == ["facebook", "x"]
    # The limit is per employee: carol may still ask.
    carol = proxy.session("carol", "pw")
    token = hidden(block_page(carol, linkedin.url("/")), "csrf")
    assert outcome(post(carol, linkedin.url(REQUEST_ACCESS), csrf=token,
                        justification="work")) == (200, "request_recorded")


# --- Terms of Use ------------------------------------------------------------------------------


def terms_config(tmp_path, fake_sites, terms_path: str = TERMS_PATH):
    services = configs.services_doc(linkedin={
        "name": "LinkedIn", "domains": ["linkedin.com", "licdn.com"],
        "terms_url": fake_sites.linkedin.url(terms_path),
    })
    approvals = configs.approvals_doc()
    approvals["require_terms_acknowledgement"] = True
    return configs.write_config(tmp_path / "terms-config", services=services, approvals=approvals)


def test_terms_interstitial_then_acknowledgement_returns_to_the_page(gk, fake_sites, tmp_path):
    config = terms_config(tmp_path, fake_sites)
    proxy = gk(config, args=AUTH_ANY)
    linkedin = fake_sites.linkedin
    alice = proxy.session("alice", "pw")

    first = alice.get(linkedin.url("/feed?tab=1"), headers=BROWSER, timeout=TIMEOUT)
    assert first.status_code == 403
    assert first.headers["X-Gatekeeper-Reason"] == "terms_not_acknowledged"
    assert 'id="accept-terms"' in first.text
    assert html.escape(linkedin.url(TERMS_PATH)) in first.text
    assert "frame-ancestors 'none'" in first.headers["Content-Security-Policy"]
    token, return_to = hidden(first.text, "csrf"), hidden(first.text, "return_to")
    assert return_to == "/feed?tab=1"
    # Other clients get the plain 403; the terms page itself is reachable on the site.
    api = alice.get(linkedin.url("/voyager/api/me"), timeout=TIMEOUT)
    assert (api.status_code, api.json()["reason"]) == (403, "terms_not_acknowledged")
    assert alice.get(linkedin.url(TERMS_PATH), timeout=TIMEOUT).status_code == 200
    assert linkedin.requests_to("/feed") == []

    target = linkedin.url(ACKNOWLEDGE)
    assert outcome(post(alice, target, return_to=return_to)) == (403, "csrf_invalid")
    assert outcome(post(proxy.session("bob", "pw"), target, csrf=token,
                        return_to=return_to)) == (403, "not_allowed")
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "feed"):
        reply = post(alice, target, csrf=token, return_to=evil)
        assert outcome(reply) == (400, "bad_return_to"), evil
        assert "Location" not in reply.headers
    with StateDB(proxy.state_dir) as db:
        assert db.acknowledgements() == []

    accepted = post(alice, target, csrf=token, return_to=return_to)
    assert outcome(accepted) == (303, "terms_acknowledged")
    assert accepted.headers["Location"] == "/feed?tab=1"
    page = alice.get(linkedin.url("/feed?tab=1"), headers=BROWSER, timeout=TIMEOUT)
    assert page.status_code == 200 and "hello from" in page.text
    with StateDB(proxy.state_dir) as db:
        [ack] = db.acknowledgements()
    assert (ack.employee, ack.service, ack.terms_url) == ("alice", "linkedin",
                                                          linkedin.url(TERMS_PATH))
    assert linkedin.requests_to(ACKNOWLEDGE) == []
    assert proxy.metric("gatekeeper_blocked_total", service="linkedin",
                        reason="terms_not_acknowledged") >= 2

    # A new terms URL asks again, live, and the old page's token no longer fits.
    (config / "services.yaml").write_text(
        (config / "services.yaml").read_text().replace(TERMS_PATH, "/legal/v2"))
    deadline = time.monotonic() + 5
    while True:
        again = alice.get(linkedin.url("/feed"), headers=BROWSER, timeout=TIMEOUT)
        if again.status_code == 403 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert again.headers["X-Gatekeeper-Reason"] == "terms_not_acknowledged"
    assert outcome(post(alice, target, csrf=token, return_to="/")) == (403, "csrf_invalid")


def test_terms_are_not_asked_without_the_requirement_or_in_report_mode(gk, fake_sites, tmp_path):
    config = terms_config(tmp_path, fake_sites)
    approvals = configs.approvals_doc(mode="report")
    approvals["require_terms_acknowledgement"] = True
    approvals["grants"][0]["require_terms"] = False  # alice: this grant waives it
    approvals["employees"]["dave"] = configs.employee("dave")
    approvals["grants"].append(configs.grant("dave", "linkedin"))
    (config / "approvals.yaml").write_text(configs.to_yaml(approvals))
    proxy = gk(config, args=AUTH_ANY)
    linkedin = fake_sites.linkedin
    for employee in ("alice", "dave"):
        reply = proxy.session(employee, "pw").get(linkedin.url("/feed"), headers=BROWSER,
                                                  timeout=TIMEOUT)
        assert reply.status_code == 200, employee
    assert proxy.metric("gatekeeper_would_block_total", service="linkedin",
                        reason="terms_not_acknowledged") == 1
