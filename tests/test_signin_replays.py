"""Issue 10 end to end: the sign-in requests real clients send (tests/signin_replays.py),
replayed through the real proxy with the shipped catalog to a fake upstream answering for the
real host names.

Per service: every replayed flow with a personal account is refused before the upstream sees
its sign-in step; with the company account it goes through, and the cookie or token the
upstream then hands out works afterwards while a forged (unbound) one is refused; an invented
sign-in endpoint carrying a password is refused as `unrecognized_sign_in`; ordinary requests
(feed, post, comment, search, upload, GraphQL) all pass.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from pathlib import Path

import pytest
import requests
import yaml
from catalog_samples import filled_services_text
from signin_replays import (
    FORM,
    INVENTED,
    ORDINARY,
    REPLAYS,
    SERVICES,
    Replay,
    Session,
    Step,
    hosts_of,
)
from support import configs
from support.fakesite import FakeSite, RecordedRequest
from support.proxy import ProxyProcess
from support.waiting import wait_until
from test_accounts_e2e import Secrets

pytestmark = pytest.mark.e2e  # starts a real proxy process

TIMEOUT = 10
COMPANY = "alice@clinic.example"
PERSONAL = "alice.private@gmail.com"


@pytest.fixture
def shipped_config(tmp_path: Path) -> tuple[Path, list[str], str, Secrets]:
    """config/services.yaml as shipped (placeholders filled), alice granted every service
    that needs a grant, with her proxy password in an htpasswd file."""
    vault = Secrets()
    text = filled_services_text()
    catalog = yaml.safe_load(text)["services"]
    approvals = configs.approvals_doc()
    approvals["grants"] = [configs.grant("alice", service) for service, entry in catalog.items()
                           if entry.get("access", "approved") == "approved"]
    config = configs.write_config(tmp_path / "shipped-config", approvals=approvals)
    (config / "services.yaml").write_text(text)
    password = vault.new("proxy-alice")
    users = configs.write_htpasswd(tmp_path / "users.htpasswd", {"alice": password})
    vault.add(PERSONAL)
    return config, ["--set", f"proxyauth=@{users}"], password, vault


class Upstream:
    """The fake site's answers: each step's reply, in flow order when steps share a path."""

    def __init__(self, site: FakeSite) -> None:
        self.site = site

    def play(self, replay: Replay, token: str) -> None:
        queues: dict[tuple[str, str], list[Step]] = defaultdict(list)
        for step in replay.steps:
            queues[(step.method, step.path)].append(step)
        for (method, path), steps in queues.items():
            self.site.route(method, path, self._answer(list(steps), token))

    @staticmethod
    def _answer(steps: list[Step], token: str):
        def answer(request: RecordedRequest):
            step = steps.pop(0) if len(steps) > 1 else steps[0]
            reply = step.reply.replace("{token}", token)
            media = "application/json" if reply.startswith("{") else "text/plain"
            headers = [(n, v.replace("{token}", token)) for n, v in step.answer]
            return 200, [("Content-Type", media), *headers], reply or "ok"
        return answer

    def received(self, step: Step) -> int:
        return len([r for r in self.site.requests_to(step.path) if r.method == step.method])


def send(client: requests.Session, site: FakeSite, step: Step, account: str,
         headers: dict[str, str] | None = None) -> requests.Response:
    host = step.host
    url = step.url.replace(f"https://{host}/", f"https://{host}:{site.https_port}/", 1)
    all_headers = dict(step.headers)
    if step.content_type:
        all_headers["Content-Type"] = step.content_type
    all_headers.update(headers or {})
    return client.request(step.method, url, data=step.body_for(account), headers=all_headers,
                          timeout=TIMEOUT, allow_redirects=False)


def assert_refused(reply: requests.Response, reason: str, what: str) -> None:
    assert reply.status_code == 403, (what, reply.status_code, reply.text[:200])
    assert reply.headers["X-Gatekeeper-Reason"] == reason, what


def run_personal(proxy: ProxyProcess, password: str, upstream: Upstream, replay: Replay) -> None:
    """Up to the last checked step, where a personal account is refused unseen."""
    client = proxy.session("alice", password)
    upstream.play(replay, secrets.token_hex(12))
    last = max(i for i, step in enumerate(replay.steps) if step.checked)
    for i, step in enumerate(replay.steps[:last + 1]):
        earlier_check = step.checked and i < last
        account = COMPANY if earlier_check else PERSONAL
        before = upstream.received(step)
        reply = send(client, upstream.site, step, account)
        if i < last:
            assert reply.status_code == 200, (replay.id, i, reply.text[:200])
            continue
        assert_refused(reply, "personal_account", replay.id)
        assert upstream.received(step) == before, f"{replay.id}: the upstream saw the sign-in"


def run_company(proxy: ProxyProcess, password: str, upstream: Upstream, replay: Replay,
                vault: Secrets) -> tuple[requests.Session, dict[str, str]]:
    """The whole flow with the company account; returns the client and the headers that
    carry its session (for a token session)."""
    client = proxy.session("alice", password)
    token = vault.new("tok").replace("-", "")
    upstream.play(replay, token)
    bound_before = len(proxy.events("session_bound"))
    for i, step in enumerate(replay.steps):
        reply = send(client, upstream.site, step, COMPANY)
        assert reply.status_code == 200, (replay.id, i, reply.text[:200])
    session = replay.session
    if session is None:
        return client, {}
    wait_until(lambda: len(proxy.events("session_bound")) > bound_before,
               f"{replay.id}: the session is bound")
    headers = {session.header: session.value.replace("{token}", token)} if session.header else {}
    if session.planted:  # the app copies the cookie from the JSON answer into its jar
        client.cookies.set(session.cookie, token, domain=session.domain)
    follow = follow_up(session, token)
    before = upstream.received(follow)
    reply = send(client, upstream.site, follow, COMPANY, headers)
    assert reply.status_code == 200, (replay.id, "follow-up", reply.text[:200])
    assert upstream.received(follow) == before + 1
    return client, headers


def follow_up(session: Session, token: str) -> Step:
    """The request that presents the session, with `token` wherever the client puts it."""
    return Step(session.method, session.url.replace("{token}", token),
                FORM if session.body else "", session.body.replace("{token}", token))


def run_unbound(proxy: ProxyProcess, password: str, upstream: Upstream, replay: Replay,
                vault: Secrets) -> None:
    """The same follow-up with a session value the proxy never saw handed out."""
    session = replay.session
    assert session is not None
    client = proxy.session("alice", password)
    forged = vault.new("forged").replace("-", "")
    headers = {}
    if session.cookie:
        client.cookies.set(session.cookie, forged, domain=session.domain)
        for name, value in session.marker:
            client.cookies.set(name, value, domain=session.domain)
    elif session.header:
        headers = {session.header: session.value.replace("{token}", forged)}
    follow = follow_up(session, forged)
    before = upstream.received(follow)
    assert_refused(send(client, upstream.site, follow, COMPANY, headers),
                   "unverified_session", f"{replay.id}: unbound session")
    assert upstream.received(follow) == before


@pytest.mark.parametrize("service", SERVICES)
def test_sign_ins_of_real_clients(gk, shipped_config, service: str) -> None:
    config, args, password, vault = shipped_config
    replays = [replay for replay in REPLAYS if replay.service == service]
    hosts = hosts_of(service)
    with FakeSite(hosts) as site:
        upstream = Upstream(site)
        proxy = gk(config, args=args, hosts=dict.fromkeys(hosts, site.address))
        for replay in replays:
            run_personal(proxy, password, upstream, replay)
            run_company(proxy, password, upstream, replay, vault)
            if replay.session is not None:
                run_unbound(proxy, password, upstream, replay, vault)

        invented = INVENTED[service]
        client = proxy.session("alice", password)
        assert_refused(send(client, site, invented, COMPANY), "unverifiable_login",
                       f"{service}: invented sign-in")
        assert site.requests_to(invented.path) == []
        event = proxy.wait_for_log(lambda e: e.get("event") == "unrecognized_sign_in")
        assert (event["service"], event["host"], event["path"]) == \
            (service, invented.host, invented.path)
        assert proxy.metric("gatekeeper_logins_total", service=service,
                            result="unrecognized") == 1

        # signed in afresh: a service keeps a few sessions per employee, the oldest go
        client, headers = run_company(proxy, password, upstream, replays[0], vault)
        for i, step in enumerate(ORDINARY[service]):
            before = len(site.requests)
            reply = send(client, site, step, COMPANY, headers)
            assert reply.status_code == 200, (service, "ordinary", i, reply.text[:200])
            assert len(site.requests) == before + 1
        assert len(proxy.events("unrecognized_sign_in")) == 1  # none of the ordinary ones
        vault.check(proxy)
