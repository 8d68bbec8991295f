"""Issue 3 end to end: company accounts only, through the real `gatekeeper serve` process.

A fake LinkedIn on loopback has its own login endpoint that sets a session cookie (`li_at`),
and a second-factor step that sets one too; the tests sign in through the proxy with a
requests client (its cookie jar plays the browser's) and check what the upstream received.
Every test ends by grepping the proxy's log and every file under its state directory for the
passwords, cookie values and personal addresses it used (`Secrets.check`).
"""

from __future__ import annotations

import gzip
import json
import secrets
import urllib.parse
from pathlib import Path

import pytest
import requests
import yaml
from catalog_samples import SAMPLES, filled_services_text
from support import configs
from support.fakesite import FakeSite, RecordedRequest
from support.proxy import GatekeeperProcess, ProxyProcess, can_unshare

pytestmark = pytest.mark.e2e  # starts a real proxy process

TIMEOUT = 10
LIMIT = 4096  # gatekeeper_max_login_body in these tests
LOGIN = "/checkpoint/lg/login-submit"
SECOND_FACTOR = "/checkpoint/challenge/verify"
ALICE = "alice@clinic.example"
BOB = "bob@clinic.example"
HTML = "text/html,application/xhtml+xml,*/*;q=0.8"

LINKEDIN = configs.LINKEDIN_ACCOUNTS


