"""Action rules that look at field values: a body gatekeeper cannot read whole (no length,
too long, a compression bomb) must not hide a prohibited action, nor make an audited one
vanish. Prohibited: refused as `unreadable_request` before the upstream sees it; audited:
let through (nothing forbids it) and recorded as `unreadable`."""

from __future__ import annotations

import datetime as dt
import gzip

import pytest
from support import configs
from support.rawhttp import closed_without_answer, request, response, send_head, tunnel
from support.waiting import wait_until

from gatekeeper.statedb import StateDB

pytestmark = pytest.mark.e2e  # starts a real proxy process

TIMEOUT = 10
FORM = "application/x-www-form-urlencoded"
BEACON = "text/plain;charset=UTF-8"  # what navigator.sendBeacon sends
INVITE = "/api/graphql/"
JOIN = "/api/groups/join"
MAX_BODY = 4096
LINKEDIN = {
    "name": "LinkedIn",
    "domains": ["linkedin.com", "licdn.com"],
    "prohibited": [{"action": "group_invite", "method": "POST", "path": "^/api/graphql/?$",
                    "fields": {"op": "InviteToGroup"}}],
    "audited": [{"action": "group_joined", "method": "POST", "path": "^/api/groups/join$",
                 "fields": {"op": "join"}, "target": "group_id"}],
}
SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def proxy(gk, tmp_path):
    config = configs.write_config(tmp_path / "action-rules",
                                  services=configs.services_doc(linkedin=LINKEDIN))
    return gk(config, args=["--set", "proxyauth=any",
                            "--set", f"gatekeeper_max_login_body={MAX_BODY}"])


def _activity(proxy) -> list[tuple[str, str | None, str]]:
    with StateDB(proxy.state_dir) as db:
        return [(a.action, a.target, a.outcome) for a in db.activity(SINCE)]


def _refused_unreadable(proxy, detail: str) -> None:
    event = proxy.wait_for_log(lambda e: e.get("event") == "actions_unreadable")
    assert (event["detail"], event["actions"]) == (detail, ["group_invite"])
    assert proxy.metric("gatekeeper_blocked_total", service="linkedin",
                        reason="unreadable_request") == 1


def test_a_readable_prohibited_action_is_refused_and_an_audited_one_recorded(proxy,
                                                                             fake_sites):
    """The baseline the tricks below try to get around."""
    linkedin = fake_sites.linkedin
    with tunnel(proxy, linkedin.host, linkedin.https_port) as sock:
        refused = request(sock, "POST", INVITE, linkedin.host, [("Content-Type", FORM)],
                          b"op=InviteToGroup&group_id=7")
        assert refused.status == 403
        assert refused.getheader("X-Gatekeeper-Reason") == "prohibited_action"
    with tunnel(proxy, linkedin.host, linkedin.https_port) as sock:
        assert request(sock, "POST", JOIN, linkedin.host, [("Content-Type", FORM)],
                       b"op=join&group_id=42").status == 200
    assert linkedin.requests_to(INVITE) == []
    wait_until(lambda: ("group_joined", "42", "recorded") in _activity(proxy),
               "the join is recorded with its group")
    assert ("group_invite", None, "refused") in _activity(proxy)


def test_a_chunked_body_cannot_hide_a_prohibited_action(proxy, fake_sites):
    linkedin = fake_sites.linkedin
    body = b"op=InviteToGroup&group_id=7"
    with tunnel(proxy, linkedin.host, linkedin.https_port) as sock:
        send_head(sock, "POST", INVITE, linkedin.host,
                  [("Content-Type", FORM), ("Transfer-Encoding", "chunked")])
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        assert closed_without_answer(sock)  # refused on its headers, length unknown
    _refused_unreadable(proxy, "body_length_unknown")
    assert linkedin.requests_to(INVITE) == []


def test_an_oversized_body_cannot_hide_a_prohibited_action(proxy, fake_sites):
    linkedin = fake_sites.linkedin
    body = b"op=InviteToGroup&group_id=7&padding=" + b"x" * (2 * MAX_BODY)
    with tunnel(proxy, linkedin.host, linkedin.https_port) as sock:
        reply = request(sock, "POST", INVITE, linkedin.host, [("Content-Type", FORM)], body)
    assert reply.status == 403
    assert reply.getheader("X-Gatekeeper-Reason") == "unreadable_request"
    _refused_unreadable(proxy, "body_too_large")
    assert linkedin.requests_to(INVITE) == []


def test_a_compression_bomb_cannot_hide_a_prohibited_action(proxy, fake_sites):
    """Small on the wire, larger than the limit once decoded: read with a cap, refused."""
    linkedin = fake_sites.linkedin
    body = gzip.compress(b"op=InviteToGroup&padding=" + b"0" * (1 << 20))
    assert len(body) < MAX_BODY
    with tunnel(proxy, linkedin.host, linkedin.https_port) as sock:
        reply = request(sock, "POST", INVITE, linkedin.host,
                        [("Content-Type", FORM), ("Content-Encoding", "gzip")], body)
    assert reply.status == 403
    assert reply.getheader("X-Gatekeeper-Reason") == "unreadable_request"
    _refused_unreadable(proxy, "unreadable_body")
    assert linkedin.requests_to(INVITE) == []


def test_a_chunked_audited_action_is_recorded_as_unreadable(proxy, fake_sites):
    """Nothing forbids joining a group, so the request goes on; the record says that the
    proxy could not tell which group rather than saying nothing."""
    linkedin = fake_sites.linkedin
    body = b"op=join&group_id=42"
    with tunnel(proxy, linkedin.host, linkedin.https_port) as sock:
        send_head(sock, "POST", JOIN, linkedin.host,
                  [("Content-Type", BEACON), ("Transfer-Encoding", "chunked")])
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        assert response(sock).status == 200
    assert [r.body for r in linkedin.requests_to(JOIN)] == [body]
    wait_until(lambda: _activity(proxy) == [("unreadable", None, "unreadable")],
               "the join is recorded as unreadable")
    assert proxy.metric("gatekeeper_audited_actions_total", service="linkedin",
                        action="unreadable") == 1
