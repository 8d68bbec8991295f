"""Company accounts only (gatekeeper.addons.accounts) in process: tenant headers, login
checks, prohibited and audited actions, session cookies bound and refused."""

from __future__ import annotations

from urllib.parse import urlencode

from mitmproxy.test import tutils
from support.flows import cycle, make_flow, metric

from gatekeeper.addons.accounts import Accounts
from gatekeeper.addons.enforce import AllowedCounter, Enforcer

LOGIN = "/checkpoint/lg/login-submit"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def run(runtime, accounts: Accounts, flow, **kwargs):
    return cycle(Enforcer(runtime), accounts, AllowedCounter(runtime), flow=flow,
                 gatekeeper_max_login_body=4096, **kwargs)


def login(user: str, account: str, **kwargs):
    return make_flow("www.linkedin.com", LOGIN, method="POST", user=user, headers=FORM,
                     body=urlencode({"session_key": account, "session_password": "pw"}).encode(),
                     **kwargs)


def test_the_tenant_header_replaces_the_clients_copies(runtime, accounts) -> None:
    flow = make_flow("www.linkedin.com", user="alice",
                     headers={"x-googapps-allowed-domains": "gmail.com"})
    run(runtime, accounts, flow)
    assert flow.request.headers.get_all("X-GoogApps-Allowed-Domains") == ["clinic.example"]


def test_a_company_login_passes_a_personal_one_is_refused(runtime, accounts) -> None:
    company = run(runtime, accounts, login("alice", "Alice@Clinic.example"))
    assert company.response.status_code == 200
    personal = run(runtime, accounts, login("alice", "alice.private@gmail.com"))
    assert personal.response.headers["X-Gatekeeper-Reason"] == "personal_account"
    assert metric(runtime, "gatekeeper_logins_total", result="company") == 1
    assert metric(runtime, "gatekeeper_logins_total", result="personal") == 1
    assert metric(runtime, "gatekeeper_allowed_total", service="linkedin") == 1


def test_a_login_too_large_to_read_is_refused_unread(runtime, accounts) -> None:
    flow = login("alice", "alice@clinic.example")
    flow.request.headers["content-length"] = "100000"
    cycle(Enforcer(runtime), accounts, flow=flow, gatekeeper_max_login_body=4096)
    assert flow.response.headers["X-Gatekeeper-Reason"] == "unverifiable_login"
    assert metric(runtime, "gatekeeper_logins_total", result="unverifiable") == 1


def test_prohibited_refused_audited_recorded(runtime, accounts) -> None:
    prohibited = run(runtime, accounts, make_flow("www.linkedin.com",
                                                  "/mynetwork/import-contacts", user="alice"))
    assert prohibited.response.headers["X-Gatekeeper-Reason"] == "prohibited_action"
    assert b"contact_import" in prohibited.response.content
    audited = run(runtime, accounts, make_flow(
        "www.linkedin.com", "/groups/create", method="POST", user="alice", headers=FORM,
        body=b"kind=group&name=Clinic"))
    assert audited.response.status_code == 200
    assert metric(runtime, "gatekeeper_audited_actions_total", action="group_created") == 1


def test_a_session_set_during_a_company_login_is_bound_to_its_employee(runtime,
                                                                        accounts) -> None:
    upstream = tutils.tresp(headers=((b"set-cookie", b"li_at=SESSION1; Path=/"),))
    run(runtime, accounts, login("alice", "alice@clinic.example"), upstream=upstream)
    assert accounts.sessions.owner("linkedin", "SESSION1") == "alice"
    mine = run(runtime, accounts, make_flow("www.linkedin.com", "/feed/", user="alice",
                                            headers={"cookie": "li_at=SESSION1"}))
    assert mine.response.status_code == 200
    unbound = run(runtime, accounts, make_flow("www.linkedin.com", "/feed/", user="alice",
                                               headers={"cookie": "li_at=NEVER-BOUND"}))
    assert unbound.response.headers["X-Gatekeeper-Reason"] == "unverified_session"
    assert any(v.startswith("li_at=; Max-Age=0")
               for v in unbound.response.headers.get_all("Set-Cookie"))


def test_a_session_set_outside_a_checked_login_is_not_bound(runtime, accounts) -> None:
    upstream = tutils.tresp(headers=((b"set-cookie", b"li_at=SESSION2"),))
    run(runtime, accounts, make_flow("www.linkedin.com", "/feed/", user="alice"),
        upstream=upstream)
    assert accounts.sessions.owner("linkedin", "SESSION2") is None