class Secrets:
    """What must never show up in a log line or a state file: proxy passwords, login
    passwords, session cookie values, personal addresses."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def new(self, prefix: str) -> str:
        value = f"{prefix}-{secrets.token_urlsafe(18)}"
        self.values.add(value)
        return value

    def add(self, value: str) -> str:
        self.values.add(value)
        return value

    def check(self, proxy: ProxyProcess, *state_dirs: Path) -> None:
        """Stop the proxy (so its last lines and state writes are out), then grep."""
        if proxy.running:
            proxy.stop()
        sources = {proxy.artifact: proxy.artifact.read_bytes()}
        for state_dir in (proxy.state_dir, *state_dirs):
            for path in state_dir.rglob("*"):
                if path.is_file():
                    sources[path] = path.read_bytes()
        assert len(sources) > 2, "expected the log and state files to grep"
        for value in self.values:
            needles = {value.encode(), urllib.parse.quote(value).encode()}
            for path, data in sources.items():
                for needle in needles:
                    assert needle not in data, f"{value!r} found in {path}"


class FakeLinkedIn:
    """Routes on the linkedin FakeSite: login (sets li_at unless the account has a second
    factor), the second-factor step, a page that plants a session cookie, and the feed."""

    def __init__(self, site: FakeSite, vault: Secrets, second_factor: frozenset[str] = frozenset()):
        self.site = site
        self.vault = vault
        self.second_factor = second_factor
        site.route("POST", LOGIN, self._login)
        site.route("POST", SECOND_FACTOR, lambda request: self._signed_in())
        site.route("GET", "/plant-session", lambda request: self._signed_in())

    def _signed_in(self) -> tuple[int, list[tuple[str, str]], str]:
        value = self.vault.new("li-at")
        cookie = f"li_at={value}; Domain=.linkedin.com; Path=/; Secure; HttpOnly"
        return 200, [("Set-Cookie", cookie), ("Content-Type", "application/json")], "{}"

    def _login(self, request: RecordedRequest) -> tuple[int, list[tuple[str, str]], str]:
        body = request.body
        if request.header("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if any(urllib.parse.quote(account).encode() in body for account in self.second_factor):
            return 200, [("Content-Type", "application/json")], '{"challenge": "pin"}'
        return self._signed_in()

    def logins_received(self) -> int:
        return len(self.site.requests_to(LOGIN))


@pytest.fixture
def vault() -> Secrets:
    return Secrets()


@pytest.fixture
def setup(tmp_path: Path, fake_sites, vault: Secrets):
    """Config (linkedin with all issue-3 rules; alice and bob granted), users with random
    proxy passwords, and the fake LinkedIn routes."""
    approvals = configs.approvals_doc()
    approvals["grants"].append(configs.grant("bob", "linkedin"))
    config = configs.write_config(
        tmp_path / "accounts-config",
        services=configs.services_doc(linkedin=LINKEDIN),
        approvals=approvals,
    )
    passwords = {user: vault.new(f"proxy-{user}") for user in ("alice", "bob")}
    users = configs.write_htpasswd(tmp_path / "users.htpasswd", passwords)
    args = ["--set", f"proxyauth=@{users}", "--set", f"gatekeeper_max_login_body={LIMIT}"]
    linkedin = FakeLinkedIn(fake_sites.linkedin, vault)
    return config, args, passwords, linkedin


def login(session: requests.Session, site: FakeSite, account: str, vault: Secrets,
          **fields: str) -> requests.Response:
    data = {"session_key": account, "session_password": vault.new("login-pw"), **fields}
    return session.post(site.url(LOGIN), data=data, timeout=TIMEOUT)


def li_at(session: requests.Session) -> str | None:
    return session.cookies.get("li_at", domain=".linkedin.com")


def assert_blocked(reply: requests.Response, reason: str, action: str | None = None) -> None:
    assert reply.status_code == 403, reply.text
    assert reply.headers["X-Gatekeeper-Reason"] == reason
    body = {"blocked": True, "service": "linkedin", "reason": reason}
    if action:
        body["action"] = action
    assert reply.json() == body


# --- logins ------------------------------------------------------------------------------------


def test_company_login_passes_binds_and_only_the_bound_session_passes(gk, setup, vault):
    config, args, passwords, linkedin = setup
    proxy = gk(config, args=args)
    alice = proxy.session("alice", passwords["alice"])

    reply = login(alice, linkedin.site, "Alice@Clinic.Example", vault)
    assert reply.status_code == 200
    assert linkedin.logins_received() == 1
    assert li_at(alice)
    proxy.wait_for_log(lambda e: e.get("event") == "session_bound" and e["employee"] == "alice")
    assert alice.get(linkedin.site.url("/feed"), timeout=TIMEOUT).status_code == 200

    forged = proxy.session("alice", passwords["alice"])
    forged_value = vault.new("forged")
    forged.cookies.set("li_at", forged_value, domain=".linkedin.com")
    assert_blocked(forged.get(linkedin.site.url("/feed"), timeout=TIMEOUT), "unverified_session")
    fed = [r for r in linkedin.site.requests_to("/feed") if forged_value in (r.header("cookie")
                                                                               or "")]
    assert fed == []
    assert proxy.metric("gatekeeper_logins_total", service="linkedin", result="company") == 1
    assert proxy.metric("gatekeeper_blocked_total", service="linkedin",
                        reason="unverified_session") == 1
    vault.check(proxy)


REFUSED_LOGINS = [
    # (case, headers, body, reason)
    ("personal address", {}, {"session_key": "alice.private@gmail.com"}, "personal_account"),
    ("a colleague's account", {}, {"session_key": BOB}, "account_mismatch"),
    ("JSON-nested identifier", {"Content-Type": "application/json"},
     json.dumps({"auth": {"steps": [{"session_key": "alice.private@gmail.com"}]}}).encode(),
     "personal_account"),
    ("repeated field hides a personal address", {"Content-Type":
                                                 "application/x-www-form-urlencoded"},
     b"session_key=alice%40clinic.example&session_key=alice.private%40gmail.com",
     "personal_account"),
    ("gzip body", {"Content-Type": "application/x-www-form-urlencoded",
                   "Content-Encoding": "gzip"},
     gzip.compress(b"session_key=alice.private%40gmail.com&session_password=x"),
     "personal_account"),
    ("full-width personal address", {}, {"session_key": "ａｌｉｃｅ＠ＧＭＡＩＬ．ｃｏｍ"},
     "personal_account"),
    ("uppercase colleague", {}, {"session_key": "BOB@CLINIC.EXAMPLE"}, "account_mismatch"),
    ("empty field", {}, {"session_key": "", "session_password": "x"}, "unverifiable_login"),
    ("missing field", {}, {"session_password": "x"}, "unverifiable_login"),
    ("unparseable JSON", {"Content-Type": "application/json"}, b'{"session_key": ',
     "unverifiable_login"),
    ("corrupt gzip", {"Content-Type": "application/x-www-form-urlencoded",
                      "Content-Encoding": "gzip"}, b"\x1f\x8bnot really gzip",
     "unverifiable_login"),
    ("oversized body", {"Content-Type": "application/x-www-form-urlencoded"},
     b"session_key=alice%40clinic.example&pad=" + b"x" * LIMIT, "unverifiable_login"),
    ("gzip bomb", {"Content-Type": "application/x-www-form-urlencoded",
                   "Content-Encoding": "gzip"},
     gzip.compress(b"session_key=alice%40clinic.example&pad=" + b"x" * 100 * LIMIT),
     "unverifiable_login"),
]

ACCEPTED_LOGINS = [
    ("uppercase company address", {}, {"session_key": "ALICE@CLINIC.EXAMPLE"}),
    ("full-width company address", {}, {"session_key": "ａｌｉｃｅ＠ｃｌｉｎｉｃ．ｅｘａｍｐｌｅ"}),
    ("gzip company login", {"Content-Type": "application/x-www-form-urlencoded",
                            "Content-Encoding": "gzip"},
     gzip.compress(b"session_key=alice%40clinic.example&session_password=x")),
    ("multipart company login", {}, None),
]


def test_each_refused_login_gets_its_reason_and_never_reaches_the_upstream(gk, setup, vault):
    config, args, passwords, linkedin = setup
    vault.add("alice.private@gmail.com")
    proxy = gk(config, args=args)
    url = linkedin.site.url(LOGIN)
    expected = {"personal": 0, "mismatch": 0, "unverifiable": 0, "company": 0}
    alice = proxy.session("alice", passwords["alice"])  # one connection: one password check
    for case, headers, body, reason in REFUSED_LOGINS:
        reply = alice.post(url, data=body, headers=headers, timeout=TIMEOUT)
        assert reply.status_code == 403, case
        assert reply.headers["X-Gatekeeper-Reason"] == reason, case
        assert linkedin.logins_received() == 0, case
        expected[{"personal_account": "personal", "account_mismatch": "mismatch",
                  "unverifiable_login": "unverifiable"}[reason]] += 1
    for case, headers, body in ACCEPTED_LOGINS:
        alice.cookies.clear()
        files = {"session_key": (None, ALICE)} if body is None else None
        reply = alice.post(url, data=body, files=files, headers=headers, timeout=TIMEOUT)
        assert reply.status_code == 200, case
        expected["company"] += 1
        assert linkedin.logins_received() == expected["company"], case
    for result, count in expected.items():
        assert proxy.metric("gatekeeper_logins_total", service="linkedin", result=result) \
            == count, result

    refused = proxy.events("login_refused")
    assert {e["identifier"] for e in refused if e["result"] == "personal"} == {"a***@gmail.com"}
    assert {e["account_owner"] for e in refused if e["result"] == "mismatch"} == {"bob"}
    vault.check(proxy)


def test_second_factor_step_completes_a_company_login(gk, setup, vault):
    config, args, passwords, linkedin = setup
    linkedin.second_factor = frozenset({ALICE})
    proxy = gk(config, args=args)
    alice = proxy.session("alice", passwords["alice"])
    assert login(alice, linkedin.site, ALICE, vault).json() == {"challenge": "pin"}
    assert li_at(alice) is None
    reply = alice.post(linkedin.site.url(SECOND_FACTOR), data={"pin": "123456"}, timeout=TIMEOUT)
    assert reply.status_code == 200 and li_at(alice)
    assert alice.get(linkedin.site.url("/feed"), timeout=TIMEOUT).status_code == 200
    vault.check(proxy)


# --- sessions ----------------------------------------------------------------------------------


def test_personal_session_from_before_is_refused_and_expired(gk, setup, vault):
    config, args, passwords, linkedin = setup
    proxy = gk(config, args=args)
    alice = proxy.session("alice", passwords["alice"])

    # A session the browser got outside a checked login (e.g. before the grant): not bound.
    assert alice.get(linkedin.site.url("/plant-session"), timeout=TIMEOUT).status_code == 200
    personal = li_at(alice)
    assert personal
    proxy.wait_for_log(lambda e: e.get("event") == "session_not_bound")

    refused = alice.get(linkedin.site.url("/feed"), headers={"Accept": HTML}, timeout=TIMEOUT)
    assert refused.status_code == 403
    assert refused.headers["X-Gatekeeper-Reason"] == "unverified_session"
    assert "Sign in again with your company account" in refused.text
    expiring = refused.raw.headers.getlist("Set-Cookie")
    assert any("Domain=linkedin.com" in c and "Max-Age=0" in c for c in expiring), expiring
    assert all(c.startswith("li_at=;") for c in expiring)
    assert li_at(alice) is None  # the client dropped it
    assert not any(personal in (r.header("cookie") or "") for r in linkedin.site.requests
                   if r.path == "/feed")

    assert alice.get(linkedin.site.url("/feed"), timeout=TIMEOUT).status_code == 200  # signed out
    assert login(alice, linkedin.site, ALICE, vault).status_code == 200
    assert li_at(alice) not in (None, personal)
    assert alice.get(linkedin.site.url("/feed"), timeout=TIMEOUT).status_code == 200

    again = proxy.session("alice", passwords["alice"])
    again.cookies.set("li_at", personal, domain=".linkedin.com")
    assert_blocked(again.get(linkedin.site.url("/feed"), timeout=TIMEOUT), "unverified_session")
    vault.check(proxy)


def test_a_colleagues_session_is_account_mismatch(gk, setup, vault):
    config, args, passwords, linkedin = setup
    proxy = gk(config, args=args)
    bob = proxy.session("bob", passwords["bob"])
    assert login(bob, linkedin.site, BOB, vault).status_code == 200
    bobs_session = li_at(bob)

    alice = proxy.session("alice", passwords["alice"])
    alice.cookies.set("li_at", bobs_session, domain=".linkedin.com")
    assert_blocked(alice.get(linkedin.site.url("/feed"), timeout=TIMEOUT), "account_mismatch")
    assert bob.get(linkedin.site.url("/feed"), timeout=TIMEOUT).status_code == 200
    vault.check(proxy)


def test_two_devices_work_and_bindings_survive_a_restart(gk, setup, vault, tmp_path,
                                                        fake_sites):
    config, args, passwords, linkedin = setup
    proxy = gk(config, args=args)
    devices = [proxy.session("alice", passwords["alice"]) for _ in range(2)]
    for device in devices:
        assert login(device, linkedin.site, ALICE, vault).status_code == 200
    values = [li_at(device) for device in devices]
    assert len(set(values)) == 2
    for device in devices:
        assert device.get(linkedin.site.url("/feed"), timeout=TIMEOUT).status_code == 200
    proxy.stop()

    if not can_unshare():
        pytest.skip("needs root and unshare(1)")
    restarted = GatekeeperProcess(config, proxy.state_dir, args=args, hosts=fake_sites.hosts(),
                                  name="accounts-restart").start()
    try:
        for value in values:
            device = restarted.session("alice", passwords["alice"])
            device.cookies.set("li_at", value, domain=".linkedin.com")
            assert device.get(linkedin.site.url("/feed"), timeout=TIMEOUT).status_code == 200
        stranger = restarted.session("alice", passwords["alice"])
        stranger.cookies.set("li_at", vault.new("unbound"), domain=".linkedin.com")
        assert_blocked(stranger.get(linkedin.site.url("/feed"), timeout=TIMEOUT),
                       "unverified_session")
        vault.check(restarted)
    finally:
        restarted.kill()
    vault.check(proxy)


# --- headers and actions -----------------------------------------------------------------------


def test_tenant_header_is_injected_and_a_forged_copy_removed(gk, setup, vault):
    config, args, passwords, linkedin = setup
    proxy = gk(config, args=args)
    alice = proxy.session("alice", passwords["alice"])
    reply = alice.get(linkedin.site.url("/feed"), timeout=TIMEOUT,
                      headers={"x-googapps-allowed-domains": "gmail.com"})
    assert reply.status_code == 200
    received = linkedin.site.requests_to("/feed")[-1]
    copies = [v for k, v in received.headers if k.lower() == "x-googapps-allowed-domains"]
    assert copies == [configs.COMPANY_DOMAIN]
    vault.check(proxy)


def test_prohibited_action_is_refused_and_audited_action_recorded(gk, setup, vault):
    config, args, passwords, linkedin = setup
    proxy = gk(config, args=args)
    alice = proxy.session("alice", passwords["alice"])

    reply = alice.get(linkedin.site.url("/mynetwork/import-contacts/"), timeout=TIMEOUT)
    assert_blocked(reply, "prohibited_action", action="contact_import")
    page = alice.get(linkedin.site.url("/mynetwork/import-contacts/"),
                     headers={"Accept": HTML}, timeout=TIMEOUT)
    assert page.status_code == 403 and "contact_import" in page.text
    assert linkedin.site.requests_to("/mynetwork/import-contacts/") == []

    assert alice.post(linkedin.site.url("/groups/create"), json={"name": "n", "kind": "other"},
                      timeout=TIMEOUT).status_code == 200
    assert alice.post(linkedin.site.url("/groups/create"), json={"name": "n", "kind": "group"},
                      timeout=TIMEOUT).status_code == 200
    event = proxy.wait_for_log(lambda e: e.get("event") == "audited_action")
    assert (event["employee"], event["service"], event["action"]) == \
        ("alice", "linkedin", "group_created")
    assert len(proxy.events("audited_action")) == 1
    assert proxy.metric("gatekeeper_audited_actions_total", service="linkedin",
                        action="group_created") == 1
    assert proxy.metric("gatekeeper_blocked_total", service="linkedin",
                        reason="prohibited_action") == 2
    vault.check(proxy)


# --- the shipped catalog -----------------------------------------------------------------------


def test_every_shipped_rule_on_a_request_shaped_like_the_real_site(gk, tmp_path, vault):
    """config/services.yaml as shipped (placeholders filled), alice granted every service;
    each sample request goes through the proxy to a fake site answering for the real hosts."""
    services_text = filled_services_text()
    catalog = yaml.safe_load(services_text)["services"]
    approvals = configs.approvals_doc()
    approvals["grants"] = [configs.grant("alice", service_id)
                           for service_id, entry in catalog.items()
                           if entry.get("access", "approved") == "approved"]
    config = tmp_path / "shipped-config"
    configs.write_config(config, approvals=approvals)
    (config / "services.yaml").write_text(services_text)
    password = vault.new("proxy-alice")
    users = configs.write_htpasswd(tmp_path / "users.htpasswd", {"alice": password})
    vault.add("me.private@gmail.com")

    hosts = sorted({sample.host for sample in SAMPLES})
    with FakeSite(hosts) as site:
        proxy = gk(config, args=["--set", f"proxyauth=@{users}"],
                   hosts=dict.fromkeys(hosts, site.address))
        client = proxy.session("alice", password)
        for sample in SAMPLES:
            url = f"https://{sample.host}:{site.https_port}{sample.path}"
            headers = {"Content-Type": sample.content_type} if sample.content_type else {}
            sent_before = len(site.requests)

            def send(account: str, url=url, headers=headers, sample=sample):
                return client.request(sample.method, url, data=sample.body_for(account),
                                      headers=headers, timeout=TIMEOUT)

            if sample.kind == "logins":
                refused = send("me.private@gmail.com")
                assert refused.status_code == 403, sample.id
                assert refused.headers["X-Gatekeeper-Reason"] == "personal_account", sample.id
                assert len(site.requests) == sent_before, sample.id
                assert send(ALICE).status_code == 200, sample.id
                assert len(site.requests) == sent_before + 1, sample.id
            elif sample.kind == "prohibited":
                reply = send(ALICE)
                assert reply.status_code == 403, sample.id
                assert reply.json()["action"] == sample.action, sample.id
                assert len(site.requests) == sent_before, sample.id
            else:
                assert send(ALICE).status_code == 200, sample.id
                assert len(site.requests) == sent_before + 1, sample.id
                proxy.wait_for_log(lambda e, action=sample.action: (
                    e.get("event") == "audited_action" and e["action"] == action))
        vault.check(proxy)


def test_report_mode_lets_a_personal_login_through_and_counts_it(gk, tmp_path, fake_sites,
                                                                 vault):
    approvals = configs.approvals_doc(mode="report")
    config = configs.write_config(tmp_path / "report-config",
                                  services=configs.services_doc(linkedin=LINKEDIN),
                                  approvals=approvals)
    password = vault.new("proxy-alice")
    users = configs.write_htpasswd(tmp_path / "users.htpasswd", {"alice": password})
    linkedin = FakeLinkedIn(fake_sites.linkedin, vault)
    vault.add("alice.private@gmail.com")
    proxy = gk(config, args=["--set", f"proxyauth=@{users}"])
    alice = proxy.session("alice", password)

    assert login(alice, linkedin.site, "alice.private@gmail.com", vault).status_code == 200
    assert linkedin.logins_received() == 1
    assert alice.get(linkedin.site.url("/feed"), timeout=TIMEOUT).status_code == 200
    assert proxy.metric("gatekeeper_logins_total", service="linkedin", result="personal") == 1
    for reason in ("personal_account", "unverified_session"):  # its session was not bound
        assert proxy.metric("gatekeeper_would_block_total", service="linkedin",
                            reason=reason) == 1, reason
    assert proxy.metric("gatekeeper_blocked_total", service="linkedin") == 0
    vault.check(proxy)
