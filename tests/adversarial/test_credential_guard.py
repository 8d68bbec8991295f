"""The credential guard: a password sent where no login rule looks, hidden the ways an
employee who wants a personal account might try. Each is refused as `unverifiable_login`
(`unrecognized_sign_in`, or unreadable), and the upstream never sees it; ordinary uploads
and posts still pass."""

from __future__ import annotations

import gzip
import json
import urllib.parse

import pytest
import requests
from catalog_samples import grpc_web, protobuf_field
from support import configs

pytestmark = pytest.mark.e2e  # starts a real proxy process

TIMEOUT = 10
LIMIT = 4096
PATH = "/voyager/api/authenticate-v2"  # an endpoint the catalog does not know
LINKEDIN = {
    "name": "LinkedIn",
    "domains": ["linkedin.com", "licdn.com"],
    "logins": [{"path": "^/checkpoint/lg/login-submit", "fields": ["session_key"]},
               {"path": "^/janus.Login/Login$", "protobuf": {"fields": [[2]],
                                                             "passwords": [[5, "*", 1]]}}],
    "session": {"cookie": "li_at"},
}
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
GRPC_WEB = "application/grpc-web+proto"


def _proxy(gk, tmp_path, mode: str = "enforce"):
    config = configs.write_config(tmp_path / f"guard-{mode}",
                                  services=configs.services_doc(linkedin=LINKEDIN),
                                  approvals=configs.approvals_doc(mode=mode))
    return gk(config, args=["--set", "proxyauth=any",
                            "--set", f"gatekeeper_max_login_body={LIMIT}"])


@pytest.fixture
def proxy(gk, tmp_path):
    return _proxy(gk, tmp_path)


def _post(proxy, site, body, headers: dict[str, str], path: str = PATH):
    client = proxy.session("alice", "pw")
    return client.post(site.url(path), data=body, headers=headers, timeout=TIMEOUT)


def _refused(proxy, site, body, headers: dict[str, str], detail: str = "unrecognized_sign_in",
             path: str = PATH) -> None:
    reply = _post(proxy, site, body, headers, path)
    assert reply.status_code == 403, reply.text
    assert reply.headers["X-Gatekeeper-Reason"] == "unverifiable_login"
    assert site.requests_to(path.split("?")[0]) == []
    event = proxy.wait_for_log(lambda e: e.get("event") == "login_refused")
    assert event["detail"] == detail


def test_password_in_a_gzip_json_body(proxy, fake_sites) -> None:
    body = gzip.compress(json.dumps({"auth": {"session_password": "pw"}}).encode())
    _refused(proxy, fake_sites.linkedin, body,
             {"Content-Type": JSON, "Content-Encoding": "gzip"})


def test_password_in_json_inside_a_signed_form_value(proxy, fake_sites) -> None:
    inner = urllib.parse.quote(json.dumps({"user": "me@gmail.com", "password": "pw"}))
    _refused(proxy, fake_sites.linkedin, f"signed_body={'ab' * 32}.{inner}",
             {"Content-Type": FORM})


def test_password_in_json_strings_nested_too_deep(proxy, fake_sites) -> None:
    value = json.dumps({"password": "pw"})
    for _ in range(6):
        value = json.dumps({"v": value})
    _refused(proxy, fake_sites.linkedin, value, {"Content-Type": JSON}, "unreadable_body")


def test_password_under_a_php_array_name_in_other_case(proxy, fake_sites) -> None:
    _refused(proxy, fake_sites.linkedin, "Session-Password[0]=pw&u=me", {"Content-Type": FORM})


def test_meta_password_prefix_under_an_unknown_name(proxy, fake_sites) -> None:
    _refused(proxy, fake_sites.linkedin, "u=me&blob=%23PWD_BROWSER%3A5%3A1%3Apw",
             {"Content-Type": FORM})


def test_password_in_the_query_of_a_post(proxy, fake_sites) -> None:
    _refused(proxy, fake_sites.linkedin, "u=me", {"Content-Type": FORM},
             path=PATH + "?password=pw")


