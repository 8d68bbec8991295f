"""Bodies: login requests shaped so that gatekeeper and the upstream might read them
differently, or so that reading them would fill the proxy's memory. Each is refused as
`unverifiable_login` (or read as the upstream reads it), and the upstream never sees it."""

from __future__ import annotations

import base64
import gzip
import itertools

import pytest
from support import configs
from support.rawhttp import (
    closed_without_answer,
    h2_post,
    peak_rss_mib,
    request,
    response,
    send_head,
    send_until_closed,
    tunnel,
)

pytestmark = pytest.mark.e2e  # starts a real proxy process

TIMEOUT = 10
LOGIN = "/checkpoint/lg/login-submit"
FORM = "application/x-www-form-urlencoded"
COMPANY = b"session_key=alice%40clinic.example&session_password=pw"
MIB = 1 << 20
HEADROOM_MIB = 64
LINKEDIN = {
    "name": "LinkedIn",
    "domains": ["linkedin.com", "licdn.com"],
    "logins": [{"path": "^/checkpoint/lg/login-submit", "fields": ["session_key"]}],
}


def _proxy(gk, tmp_path, mode: str = "enforce"):
    config = configs.write_config(tmp_path / f"bodies-{mode}",
                                  services=configs.services_doc(linkedin=LINKEDIN),
                                  approvals=configs.approvals_doc(mode=mode))
    return gk(config, args=["--set", "proxyauth=any"])


@pytest.fixture
def proxy(gk, tmp_path):
    return _proxy(gk, tmp_path)


def _warm(proxy, site) -> float:
    """One company login through a raw tunnel; then the proxy's peak memory, in MiB."""
    with tunnel(proxy, site.host, site.https_port) as sock:
        assert request(sock, "POST", LOGIN, site.host, [("Content-Type", FORM)],
                       COMPANY).status == 200
    return peak_rss_mib(proxy.process.pid)


def _refused_detail(proxy) -> str:
    event = proxy.wait_for_log(lambda e: e.get("event") == "login_refused")
    assert event["result"] == "unverifiable"
    return event["detail"]


def _assert_unverifiable(reply) -> None:
    assert reply.status == 403
    assert reply.getheader("X-Gatekeeper-Reason") == "unverifiable_login"


def test_100mb_announced_login_body_is_refused_without_buffering(proxy, fake_sites):
    linkedin = fake_sites.linkedin
    idle = _warm(proxy, linkedin)
    with tunnel(proxy, linkedin.host, linkedin.https_port) as sock:
        send_head(sock, "POST", LOGIN, linkedin.host,
                  [("Content-Type", FORM), ("Content-Length", str(100 * 1000 * 1000))])
        sent = send_until_closed(sock, itertools.repeat(b"x" * MIB, 100))
        assert closed_without_answer(sock)
    assert sent < 100 * 1000 * 1000  # the proxy hung up instead of reading it all
    assert _refused_detail(proxy) == "body_too_large"
    assert len(linkedin.requests_to(LOGIN)) == 1  # the warm-up's company login only
    assert proxy.metric("gatekeeper_blocked_total", service="linkedin",
                        reason="unverifiable_login") == 1
    peak = peak_rss_mib(proxy.process.pid)
    assert peak - idle <= HEADROOM_MIB, f"peak {peak:.0f} MiB, idle {idle:.0f} MiB"


def test_endless_chunked_login_body_is_refused_without_buffering(proxy, fake_sites):
    linkedin = fake_sites.linkedin
    idle = _warm(proxy, linkedin)
    chunk = b"%x\r\n%s\r\n" % (MIB, b"x" * MIB)
    with tunnel(proxy, linkedin.host, linkedin.https_port) as sock:
        send_head(sock, "POST", LOGIN, linkedin.host,
                  [("Content-Type", FORM), ("Transfer-Encoding", "chunked")])
        send_until_closed(sock, itertools.chain([b"%x\r\n%s\r\n" % (len(COMPANY), COMPANY)],
                                                itertools.repeat(chunk, 200)))
        assert closed_without_answer(sock)
    assert _refused_detail(proxy) == "body_length_unknown"
    assert len(linkedin.requests_to(LOGIN)) == 1
    peak = peak_rss_mib(proxy.process.pid)
    assert peak - idle <= HEADROOM_MIB, f"peak {peak:.0f} MiB, idle {idle:.0f} MiB"


def test_small_chunked_login_is_unverifiable_as_its_length_is_unknown(proxy, fake_sites):
    """A documented limit: a login body must announce its length (browsers and apps do)."""
    linkedin = fake_sites.linkedin
    alice = proxy.session("alice", "pw")
    with pytest.raises(Exception):  # noqa: B017 - the proxy hangs up: no answer at all
        alice.post(linkedin.url(LOGIN), data=iter([COMPANY]), timeout=TIMEOUT,
                   headers={"Content-Type": FORM})
    assert _refused_detail(proxy) == "body_length_unknown"
    assert linkedin.requests_to(LOGIN) == []


