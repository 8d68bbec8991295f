"""The credential guard and token sessions in process (gatekeeper.addons.accounts): a password
where no login rule applies is refused, ordinary posts pass, a token handed out by a checked
login is bound and an unbound one refused."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from mitmproxy.test import tutils
from support import configs
from support.flows import cycle, make_flow, metric

from gatekeeper.addons.accounts import Accounts
from gatekeeper.addons.enforce import AllowedCounter, Enforcer

FORM = {"content-type": "application/x-www-form-urlencoded"}
LINKEDIN = {
    "name": "LinkedIn",
    "domains": ["linkedin.com", "licdn.com"],
    "logins": [{"path": "^/checkpoint/lg/login-submit", "fields": ["session_key"]}],
    "session": {"cookie": "li_at", "headers": ["Authorization"],
                "issued": {"fields": ["access_token"]}},
}


@pytest.fixture
def services() -> configs.Doc:
    return configs.services_doc(linkedin=LINKEDIN)


def run(runtime, accounts: Accounts, flow, **kwargs):
    return cycle(Enforcer(runtime), accounts, AllowedCounter(runtime), flow=flow,
                 gatekeeper_max_login_body=4096, **kwargs)


def post(path: str, body: bytes, headers: dict[str, str] | None = None):
    return make_flow("www.linkedin.com", path, method="POST", user="alice",
                     headers={**FORM, **(headers or {})}, body=body)


def test_a_password_where_no_rule_applies_is_refused(runtime, accounts) -> None:
    flow = run(runtime, accounts, post("/uas/authenticate", b"session_key=me&session_password=x"))
    assert flow.response.headers["X-Gatekeeper-Reason"] == "unverifiable_login"
    assert metric(runtime, "gatekeeper_logins_total", result="unrecognized") == 1


def test_basic_authorization_is_refused_on_its_headers(runtime, accounts) -> None:
    flow = run(runtime, accounts, post("/api/x", b"", {"authorization": "Basic bWU6eA=="}))
    assert flow.response.headers["X-Gatekeeper-Reason"] == "unverifiable_login"


def test_an_ordinary_post_passes(runtime, accounts) -> None:
    flow = run(runtime, accounts, post("/voyager/api/messaging", b"text=hello&to=1"))
    assert flow.response.status_code == 200
    assert metric(runtime, "gatekeeper_logins_total", result="unrecognized") == 0


def test_a_token_from_a_checked_login_is_bound_and_a_forged_one_refused(runtime,
                                                                        accounts) -> None:
    answer = tutils.tresp(headers=((b"content-type", b"application/json"),),
                          content=json.dumps({"access_token": "TOKEN1"}).encode())
    login = post("/checkpoint/lg/login-submit",
                 urlencode({"session_key": "alice@clinic.example"}).encode())
    run(runtime, accounts, login, upstream=answer)
    assert accounts.sessions.owner("linkedin", "TOKEN1") == "alice"
    mine = run(runtime, accounts, make_flow("www.linkedin.com", "/feed/", user="alice",
                                            headers={"authorization": "Bearer TOKEN1"}))
    assert mine.response.status_code == 200
    forged = run(runtime, accounts, make_flow("www.linkedin.com", "/feed/", user="alice",
                                              headers={"authorization": "Bearer FORGED"}))
    assert forged.response.headers["X-Gatekeeper-Reason"] == "unverified_session"