def test_json_sent_as_text_plain(proxy, fake_sites) -> None:
    _refused(proxy, fake_sites.linkedin, json.dumps({"password": "pw"}),
             {"Content-Type": "text/plain;charset=UTF-8"})


def test_password_beside_a_file_in_a_multipart_body(proxy, fake_sites) -> None:
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + b"\xff\xd8\xff\xe0binary" + (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="password"\r\n\r\npw\r\n'
        f"--{boundary}--\r\n").encode()
    _refused(proxy, fake_sites.linkedin, body,
             {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def test_protobuf_sign_in_message_sent_to_another_grpc_method(proxy, fake_sites) -> None:
    """The password path of the service's protobuf sign-in, in a call the catalog does not
    name (a renamed method): a sign-in, refused; a message without one is ordinary."""
    body = grpc_web(protobuf_field(2, "me@gmail.com"),
                    protobuf_field(5, protobuf_field(3, protobuf_field(1, "pw"))))
    _refused(proxy, fake_sites.linkedin, body, {"Content-Type": GRPC_WEB},
             path="/janus.Login/LoginV2")
    ordinary = grpc_web(protobuf_field(1, "hello"), protobuf_field(5, b"\x08\x01"))
    reply = _post(proxy, fake_sites.linkedin, ordinary, {"Content-Type": GRPC_WEB},
                  "/janus.Chat/Send")
    assert reply.status_code == 200


def test_basic_authorization_to_the_service(proxy, fake_sites) -> None:
    _refused(proxy, fake_sites.linkedin, "", {"Authorization": "Basic bWU6cHc="})


def test_form_padded_past_the_limit(proxy, fake_sites) -> None:
    body = "session_password=pw&pad=" + "x" * LIMIT
    _refused(proxy, fake_sites.linkedin, body, {"Content-Type": FORM}, "body_too_large")


def test_form_of_unknown_length(proxy, fake_sites) -> None:
    """Refused on its headers; a body of unknown length is never read for an answer, so the
    connection ends unanswered (as for a login rule's path)."""
    chunks = iter([b"session_password=pw", b"&u=me"])  # requests sends it chunked
    with pytest.raises(requests.ConnectionError):
        _post(proxy, fake_sites.linkedin, chunks, {"Content-Type": FORM})
    event = proxy.wait_for_log(lambda e: e.get("event") == "login_refused")
    assert event["detail"] == "body_length_unknown"
    assert fake_sites.linkedin.requests_to(PATH) == []


def test_large_upload_and_ordinary_posts_pass(proxy, fake_sites) -> None:
    site = fake_sites.linkedin
    boundary = "b0undary"
    upload = (f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.jpg"\r\n'
              f"Content-Type: image/jpeg\r\n\r\n").encode() + b"\xff" * (4 * LIMIT) + \
        f"\r\n--{boundary}--\r\n".encode()
    assert _post(proxy, site, upload, {"Content-Type": f"multipart/form-data; boundary={boundary}"},
                 "/upload").status_code == 200
    assert _post(proxy, site, b"\x89PNG" + b"\x00" * (4 * LIMIT), {"Content-Type": "image/png"},
                 "/upload").status_code == 200
    post = json.dumps({"text": "Our password policy changed: see the intranet"})
    assert _post(proxy, site, post, {"Content-Type": JSON}, "/post").status_code == 200
    assert len(site.requests) == 3
    assert proxy.events("login_refused") == []


def test_report_mode_counts_an_unrecognized_sign_in_as_would_block(gk, tmp_path,
                                                                   fake_sites) -> None:
    proxy = _proxy(gk, tmp_path, mode="report")
    site = fake_sites.linkedin
    assert _post(proxy, site, "session_password=pw", {"Content-Type": FORM}).status_code == 200
    assert len(site.requests_to(PATH)) == 1
    assert proxy.metric("gatekeeper_logins_total", service="linkedin",
                        result="unrecognized") == 1
    assert proxy.metric("gatekeeper_would_block_total", service="linkedin",
                        reason="unverifiable_login") == 1
    assert proxy.metric("gatekeeper_blocked_total", service="linkedin") == 0
