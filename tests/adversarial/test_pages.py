"""Pages: the proxy's own endpoints (`/.well-known/gatekeeper/...`) spelled the many ways a
server would still read them. Every request under that prefix on a governed host is answered
by the proxy itself, known or not, and none reaches the upstream with its body."""

from __future__ import annotations

import pytest
from support.rawhttp import request, tunnel

pytestmark = pytest.mark.e2e  # starts a real proxy process

TIMEOUT = 10
FORM = [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "text/html")]
BODY = b"csrf=1.forged&justification=please&return_to=%2F"

REQUEST_ACCESS_SPELLINGS = [
    "/.well-known/gatekeeper/request-access/",
    "//.well-known/gatekeeper/request-access",
    "/.well-known//gatekeeper/request-access",
    "/./.well-known/gatekeeper/request-access",
    "/.well-known/gatekeeper/./request-access",
    "/feed/../.well-known/gatekeeper/request-access",
    "/.well-known/gatekeeper/request-access;x",
    "/.well-known;x/gatekeeper/request-access",
    "/.well-known/gatekeeper/%72equest-access",
    "/%2Ewell-known/gatekeeper/request-access",
    "/.well-known%2Fgatekeeper%2Frequest-access",
    "/.well-known/gatekeeper/request%252daccess",
    "/.well-known\\gatekeeper\\request-access",
    "/.well-known/gatekeeper/REQUEST-ACCESS",
    "/.Well-Known/GateKeeper/Request-Access/",
    "/.well-known/gatekeeper/request-access?next=/",
]


def _post(proxy, site, path: str, user: str = "bob"):
    with tunnel(proxy, site.host, site.https_port, user=user) as sock:
        return request(sock, "POST", path, site.host, FORM, BODY)


@pytest.mark.parametrize("path", REQUEST_ACCESS_SPELLINGS)
def test_request_access_spelling_is_answered_by_the_proxy(gk, fake_sites, path):
    proxy = gk(args=["--set", "proxyauth=any"])
    facebook = fake_sites.facebook
    reply = _post(proxy, facebook, path)
    assert (reply.status, reply.getheader("X-Gatekeeper-Portal")) == (403, "csrf_invalid")
    assert facebook.requests == [] and facebook.connections == 0


@pytest.mark.parametrize(("method", "path", "status", "outcome"), [
    ("POST", "/.well-known/gatekeeper/admin", 404, "not_found"),
    ("GET", "/.well-known/gatekeeper/", 404, "not_found"),
    ("GET", "/.well-known/gatekeeper", 404, "not_found"),
    ("PUT", "/.WELL-KNOWN/GATEKEEPER/anything/else", 404, "not_found"),
    ("GET", "/.well-known/gatekeeper/request-access/", 405, "method_not_allowed"),
    ("DELETE", "//.well-known/gatekeeper/acknowledge-terms", 405, "method_not_allowed"),
])
def test_any_path_under_the_prefix_is_answered_by_the_proxy(gk, fake_sites, method, path,
                                                              status, outcome):
    proxy = gk(args=["--set", "proxyauth=any"])
    facebook = fake_sites.facebook
    with tunnel(proxy, facebook.host, facebook.https_port, user="bob") as sock:
        reply = request(sock, method, path, facebook.host, FORM, BODY)
    assert (reply.status, reply.getheader("X-Gatekeeper-Portal")) == (status, outcome)
    assert facebook.requests == [] and facebook.connections == 0


def test_acknowledge_terms_spelling_is_answered_by_the_proxy(gk, fake_sites):
    proxy = gk(args=["--set", "proxyauth=any"])
    facebook = fake_sites.facebook
    reply = _post(proxy, facebook, "/.well-known/gatekeeper/Acknowledge-Terms/")
    assert (reply.status, reply.getheader("X-Gatekeeper-Portal")) == (403, "not_allowed")
    assert facebook.requests == [] and facebook.connections == 0


def test_plain_http_spelling_is_answered_by_the_proxy(gk, fake_sites):
    proxy = gk(args=["--set", "proxyauth=any"])
    facebook = fake_sites.facebook
    reply = proxy.session("bob", "pw").post(
        facebook.url("/.well-known/GATEKEEPER/request-access/", scheme="http"),
        data=BODY, headers=dict(FORM), timeout=TIMEOUT)
    assert (reply.status_code, reply.headers.get("X-Gatekeeper-Portal")) == (403, "csrf_invalid")
    assert facebook.requests == [] and facebook.connections == 0


def test_an_encoded_or_odd_form_is_415_and_a_large_one_413(gk, fake_sites):
    proxy = gk(args=["--set", "proxyauth=any"])
    facebook = fake_sites.facebook
    path = "/.well-known/gatekeeper/request-access"
    cases = [
        ([("Content-Type", "application/json")], b"{}", 415),
        ([("Content-Type", "application/x-www-form-urlencoded; charset=utf-7")], BODY, 415),
        ([*FORM, ("Content-Encoding", "identity"), ("Content-Encoding", "gzip")], BODY, 415),
        ([*FORM, ("Content-Type", "text/plain")], BODY, 415),
        (FORM, b"csrf=a&csrf=b", 415),  # a repeated field is read differently by servers
        (FORM, b"justification=%ff", 415),  # not UTF-8
        (FORM, b"x=" + b"a" * 20_000, 413),
    ]
    for headers, body, status in cases:
        with tunnel(proxy, facebook.host, facebook.https_port, user="bob") as sock:
            reply = request(sock, "POST", path, facebook.host, headers, body)
        assert reply.status == status, (headers, body[:40])
    assert facebook.requests == [] and facebook.connections == 0


def test_the_prefix_on_a_site_that_is_not_governed_is_that_sites_own(gk, fake_sites):
    proxy = gk(args=["--set", "proxyauth=any"])
    bank = fake_sites.bank
    reply = proxy.session("bob", "pw").post(bank.url("/.well-known/gatekeeper/admin",
                                                     scheme="http"),
                                            data={"a": "b"}, timeout=TIMEOUT)
    assert reply.status_code == 200
    assert len(bank.requests_to("/.well-known/gatekeeper/admin")) == 1