def test_http2_login_without_a_length_is_refused_and_with_one_checked(proxy, fake_sites):
    """HTTP/2 needs no Content-Length: without one the body's size is unknown until it has
    all arrived, so the login is refused on its headers; with one (as browsers send it) the
    login is checked as usual."""
    linkedin = fake_sites.linkedin
    with tunnel(proxy, linkedin.host, linkedin.https_port, alpn="h2") as sock:
        assert h2_post(sock, linkedin.host, LOGIN, [("content-type", FORM)], COMPANY) is None
    assert _refused_detail(proxy) == "body_length_unknown"
    with tunnel(proxy, linkedin.host, linkedin.https_port, alpn="h2") as sock:
        assert h2_post(sock, linkedin.host, LOGIN, [("content-type", FORM),
                                                    ("content-length", str(len(COMPANY)))],
                       COMPANY) == 200
    with tunnel(proxy, linkedin.host, linkedin.https_port, alpn="h2") as sock:
        personal = b"session_key=alice.home%40gmail.com"
        assert h2_post(sock, linkedin.host, LOGIN, [("content-type", FORM),
                                                    ("content-length", str(len(personal)))],
                       personal) == 403
    assert [r.body for r in linkedin.requests_to(LOGIN)] == [COMPANY]


def test_multipart_part_with_base64_transfer_encoding_is_unverifiable(proxy, fake_sites):
    """Checked decoded, the company address; read raw by a server that ignores the header,
    something else entirely."""
    linkedin = fake_sites.linkedin
    boundary = "gk-boundary"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="session_key"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{base64.b64encode(b'alice@clinic.example').decode()}\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    reply = proxy.session("alice", "pw").post(
        linkedin.url(LOGIN), data=body, timeout=TIMEOUT,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert reply.status_code == 403
    assert reply.headers["X-Gatekeeper-Reason"] == "unverifiable_login"
    assert linkedin.requests_to(LOGIN) == []


@pytest.mark.parametrize(("case", "headers", "body"), [
    ("two Content-Type headers",
     [("Content-Type", FORM), ("Content-Type", "application/json")], COMPANY),
    ("two Content-Encoding headers",
     [("Content-Type", FORM), ("Content-Encoding", "gzip"), ("Content-Encoding", "identity")],
     gzip.compress(COMPANY)),
    ("a charset that reads ASCII differently",
     [("Content-Type", f"{FORM}; charset=utf-7")], COMPANY),
    ("a Content-Type parameter given twice",
     [("Content-Type", f"{FORM}; charset=utf-8; charset=utf-16")], COMPANY),
    ("an unknown content coding",
     [("Content-Type", FORM), ("Content-Encoding", "compress")], COMPANY),
])
def test_ambiguous_login_body_is_unverifiable(proxy, fake_sites, case, headers, body):
    linkedin = fake_sites.linkedin
    with tunnel(proxy, linkedin.host, linkedin.https_port) as sock:
        _assert_unverifiable(request(sock, "POST", LOGIN, linkedin.host, headers, body))
    assert linkedin.requests_to(LOGIN) == [], case


def test_a_second_gzip_member_is_read_as_the_upstream_reads_it(proxy, fake_sites):
    """gzip readers go on after the first member: a personal address there is found."""
    linkedin = fake_sites.linkedin
    body = gzip.compress(COMPANY) + gzip.compress(b"&session_key=alice.home%40gmail.com")
    with tunnel(proxy, linkedin.host, linkedin.https_port) as sock:
        reply = request(sock, "POST", LOGIN, linkedin.host,
                        [("Content-Type", FORM), ("Content-Encoding", "gzip")], body)
    assert reply.status == 403
    assert reply.getheader("X-Gatekeeper-Reason") == "personal_account"
    assert linkedin.requests_to(LOGIN) == []


def test_report_mode_streams_an_oversized_login_unread(gk, tmp_path, fake_sites):
    """Report mode blocks nothing: the login is counted as would-block and forwarded as it
    arrives, never held whole in the proxy's memory."""
    proxy = _proxy(gk, tmp_path, mode="report")
    linkedin = fake_sites.linkedin
    idle = _warm(proxy, linkedin)
    size = 96 * MIB
    with tunnel(proxy, linkedin.host, linkedin.https_port, timeout=60) as sock:
        send_head(sock, "POST", LOGIN, linkedin.host,
                  [("Content-Type", FORM), ("Content-Length", str(size))])
        assert send_until_closed(sock, itertools.repeat(b"x" * MIB, 96)) == size
        reply = response(sock)
    assert reply.status == 200
    assert [len(r.body) for r in linkedin.requests_to(LOGIN)] == [len(COMPANY), size]
    assert proxy.metric("gatekeeper_would_block_total", service="linkedin",
                        reason="unverifiable_login") == 1
    peak = peak_rss_mib(proxy.process.pid)
    assert peak - idle <= HEADROOM_MIB, f"peak {peak:.0f} MiB, idle {idle:.0f} MiB"
