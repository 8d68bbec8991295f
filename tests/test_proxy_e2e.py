"""Issue 2 end to end: the real `gatekeeper serve` process between a requests client that
trusts its CA and real HTTPS sites on loopback (harness: tests/support)."""

from __future__ import annotations

import html
import http.client
import json
import signal
import socket
import ssl
import time
import urllib.request

import pytest
import requests
from support import configs
from support.proxy import MitmdumpProcess, port_open
from support.rawhttp import peak_rss_mib
from support.tls import cert_sha256, shared_ca

from gatekeeper.core.model import REASON_TEXT, Reason

pytestmark = pytest.mark.e2e  # starts a real proxy process

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
AUTH_ANY = ["--set", "proxyauth=any"]
TIMEOUT = 10


def write(tmp_path, name="config", **docs):
    return configs.write_config(tmp_path / name, **docs)


def assert_blocked_json(reply: requests.Response, service: str, reason: str) -> None:
    assert reply.status_code == 403
    assert reply.headers["X-Gatekeeper-Reason"] == reason
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json() == {"blocked": True, "service": service, "reason": reason}


# --- decisions ---------------------------------------------------------------------------------


def test_unapproved_employee_gets_403_json_and_upstream_sees_nothing(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    facebook = fake_sites.facebook
    reply = proxy.session("alice", "pw").get(facebook.url("/home"), timeout=TIMEOUT)
    assert_blocked_json(reply, "facebook", "not_approved")
    assert facebook.connections == 0
    assert facebook.requests == []


def test_browser_gets_html_block_page_naming_service_reason_and_approver(gk, fake_sites,
                                                                         tmp_path):
    # A service name with markup also proves the page is autoescaped.
    services = configs.services_doc(
        facebook={"name": "Facebook <b>&</b>", "domains": ["facebook.com", "fbcdn.net"]}
    )
    proxy = gk(write(tmp_path, services=services), args=AUTH_ANY)
    reply = proxy.session("bob", "pw").get(
        fake_sites.facebook.url("/"), headers={"Accept": BROWSER_ACCEPT}, timeout=TIMEOUT
    )
    assert reply.status_code == 403
    assert reply.headers["X-Gatekeeper-Reason"] == "not_approved"
    assert reply.headers["Content-Type"].startswith("text/html")
    page = reply.text
    assert html.escape("Facebook <b>&</b>") in page
    assert "<b>&</b>" not in page
    assert html.escape(REASON_TEXT[Reason.NOT_APPROVED]) in page
    assert configs.APPROVER in page
    assert fake_sites.facebook.connections == 0


def test_approved_employee_gets_the_upstream_response(gk, fake_sites):
    linkedin = fake_sites.linkedin
    linkedin.route("POST", "/feed", lambda request: (
        201,
        [("Content-Type", "application/json"), ("Set-Cookie", "a=1; Path=/"),
         ("Set-Cookie", "b=2; Path=/")],
        json.dumps({"got": request.body.decode()}),
    ))
    proxy = gk(args=AUTH_ANY)
    session = proxy.session("alice", "pw")

    page = session.get(linkedin.url("/in/alice?tab=posts"), timeout=TIMEOUT)
    posted = session.post(linkedin.url("/feed"), data=b"hello=world", timeout=TIMEOUT)

    assert page.status_code == 200
    assert page.text == "hello from www.linkedin.com"
    assert posted.status_code == 201
    assert posted.json() == {"got": "hello=world"}
    assert posted.raw.headers.getlist("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert [(r.method, r.path) for r in linkedin.requests] == [
        ("GET", "/in/alice?tab=posts"), ("POST", "/feed")
    ]


@pytest.mark.parametrize("auth", [None, ("mallory", "pw")], ids=["no-proxy-auth", "not-listed"])
def test_unknown_employee_is_blocked(gk, fake_sites, auth):
    proxy = gk(args=AUTH_ANY if auth else ())
    session = proxy.session(*auth) if auth else proxy.session()
    reply = session.get(fake_sites.linkedin.url("/"), timeout=TIMEOUT)
    assert_blocked_json(reply, "linkedin", "unknown_employee")
    assert fake_sites.linkedin.connections == 0


def test_employee_identified_by_source_address(gk, fake_sites, tmp_path):
    approvals = configs.approvals_doc()
    approvals["employees"]["alice"] = configs.employee("alice", addresses=["127.0.0.1"])
    proxy = gk(write(tmp_path, approvals=approvals))  # no proxy auth at all
    session = proxy.session()

    allowed = session.get(fake_sites.linkedin.url("/"), timeout=TIMEOUT)
    blocked = session.get(fake_sites.facebook.url("/"), timeout=TIMEOUT)

    assert allowed.status_code == 200
    assert allowed.text == "hello from www.linkedin.com"
    assert_blocked_json(blocked, "facebook", "not_approved")
    assert {e["employee"] for e in proxy.events("decision")} == {"alice"}


def test_expired_grant_is_blocked(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    reply = proxy.session("carol", "pw").get(fake_sites.linkedin.url("/"), timeout=TIMEOUT)
    assert_blocked_json(reply, "linkedin", "expired")
    assert fake_sites.linkedin.connections == 0


def test_real_htpasswd_identifies_employee_and_rejects_a_wrong_password(gk, fake_sites,
                                                                          tmp_path):
    password = "correct horse 7f3a"
    users = configs.write_htpasswd(tmp_path / "users.htpasswd", {"alice": password})
    proxy = gk(args=["--set", f"proxyauth=@{users}"])
    linkedin = fake_sites.linkedin

    allowed = proxy.session("alice", password).get(linkedin.url("/"), timeout=TIMEOUT)
    assert allowed.status_code == 200
    with pytest.raises(requests.exceptions.ProxyError, match="407"):
        proxy.session("alice", "wrong").get(linkedin.url("/"), timeout=TIMEOUT)
    plain = proxy.session("alice", "wrong").get(linkedin.url("/", scheme="http"),
                                                timeout=TIMEOUT)
    assert plain.status_code == 407
    assert len(linkedin.requests) == 1
    assert password not in proxy.stdout + proxy.stderr


def test_a_changed_htpasswd_file_applies_without_a_restart(gk, fake_sites, tmp_path):
    users = configs.write_htpasswd(tmp_path / "users.htpasswd", {"alice": "first pw 1"})
    proxy = gk(args=["--set", f"proxyauth=@{users}"])
    url = fake_sites.linkedin.url("/", scheme="http")
    assert proxy.session("alice", "first pw 1").get(url, timeout=TIMEOUT).status_code == 200

    configs.write_htpasswd(users, {"alice": "second pw 2"})  # alice changed her password
    deadline = time.monotonic() + 15
    while proxy.session("alice", "second pw 2").get(url, timeout=TIMEOUT).status_code != 200:
        assert time.monotonic() < deadline, "the new password never worked"
        time.sleep(0.2)
    # the old one no longer works, though it was remembered as a recent success
    assert proxy.session("alice", "first pw 1").get(url, timeout=TIMEOUT).status_code == 407
    assert proxy.wait_for_log(lambda e: e.get("event") == "htpasswd_reloaded")["users"] == 1


# --- interception: only governed hosts ---------------------------------------------------------


def open_tunnel(proxy, host: str, port: int) -> socket.socket:
    """A raw CONNECT tunnel through the proxy (no proxy auth)."""
    sock = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=TIMEOUT)
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"proxy closed the tunnel: {head!r}"
        head += chunk
    assert head.split(b" ", 2)[1] == b"200", head
    return sock


def peer_certificate(proxy, host: str, port: int, context: ssl.SSLContext) -> bytes:
    """The DER certificate presented for `host` through a CONNECT tunnel."""
    with (open_tunnel(proxy, host, port) as sock,
          context.wrap_socket(sock, server_hostname=host) as tls):
        return tls.getpeercert(binary_form=True)


def test_non_social_https_is_relayed_with_the_sites_own_certificate(gk, fake_sites):
    proxy = gk()
    bank = fake_sites.bank
    trusts_test_ca = ssl.create_default_context(cafile=str(shared_ca().cert_path))

    der = peer_certificate(proxy, bank.host, bank.https_port, trusts_test_ca)

    assert cert_sha256(der) == bank.cert_sha256
    assert bank.connections == 1


def test_governed_https_presents_a_certificate_from_the_proxy_ca(gk, fake_sites):
    proxy = gk()
    facebook = fake_sites.facebook
    trusts_proxy_ca = ssl.create_default_context(cafile=str(proxy.ca_cert))

    der = peer_certificate(proxy, facebook.host, facebook.https_port, trusts_proxy_ca)

    assert cert_sha256(der) != facebook.cert_sha256
    assert facebook.connections == 0  # lazy: the handshake alone opens nothing upstream


def request_in_tunnel(proxy, connect_host: str, port: int, sni: str | None,
                      host_header: str) -> tuple[int, dict[str, str]]:
    """One HTTPS request through a CONNECT tunnel with a chosen SNI and Host header;
    the certificate is not checked (these tests look at the answer, not at the chain)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (open_tunnel(proxy, connect_host, port) as sock,
          context.wrap_socket(sock, server_hostname=sni) as tls):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"
                    .encode())
        reply = http.client.HTTPResponse(tls)
        reply.begin()
        reply.read()
        return reply.status, dict(reply.getheaders())


def test_governed_sni_inside_a_tunnel_to_an_innocent_host_is_blocked(gk, fake_sites):
    proxy = gk()
    bank = fake_sites.bank
    status, headers = request_in_tunnel(proxy, bank.host, bank.https_port,
                                        sni="www.facebook.com", host_header="www.facebook.com")
    assert (status, headers.get("X-Gatekeeper-Reason")) == (403, "unknown_employee")
    assert bank.connections == 0


def test_governed_connect_target_is_matched_after_normalization(gk, fake_sites):
    proxy = gk()
    bank, facebook = fake_sites.bank, fake_sites.facebook
    status, headers = request_in_tunnel(proxy, "WWW.FaceBook.COM.", facebook.https_port,
                                        sni=None, host_header=bank.host)
    assert (status, headers.get("X-Gatekeeper-Reason")) == (403, "unknown_employee")
    assert bank.connections == facebook.connections == 0


def test_a_grant_for_one_service_does_not_cover_a_host_header_of_another(gk, fake_sites,
                                                                         tmp_path):
    # Services that share an edge (Meta's Facebook and Instagram) route by Host header, so an
    # approved connect target must not carry a request for a service that is not approved.
    approvals = configs.approvals_doc()
    approvals["employees"]["alice"] = configs.employee("alice", addresses=["127.0.0.1"])
    proxy = gk(write(tmp_path, approvals=approvals))
    linkedin = fake_sites.linkedin
    status, headers = request_in_tunnel(proxy, linkedin.host, linkedin.https_port,
                                        sni=linkedin.host, host_header="www.facebook.com")
    assert (status, headers.get("X-Gatekeeper-Reason")) == (403, "not_approved")
    assert linkedin.requests == []


def test_plain_http_governed_host_header_on_innocent_target_is_governed(gk, fake_sites):
    proxy = gk()
    bank = fake_sites.bank
    conn = http.client.HTTPConnection("127.0.0.1", proxy.listen_port, timeout=TIMEOUT)
    conn.putrequest("GET", f"http://{bank.host}:{bank.http_port}/", skip_host=True)
    conn.putheader("Host", "www.facebook.com")
    conn.endheaders()
    reply = conn.getresponse()
    body = reply.read()
    conn.close()

    assert reply.status == 403
    assert reply.getheader("X-Gatekeeper-Reason") == "unknown_employee"
    assert json.loads(body)["service"] == "facebook"
    assert bank.connections == 0


def test_plain_http_to_other_sites_is_forwarded_unchanged(gk, fake_sites):
    proxy = gk()
    bank = fake_sites.bank
    reply = proxy.session().post(bank.url("/pay?to=1", scheme="http"), data=b"amount=5",
                                 headers={"X-Custom": "kept"}, timeout=TIMEOUT)
    assert reply.status_code == 200
    assert reply.text == "hello from bank.example"
    [seen] = bank.requests
    assert (seen.scheme, seen.method, seen.path, seen.body) == ("http", "POST", "/pay?to=1",
                                                                b"amount=5")
    assert seen.header("X-Custom") == "kept"
    assert proxy.events("decision") == []


# --- report mode, metrics, logs ----------------------------------------------------------------


def test_report_mode_lets_would_be_blocks_through_and_counts_them(gk, fake_sites, tmp_path):
    proxy = gk(write(tmp_path, approvals=configs.approvals_doc(mode="report")), args=AUTH_ANY)
    session = proxy.session("bob", "pw")

    replies = [session.get(fake_sites.facebook.url("/"), timeout=TIMEOUT) for _ in range(2)]

    assert [r.status_code for r in replies] == [200, 200]
    assert replies[0].text == "hello from www.facebook.com"
    assert proxy.metric("gatekeeper_would_block_total", service="facebook",
                        reason="not_approved") == 2
    assert proxy.metric("gatekeeper_blocked_total") == 0
    decisions = proxy.events("decision")
    assert [(e["decision"], e["enforced"]) for e in decisions] == [("block", False)] * 2


def test_decision_counters_move_by_exactly_the_requests_sent(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    before = proxy.scrape()
    assert ("gatekeeper_config_reloads_total", frozenset({("result", "success")})) in before
    session = proxy.session("alice", "pw")
    for _ in range(3):
        session.get(fake_sites.facebook.url("/"), timeout=TIMEOUT)
    for _ in range(2):
        session.get(fake_sites.linkedin.url("/"), timeout=TIMEOUT)
    proxy.session("carol", "pw").get(fake_sites.linkedin.url("/"), timeout=TIMEOUT)
    session.get(fake_sites.bank.url("/"), verify=str(shared_ca().cert_path), timeout=TIMEOUT)

    after = proxy.scrape()

    def delta(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("gatekeeper_blocked_total", service="facebook", reason="not_approved") == 3
    assert delta("gatekeeper_blocked_total", service="linkedin", reason="expired") == 1
    assert delta("gatekeeper_allowed_total", service="linkedin") == 2
    assert proxy.metric("gatekeeper_blocked_total") == 4
    assert proxy.metric("gatekeeper_allowed_total") == 2
    assert proxy.metric("gatekeeper_decision_duration_seconds_count") == 6
    assert not any("bank" in str(labels) or "alice" in str(labels) for _, labels in after)


def test_decision_log_has_the_fields_and_never_names_other_sites(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    session = proxy.session("bob", "pw")
    bank = fake_sites.bank
    session.get(fake_sites.facebook.url("/groups/clinic?ref=secret-query"), timeout=TIMEOUT)
    session.get(bank.url("/private-statement?acct=991"), verify=str(shared_ca().cert_path),
                timeout=TIMEOUT)
    session.get(bank.url("/private-statement?acct=991", scheme="http"), timeout=TIMEOUT)
    assert len(bank.requests) == 2

    [decision] = proxy.events("decision")
    assert {k: decision[k] for k in ("employee", "service", "decision", "reason", "method",
                                     "host", "path")} == {
        "employee": "bob", "service": "facebook", "decision": "block",
        "reason": "not_approved", "method": "GET", "host": "www.facebook.com",
        "path": "/groups/clinic",
    }
    proxy.stop()
    everything = proxy.stdout + proxy.stderr + proxy.artifact.read_text()
    for secret in ("bank.example", "private-statement", "acct=991", "secret-query",
                   bank.address):
        assert secret not in everything


def test_huge_body_to_blocked_host_is_not_buffered_and_the_proxy_keeps_serving(gk, fake_sites):
    """A blocked upload larger than a small form ends the connection unanswered instead of
    being buffered in the proxy's memory; a small one is read and answered with the 403."""
    proxy = gk(args=AUTH_ANY)
    session = proxy.session("bob", "pw")
    idle = peak_rss_mib(proxy.process.pid)
    huge = b"x" * (256 * 1024 * 1024)

    with pytest.raises(requests.exceptions.ConnectionError):
        session.post(fake_sites.facebook.url("/upload"), data=huge, timeout=60)
    small = session.post(fake_sites.facebook.url("/upload"), data=b"x" * 4096, timeout=TIMEOUT)

    assert peak_rss_mib(proxy.process.pid) - idle <= 64
    assert_blocked_json(small, "facebook", "not_approved")
    assert fake_sites.facebook.connections == 0
    after = proxy.session("alice", "pw").get(fake_sites.linkedin.url("/"), timeout=TIMEOUT)
    assert after.status_code == 200


# --- process life cycle ------------------------------------------------------------------------


def test_invalid_config_at_start_exits_2_with_path_line_and_listens_on_nothing(gk, tmp_path):
    approvals = configs.approvals_doc()
    approvals["grants"].append(configs.grant("zoe", "linkedin"))
    config = write(tmp_path, approvals=approvals)
    proxy = gk(config, hosts={}, wait=False)

    assert proxy.wait_exit() == 2
    approvals_path = config / "approvals.yaml"
    assert any(line.startswith(f"{approvals_path}:") and line.split(":")[1].isdigit()
               and "zoe" in line for line in proxy.stderr_lines), proxy.stderr
    assert not port_open(proxy.listen_port)
    assert not port_open(proxy.metrics_port)


@pytest.mark.parametrize("option", [
    "ignore_hosts=.*", "tcp_hosts=facebook", "connection_strategy=eager",
    "stream_large_bodies=1m", "show_ignored_hosts=true",
])
def test_options_that_would_bypass_the_policy_are_refused(gk, option):
    """mitmproxy options that would relay governed traffic unchecked stop the start-up."""
    proxy = gk(args=["--set", option], hosts={}, wait=False)
    assert proxy.wait_exit() == 2
    assert "do not set it" in proxy.stderr or "must stay 'lazy'" in proxy.stderr, proxy.stderr
    assert not port_open(proxy.listen_port)


def test_sigterm_stops_with_status_0(gk):
    proxy = gk()
    with urllib.request.urlopen(f"{proxy.metrics_url}/healthz", timeout=TIMEOUT) as health:
        assert health.status == 200
    proxy.signal(signal.SIGTERM)
    assert proxy.wait_exit() == 0
    assert not port_open(proxy.listen_port)


def test_sighup_reloads_and_keeps_running(gk, fake_sites):
    proxy = gk(args=AUTH_ANY)
    successes = proxy.metric("gatekeeper_config_reloads_total", result="success")

    proxy.signal(signal.SIGHUP)

    proxy.wait_for_metric("gatekeeper_config_reloads_total", successes + 1, result="success")
    assert proxy.running
    reply = proxy.session("alice", "pw").get(fake_sites.linkedin.url("/"), timeout=TIMEOUT)
    assert reply.status_code == 200


def test_plain_mitmdump_with_the_addon_script_enforces(gk, fake_sites, config_dir):
    proxy = gk(config_dir, args=["--set", "proxyauth=any"], cls=MitmdumpProcess)
    session = proxy.session("alice", "pw")

    allowed = session.get(fake_sites.linkedin.url("/"), timeout=TIMEOUT)
    blocked = session.get(fake_sites.facebook.url("/"), timeout=TIMEOUT)

    assert allowed.status_code == 200
    assert_blocked_json(blocked, "facebook", "not_approved")
    assert fake_sites.facebook.connections == 0
    assert proxy.metric("gatekeeper_blocked_total", service="facebook") == 1
