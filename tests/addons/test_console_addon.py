"""The approver's console (gatekeeper.addons.console) in process: sign-in (only the approver,
CSRF, back-off), the notification's signed link (tampered, expired, reused, and a GET never
deciding), approving and denying through approvals.yaml and the state database, and a hand
edit of approvals.yaml during a console approval; employees added and removed, a leaver's grant
revoked from the access review, and the activity report."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from support import configs
from support.flows import HTML, cycle, make_flow, make_policy, make_runtime, metric

from gatekeeper.addons import console as console_addon
from gatekeeper.addons.console import Console
from gatekeeper.config.loader import load_policy
from gatekeeper.console.links import LinkSigner
from gatekeeper.console.password import set_password
from gatekeeper.console.sessions import COOKIE, Sessions
from gatekeeper.directory.store import office_policy
from gatekeeper.statedb import ACCOUNT_CREATED, AuditedAction, load_secret

HOST = "gatekeeper.office"
PASSWORD = "a long approver password"
TOMORROW = dt.date.today() + dt.timedelta(days=30)


class Dirs:
    """Declares the directory options the console reads (Lifecycle's, without its reloader)."""

    def load(self, loader) -> None:
        loader.add_option("gatekeeper_config_dir", str, "", "")
        loader.add_option("gatekeeper_state_dir", str, "", "")


class Browser:
    """One browser talking to the console: keeps its cookie, reads the forms' CSRF token."""

    def __init__(self, console: Console, tmp_path: Path, *, user: str | None = None,
                 peer: str = "192.0.2.50") -> None:
        self.console = console
        self.options = {"gatekeeper_console_host": HOST,
                        "gatekeeper_config_dir": str(tmp_path / "config"),
                        "gatekeeper_state_dir": str(tmp_path / "state")}
        self.user = user
        self.peer = peer
        self.cookie: str | None = None
        self.csrf = ""

    def go(self, path: str, fields: dict[str, str] | None = None):
        headers = {"cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}
        if fields is not None:
            headers["content-type"] = "application/x-www-form-urlencoded"
        flow = make_flow(HOST, path, method="GET" if fields is None else "POST", user=self.user,
                         peer=self.peer, accept=HTML, headers=headers,
                         body=urlencode(fields or {}).encode())
        cycle(Dirs(), self.console, flow=flow, **self.options)
        response = flow.response
        if cookie := response.headers.get("set-cookie"):
            self.cookie = cookie.split(";")[0].partition("=")[2]
        if found := re.search(r'name="csrf" value="([^"]*)"', response.get_text()):
            self.csrf = found.group(1)
        return response

    def post(self, path: str, **fields: str):
        return self.go(path, {"csrf": self.csrf, **fields})

    def sign_in(self, password: str = PASSWORD, user: str = configs.APPROVER):
        if not self.csrf:
            self.go("/")
        return self.post("/sign-in", user=user, password=password)


def outcome(response) -> tuple[int, str]:
    return response.status_code, response.headers.get("X-Gatekeeper-Console", "")


@pytest.fixture
def office(tmp_path: Path):
    approvals = configs.approvals_doc()
    approvals["employees"]["ivy"] = {"email": configs.APPROVER}
    policy = make_policy(tmp_path / "config", approvals=approvals)
    runtime = make_runtime(tmp_path, policy)
    set_password(tmp_path / "state", configs.APPROVER, PASSWORD)
    console = Console(runtime)
    console.links = LinkSigner(load_secret(tmp_path / "state"))
    yield runtime, console
    console.done()


def submit(runtime, employee: str = "bob", service: str = "facebook"):
    request, _ = runtime.state.submit_request(employee, service, "patients ask us there",
                                              dt.datetime.now(dt.UTC))
    return request


def test_the_console_answers_itself_with_a_strict_cookie_and_refuses_other_employees(
        office, tmp_path) -> None:
    runtime, console = office
    browser = Browser(console, tmp_path)
    page = browser.go("/")
    assert outcome(page) == (200, "sign_in")
    cookie = page.headers["set-cookie"]
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in cookie
    assert cookie.startswith("__Host-")
    bob = Browser(console, tmp_path, user="bob")  # the proxy knows bob: not the approver
    assert outcome(bob.go("/requests")) == (403, "not_the_approver")
    carol = Browser(console, tmp_path)
    assert outcome(carol.sign_in(user="carol", password="whatever")) == (403, "not_the_approver")
    assert metric(runtime, "gatekeeper_console_sign_ins_total", result="refused") == 2


def test_sign_in_needs_the_form_token_and_the_right_password(office, tmp_path) -> None:
    runtime, console = office
    browser = Browser(console, tmp_path)
    browser.go("/")
    no_token = browser.go("/sign-in", {"user": configs.APPROVER, "password": PASSWORD})
    assert outcome(no_token) == (403, "csrf_invalid")
    wrong = browser.go("/sign-in", {"csrf": browser.csrf[:-4] + "0000",
                                    "user": configs.APPROVER, "password": PASSWORD})
    assert outcome(wrong) == (403, "csrf_invalid")
    other = Browser(console, tmp_path)
    other.go("/")
    stolen = browser.go("/sign-in", {"csrf": other.csrf, "user": "ivy", "password": PASSWORD})
    assert outcome(stolen) == (403, "csrf_invalid")  # another session's token
    assert outcome(browser.sign_in("wrong password")) == (401, "sign_in_rejected")
    before = browser.cookie
    signed_in = browser.sign_in(user="ivy")  # the approver's employee id works too
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/requests")
    assert browser.cookie != before  # a new session id once signed in
    assert outcome(browser.go("/requests")) == (200, "requests")
    assert metric(runtime, "gatekeeper_console_sign_ins_total", result="success") == 1


def test_failed_sign_ins_slow_the_device_down(office, tmp_path, monkeypatch) -> None:
    _, console = office
    held: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        held.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(console_addon.asyncio, "sleep", sleep)
    browser = Browser(console, tmp_path, peer="192.0.2.77")
    for _ in range(3):  # a few typos cost nothing
        assert outcome(browser.sign_in("typo")) == (401, "sign_in_rejected")
    assert held == []
    browser.sign_in("guess")
    browser.sign_in("guess")
    assert held == [1.0, 2.0]  # then each answer waits, doubling
    # Even the right password waits while the device is being slowed down.
    assert browser.sign_in().status_code == 303
    assert held[-1] == 2.0  # as long as the last failure did
    # Another device is not affected.
    assert Browser(console, tmp_path, peer="192.0.2.78").sign_in().status_code == 303
    assert len(held) == 3


def test_a_link_opens_the_request_once_and_never_decides(office, tmp_path) -> None:
    runtime, console = office
    request = submit(runtime)
    token = console.links.token(request.id, time.time())
    link = f"/requests/{request.id}?t={token}"
    scanner = Browser(console, tmp_path)  # a mail scanner following the link
    opened = scanner.go(link)
    assert outcome(opened) == (200, "sign_in")
    assert f"access request {request.id}" in opened.get_text()
    assert runtime.state.get_request(request.id).status == "pending"

    approver = Browser(console, tmp_path)
    approver.go(link)
    signed_in = approver.sign_in()
    assert signed_in.headers["location"] == f"/requests/{request.id}"
    page = approver.go(f"/requests/{request.id}")
    assert outcome(page) == (200, "request")
    assert f'action="/requests/{request.id}/approve"' in page.get_text()
    assert runtime.state.get_request(request.id).status == "pending"  # opening decides nothing

    reused = Browser(console, tmp_path).go(link)
    assert outcome(reused) == (410, "link_used")
    assert outcome(approver.go(link)) == (410, "link_used")
    tampered = f"/requests/{request.id}?t={token[:-1]}{'0' if token[-1] != '0' else '1'}"
    assert outcome(Browser(console, tmp_path).go(tampered)) == (400, "link_invalid")
    other = submit(runtime, "carol", "x")
    assert outcome(Browser(console, tmp_path).go(f"/requests/{other.id}?t={token}")) == (
        400, "link_invalid")  # a link for another request
    expired = console.links.token(other.id, time.time() - 8 * 86400)
    assert outcome(Browser(console, tmp_path).go(f"/requests/{other.id}?t={expired}")) == (
        410, "link_expired")
    assert {r.status for r in runtime.state.all_requests()} == {"pending"}


def test_approving_with_an_expiry_and_denying_with_a_reason(office, tmp_path) -> None:
    runtime, console = office
    first, second = submit(runtime), submit(runtime, "carol", "x")
    approver = Browser(console, tmp_path)
    approver.sign_in()
    approver.go("/requests")
    # Without the token nothing happens.
    assert outcome(approver.go(f"/requests/{first.id}/approve", {})) == (403, "csrf_invalid")
    done = approver.post(f"/requests/{first.id}/approve", expires=TOMORROW.isoformat())
    assert outcome(done) == (200, "approved")
    policy = load_policy(tmp_path / "config")
    grant = policy.grants[("bob", "facebook")]
    assert (grant.expires, grant.approved_by) == (TOMORROW, configs.APPROVER)
    decided = runtime.state.get_request(first.id)
    assert (decided.status, decided.decided_by) == ("approved", configs.APPROVER)
    assert outcome(approver.post(f"/requests/{first.id}/approve")) == (409, "already_decided")

    denied = approver.post(f"/requests/{second.id}/deny", reason="Not needed for reception")
    assert outcome(denied) == (200, "denied")
    request = runtime.state.get_request(second.id)
    assert (request.status, request.decision_reason) == ("denied", "Not needed for reception")
    assert ("carol", "x") not in load_policy(tmp_path / "config").grants
    assert metric(runtime, "gatekeeper_console_changes_total", action="approved") == 1
    assert metric(runtime, "gatekeeper_console_changes_total", action="denied") == 1

    revoked = approver.post("/grants/revoke", employee="bob", service="facebook")
    assert outcome(revoked) == (200, "revoked")
    assert ("bob", "facebook") not in load_policy(tmp_path / "config").grants


def test_a_hand_edit_during_an_approval_is_kept_and_the_approval_refused(
        office, tmp_path) -> None:
    runtime, console = office
    request = submit(runtime)
    approvals = tmp_path / "config" / "approvals.yaml"
    edited = approvals.read_text() + "\n# edited by hand while the console was approving\n"
    console.before_replace = lambda: approvals.write_text(edited)
    approver = Browser(console, tmp_path)
    approver.sign_in()
    approver.go(f"/requests/{request.id}")
    refused = approver.post(f"/requests/{request.id}/approve")
    assert outcome(refused) == (409, "concurrent_edit")
    assert "changed by someone else" in refused.get_text()
    assert approvals.read_text() == edited  # the hand edit stays; nothing of ours is written
    assert runtime.state.get_request(request.id).status == "pending"


def test_plain_http_is_sent_to_https_and_nothing_is_forwarded(office, tmp_path) -> None:
    _, console = office
    flow = make_flow(HOST, "/requests", scheme="http", accept=HTML)
    cycle(Dirs(), console, flow=flow, gatekeeper_console_host=HOST)
    assert (flow.response.status_code, flow.response.headers["location"]) == (
        301, f"https://{HOST}/requests")
    big = make_flow(HOST, "/sign-in", method="POST", body=b"x" * 20000, accept=HTML,
                    headers={"content-type": "application/x-www-form-urlencoded"})
    cycle(Dirs(), console, flow=big, gatekeeper_console_host=HOST)
    assert big.response.status_code == 413


def test_an_idle_session_ends() -> None:
    sessions = Sessions(idle=60)
    session = sessions.new(now=1000.0)
    assert sessions.get(session.id, now=1059.0) is session
    assert sessions.get(session.id, now=1200.0) is None


def test_transparent_tls_naming_the_console_is_intercepted(office) -> None:
    from types import SimpleNamespace

    from support.flows import run_hooks

    from gatekeeper.addons.unnamed import UnnamedConnections

    runtime, console = office

    def hello(sni: str) -> SimpleNamespace:
        return SimpleNamespace(
            context=SimpleNamespace(server=SimpleNamespace(address=("192.0.2.1", 443))),
            client_hello=SimpleNamespace(sni=sni), ignore_connection=False)

    async def handshake(tctx) -> tuple[bool, bool]:
        unnamed = UnnamedConnections(runtime)
        ours, other = hello("Gatekeeper.Office"), hello("bank.example")
        for data in (ours, other):
            unnamed.tls_clienthello(data)  # in chain order: Unnamed first, then the console
            console.tls_clienthello(data)
        return ours.ignore_connection, other.ignore_connection

    assert run_hooks(console, call=handshake, gatekeeper_console_host=HOST) == (False, True)


def test_every_page_of_the_signed_in_approver_and_the_policy_health(office, tmp_path) -> None:
    runtime, console = office
    runtime.metrics.config_load_ok.set(1)  # as the reloader leaves it after a good load
    runtime.state.acknowledge("alice", "linkedin", "https://www.linkedin.com/legal",
                              dt.datetime.now(dt.UTC))
    approver = Browser(console, tmp_path)
    approver.sign_in()
    grants = approver.go("/grants")
    assert outcome(grants) == (200, "grants")
    assert 'data-grant="alice/linkedin"' in grants.get_text()
    assert "alice@clinic.example" in approver.go("/employees").get_text()
    assert "Active grants" in approver.go("/review").get_text()
    assert "https://www.linkedin.com/legal" in approver.go("/acknowledgements").get_text()
    assert 'id="config-ok"' in approver.go("/health").get_text()
    approvals = tmp_path / "config" / "approvals.yaml"
    approvals.write_text(approvals.read_text().replace("mode: enforce", "mode: enforced"))
    health = approver.go("/health").get_text()
    assert 'id="config-problems"' in health
    assert re.search(r"approvals\.yaml:\d+: ", health)
    assert outcome(approver.go("/nowhere")) == (404, "not_found")


def test_without_any_password_the_sign_in_page_says_what_to_do(office, tmp_path) -> None:
    _, console = office
    (tmp_path / "state" / "approver.htpasswd").unlink()
    refused = Browser(console, tmp_path).sign_in()
    assert outcome(refused) == (503, "no_password")
    assert "gatekeeper approver-password" in refused.get_text()


def test_employees_are_added_and_removed_as_with_the_commands(office, tmp_path) -> None:
    runtime, console = office
    approvals = tmp_path / "config" / "approvals.yaml"
    approver = Browser(console, tmp_path)
    approver.sign_in()
    page = approver.go("/employees").get_text()
    assert 'action="/employees/add"' in page and 'name="with_grants"' in page
    assert outcome(approver.go("/employees/add", {"employee": "dora",
                                                  "email": "dora@clinic.example"})) == (
        403, "csrf_invalid")
    added = approver.post("/employees/add", employee="dora", email="dora@clinic.example",
                          addresses="192.0.2.31, 192.0.2.32")
    assert outcome(added) == (200, "employee_added")
    dora = load_policy(tmp_path / "config").employees["dora"]
    assert (dora.email, [str(a) for a in dora.addresses]) == (
        "dora@clinic.example", ["192.0.2.31/32", "192.0.2.32/32"])
    before = approvals.read_text()
    personal = approver.post("/employees/add", employee="eve", email="eve@gmail.com")
    assert outcome(personal) == (400, "refused")  # validated like the command: not written
    assert "eve@gmail.com" in personal.get_text() and approvals.read_text() == before
    again = approver.post("/employees/add", employee="dora", email="dora@clinic.example")
    assert outcome(again) == (400, "refused") and "already" in again.get_text()

    held = approver.post("/employees/remove", employee="alice")
    assert outcome(held) == (409, "holds_grants")
    assert "alice holds grants for linkedin" in held.get_text()
    assert "alice" in load_policy(tmp_path / "config").employees
    removed = approver.post("/employees/remove", employee="alice", with_grants="yes")
    assert outcome(removed) == (200, "employee_removed")
    assert "their grants for linkedin" in removed.get_text()
    policy = load_policy(tmp_path / "config")
    assert "alice" not in policy.employees and ("alice", "linkedin") not in policy.grants
    assert outcome(approver.post("/employees/remove", employee="dora")) == (
        200, "employee_removed")
    assert metric(runtime, "gatekeeper_console_changes_total", action="employee_added") == 1
    assert metric(runtime, "gatekeeper_console_changes_total", action="employee_removed") == 2


def test_extending_records_who_and_when_in_the_grant(office, tmp_path) -> None:
    runtime, console = office
    approver = Browser(console, tmp_path)
    approver.sign_in()
    approver.go("/grants")
    extended = approver.post("/grants/extend", employee="alice", service="linkedin",
                             expires=TOMORROW.isoformat())
    assert outcome(extended) == (200, "extended")
    grant = load_policy(tmp_path / "config").grants[("alice", "linkedin")]
    assert (grant.expires, grant.approved_by, grant.approved_on) == (
        TOMORROW, configs.APPROVER, dt.date.today())
    assert metric(runtime, "gatekeeper_console_changes_total", action="extended") == 1


def test_a_hand_edit_during_an_employee_change_is_kept_and_the_change_refused(
        office, tmp_path) -> None:
    _, console = office
    approvals = tmp_path / "config" / "approvals.yaml"
    edited = approvals.read_text() + "\n# edited by hand while the console was adding\n"
    console.before_replace = lambda: approvals.write_text(edited)
    approver = Browser(console, tmp_path)
    approver.sign_in()
    approver.go("/employees")
    refused = approver.post("/employees/add", employee="dora", email="dora@clinic.example")
    assert outcome(refused) == (409, "concurrent_edit")
    assert "changed by someone else" in refused.get_text()
    assert approvals.read_text() == edited


def test_the_review_offers_to_revoke_a_leavers_grant(tmp_path) -> None:
    approvals = configs.approvals_doc()
    approvals["employees"]["ivy"] = {"email": configs.APPROVER}
    approvals["grants"].append(configs.grant("frank", "x"))  # frank left the directory group
    config = configs.write_config(tmp_path / "config", approvals=approvals)
    password = tmp_path / "bind-password"
    password.write_text("secret\n")
    password.chmod(0o600)
    (config / "gateway.yaml").write_text(yaml.safe_dump({
        "mode": "explicit", "lan": {"networks": ["192.0.2.0/24"]},
        "directory": {"preset": "openldap", "url": "ldaps://dc.clinic.example",
                      "bind_dn": "cn=gk,dc=clinic,dc=example",
                      "bind_password_file": str(password), "base_dn": "dc=clinic,dc=example"}}))
    runtime = make_runtime(tmp_path, office_policy(config))
    set_password(tmp_path / "state", configs.APPROVER, PASSWORD)
    console = Console(runtime)
    console.links = LinkSigner(load_secret(tmp_path / "state"))
    try:
        approver = Browser(console, tmp_path)
        approver.sign_in()
        review = approver.go("/review").get_text()
        row = re.search(r'<tr data-grant="frank/x">.*?</tr>', review, re.S)
        assert row and 'action="/grants/revoke"' in row.group(0)
        assert 'data-grant="alice/linkedin"' not in review  # only leavers get the button here
        assert outcome(approver.post("/grants/revoke", employee="frank", service="x")) == (
            200, "revoked")
        assert ("frank", "x") not in load_policy(config).grants
        assert metric(runtime, "gatekeeper_console_changes_total", action="revoked") == 1
    finally:
        console.done()


def test_the_activity_page_is_the_activity_report_with_its_filters(office, tmp_path) -> None:
    runtime, console = office
    now = dt.datetime.now(dt.UTC)
    runtime.state.record_many([
        AuditedAction("bob", "facebook", "group_joined", now - dt.timedelta(hours=2),
                      target="group-4711"),
        AuditedAction("alice", "linkedin", "connection_request_sent",
                      now - dt.timedelta(hours=1), target="profile-42"),
        AuditedAction("alice", "linkedin", ACCOUNT_CREATED, now - dt.timedelta(days=45),
                      target="a***@clinic.example"),
    ])
    approver = Browser(console, tmp_path)
    assert outcome(approver.go("/activity")) == (200, "sign_in")  # nothing without sign-in
    approver.sign_in()
    page = approver.go("/activity")
    assert outcome(page) == (200, "activity")
    text = page.get_text()
    assert "group-4711" in text and "profile-42" in text
    assert "a***@clinic.example" not in text  # 45 days ago: before the default 30 days
    row = re.search(r'<tr data-row="bob/facebook">(.*?)</tr>', text, re.S)
    assert row and [int(n) for n in re.findall(r"<td>(\d+)</td>", row.group(1))] == [
        0, 0, 1, 0, 0, 0]  # one group joined
    since = (now - dt.timedelta(days=60)).date().isoformat()
    older = approver.go(f"/activity?since={since}&employee=alice&service=").get_text()
    assert "a***@clinic.example" in older and "profile-42" in older
    assert "group-4711" not in older
    assert "group-4711" in approver.go("/activity?service=facebook").get_text()
    assert 'id="no-activity"' in approver.go("/activity?employee=carol").get_text()
    assert outcome(approver.go("/activity?since=yesterday")) == (400, "refused")
