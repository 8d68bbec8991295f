"""The credential guard's core (gatekeeper.core.credentials) and the readers it relies on:
JSON inside form values and JSON strings (bounded), session tokens in headers and in login
responses (gatekeeper.core.logins)."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest

from gatekeeper.core.credentials import (
    DEFAULT_CREDENTIAL_FIELDS,
    basic_names_app,
    credential_fields,
    form_credential,
    form_like,
    guard_form,
    guard_headers,
    guard_message,
    header_credential,
    protobuf_passwords,
    readable_body,
)
from gatekeeper.core.logins import (
    MAX_EMBEDDED_DEPTH,
    UNREADABLE_TOKEN,
    LoginResult,
    form_tokens,
    issued_cookies,
    issued_tokens,
    make_target,
    read_form,
    read_json,
    request_tokens,
    session_token,
)
from gatekeeper.core.model import (
    Access,
    LoginRule,
    ProtobufFields,
    Reason,
    Service,
    SessionTokens,
)
from gatekeeper.core.protobuf import read_message

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
FIELDS = credential_fields(DEFAULT_CREDENTIAL_FIELDS)
q = urllib.parse.quote


def _credential(content_type: str, body: str | bytes, query: str = "") -> str | None:
    raw = body.encode() if isinstance(body, str) else body
    form = read_form(content_type, raw, query)
    assert form is not None
    return form_credential(form, FIELDS)


CARRIES = [
    ("urlencoded password", FORM, "email=a%40b.c&pass=hunter2"),
    ("Facebook encpass", FORM, "email=a&encpass=%23PWD_BROWSER%3A5%3A1%3Ax"),
    ("password case and dashes", FORM, "Session-Password=x"),
    ("JSON at depth", JSON, json.dumps({"a": [{"b": {"password": "x"}}]})),
    ("untyped JSON", "", json.dumps({"enter_password": {"password": "x"}})),
    ("signed_body JSON", FORM,
     "signed_body=SIGNATURE." + q(json.dumps({"username": "u", "enc_password": "x"}), safe="")),
    ("hex-signed body", FORM,
     "signed_body=" + "ab" * 32 + "." + q(json.dumps({"username": "u", "passwd": "x"}))),
    ("bloks params", FORM, "params=" + q(json.dumps(
        {"client_input_params": {"contact_point": "u", "password": "x"}}))),
    ("URL-encoded JSON in a value", FORM,
     "data=" + q(q(json.dumps({"options": {"password": "x"}})))),
    ("JSON string inside JSON", JSON, json.dumps({"variables": json.dumps({"password": "x"})})),
    ("password grant", FORM, "grant_type=password&username=u"),
    ("password grant, any case", FORM, "grant_type=PASSWORD&username=u"),
    ("xAuth", FORM, "x_auth_mode=client_auth&x_auth_username=u"),
    ("Graph credentials_type", FORM, "email=u&credentials_type=password&pw=x"),
    ("#PWD_ under an unknown name", FORM, "u=a&secret_thing=%23PWD_INSTAGRAM%3A4%3A1%3Ax"),
    ("PHP-style name", FORM, "password[]=x"),
    ("multipart", "multipart/form-data; boundary=b",
     '--b\r\nContent-Disposition: form-data; name="password"\r\n\r\nx\r\n--b--\r\n'),
    ("in the query of a POST", FORM, "", "password=x"),
]

ORDINARY = [
    ("Facebook post (GraphQL)", FORM, "av=1&__user=1&fb_dtsg=NAc&fb_api_req_friendly_name="
     "ComposerStoryCreateMutation&variables=" + q(json.dumps(
         {"input": {"message": {"text": "Open on Saturday"}, "actor_id": "1"}})) + "&doc_id=1"),
    ("Instagram comment", FORM, "signed_body=SIGNATURE." + q(json.dumps(
        {"comment_text": "nice", "_uid": "1", "_uuid": "u"}))),
    ("X CreateTweet", JSON, json.dumps({"variables": {"tweet_text": "hello", "media": {
        "media_entities": []}}, "queryId": "abc", "features": {"x": True}})),
    ("Reddit comment", FORM, "thing_id=t3_abc&text=Thanks&api_type=json"),
    ("LinkedIn message", JSON, json.dumps({"keyVersion": "LEGACY_INBOX", "conversationCreate": {
        "eventCreate": {"value": {"com.linkedin.voyager.messaging.create.MessageCreate": {
            "body": "password reset is on the intranet"}}}}})),
    ("Reddit refresh grant", FORM, "grant_type=refresh_token&refresh_token=abc"),
    ("empty password field", FORM, "email=a&encpass=&pass="),
    ("text that only looks like JSON", FORM, "text=%7Bnot+json+password%7D"),
    ("a post mentioning #PWD_", FORM, "text=see+%23PWD_+below"),
]


@pytest.mark.parametrize(("case", "content_type", "body", "query"),
                         [c if len(c) == 4 else (*c, "") for c in CARRIES],
                         ids=[c[0] for c in CARRIES])
def test_credentials_are_found_wherever_clients_put_them(case, content_type, body,
                                                         query) -> None:
    assert _credential(content_type, body, query) is not None, case


@pytest.mark.parametrize(("case", "content_type", "body"), ORDINARY, ids=[c[0] for c in ORDINARY])
def test_ordinary_requests_carry_no_credential(case, content_type, body) -> None:
    assert _credential(content_type, body) is None, case


def test_a_post_that_starts_with_the_prefix_is_a_credential() -> None:
    """The prefix test is on the value's start: a post whose text begins `#PWD_` counts
    (accepted: no client posts such text)."""
    assert _credential(FORM, "text=%23PWD_x") == "text"


def test_per_service_fields_add_to_the_defaults() -> None:
    fields = credential_fields((*DEFAULT_CREDENTIAL_FIELDS, "pin_code"))
    form = read_form(FORM, b"pin_code=1234")
    assert form is not None and form_credential(form, fields) == "pin_code"
    assert form_credential(form, FIELDS) is None


def test_embedded_json_is_bounded_in_depth() -> None:
    value: str = json.dumps({"password": "x"})
    for _ in range(MAX_EMBEDDED_DEPTH):
        value = json.dumps({"v": value})
    assert read_form(JSON, value.encode()) is not None  # the deepest level allowed
    assert read_form(JSON, json.dumps({"v": value}).encode()) is None  # one more: refused


def test_embedded_json_is_bounded_in_fields() -> None:
    inner = json.dumps({f"k{i}": "v" for i in range(6000)})
    body = json.dumps({"a": inner, "b": inner}).encode()  # 12,000 pairs once expanded
    assert read_form(JSON, body) is None


@pytest.mark.parametrize(("headers", "basic_app", "found"), [
    ([("Authorization", "Basic dTpw")], False, "Authorization"),
    ([("authorization", "basic dTpw")], False, "authorization"),
    ([("Authorization", "Basic Y2xpZW50Og==")], True, None),  # an app's id (Reddit)
    ([("Authorization", "Bearer AAAA")], False, None),  # X's public app token, session tokens
    ([("X-Auth-Password", "x")], False, "X-Auth-Password"),  # tweepy 3 sent xAuth as headers
    ([("x_auth_mode", "client_auth")], False, "x_auth_mode"),
    ([("Cookie", "password=x")], False, None),
])
def test_header_credentials(headers, basic_app, found) -> None:
    assert header_credential(headers, FIELDS, basic_app) == found


def test_basic_names_an_app_only_on_its_paths() -> None:
    patterns = (re.compile(r"^/api/v1/access_token/?$"),)
    assert basic_names_app(patterns, make_target("POST", ["www.reddit.com"],
                                                 "/api/v1/access_token"))
    assert not basic_names_app(patterns, make_target("POST", ["www.reddit.com"], "/api/login"))


@pytest.mark.parametrize(("method", "content_type", "read"), [
    ("POST", FORM, True), ("PUT", JSON, True), ("PATCH", "", True),
    ("POST", "multipart/form-data; boundary=x", True), ("POST", "text/plain", True),
    ("GET", FORM, False), ("DELETE", FORM, False),
    ("POST", "image/jpeg", False), ("POST", "application/octet-stream", False),
    ("POST", "application/grpc-web+proto", False), ("POST", "video/mp4", False),
])
def test_which_bodies_the_guard_reads(method, content_type, read) -> None:
    assert readable_body(method, content_type) is read


def test_form_like_bodies() -> None:
    assert form_like(FORM + "; charset=UTF-8") and form_like(JSON)
    assert form_like("application/x+json")
    assert not form_like("multipart/form-data; boundary=x") and not form_like("")


def test_uploaded_files_in_multipart_are_not_decoded() -> None:
    body = (b'--b\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0binary\r\n"
            b'--b\r\nContent-Disposition: form-data; name="caption"\r\n\r\nhello\r\n--b--\r\n')
    form = read_form("multipart/form-data; boundary=b", body)
    assert form is not None and form.values("photo") == [None]
    assert form_credential(form, FIELDS) is None


# --- session tokens -----------------------------------------------------------------------

INSTAGRAM = SessionTokens(
    headers=("authorization", "ig-u-ds-user-id"),
    issued_headers=("ig-set-authorization", "ig-set-ig-u-ds-user-id"),
    issued_pattern=re.compile(r"Bearer (IGT:[0-9]+:[A-Za-z0-9+/=_-]+)"),
)
REDDIT = SessionTokens(headers=("authorization",), hosts=frozenset({"oauth.reddit.com"}),
                       issued_fields=("access_token",))


@pytest.mark.parametrize(("value", "token"), [
    ("Bearer IGT:2:abc", "IGT:2:abc"), ("bearer abc", "abc"), ("OAuth EAAB", "EAAB"),
    ("IGT:2:abc", "IGT:2:abc"), ("  ", None), ("Bearer ", None), ("Basic dTpw", None),
])
def test_session_token(value: str, token: str | None) -> None:
    assert session_token(value) == token


X_XAUTH = SessionTokens(headers=("authorization",), schemes=frozenset({"oauth"}),
                       params=("oauth_token",), hosts=frozenset({"api.x.com"}),
                       issued_fields=("oauth_token",))
OAUTH1 = ('OAuth oauth_consumer_key="3nVu", oauth_nonce="n", oauth_signature="s%3D", '
          'oauth_signature_method="HMAC-SHA1", oauth_timestamp="1", oauth_token="1-ab%2Fc", '
          'oauth_version="1.0"')


def test_oauth1_header_carries_its_oauth_token_parameter() -> None:
    assert session_token(OAUTH1) == "1-ab/c"
    assert session_token('OAuth oauth_consumer_key="k", oauth_signature="s"') is None  # sign-in
    twice = OAUTH1 + ', oauth_token="2-other"'
    assert session_token(twice) == UNREADABLE_TOKEN  # never bound: refused
    assert session_token("OAuth EAAB==") == "EAAB=="  # Facebook's single Graph token


def test_x_reads_only_oauth_never_its_app_wide_bearer() -> None:
    target = make_target("GET", ["api.x.com"], "/1.1/statuses/home_timeline.json")
    bearer = [("Authorization", "Bearer AAAAAAAAAAAAAAAAAAAAANRILgAA")]
    assert request_tokens(X_XAUTH, target, bearer) == []
    assert request_tokens(X_XAUTH, target, [("Authorization", OAUTH1)]) == ["1-ab/c"]
    with_query = make_target("GET", ["api.x.com"], "/1.1/account/verify_credentials.json",
                             "oauth_token=1-q&oauth_consumer_key=k")
    assert request_tokens(X_XAUTH, with_query, []) == ["1-q"]
    bad = make_target("GET", ["api.x.com"], "/", "oauth_token=%ff")
    assert request_tokens(X_XAUTH, bad, []) == [UNREADABLE_TOKEN]


def test_xauth_answer_is_form_encoded() -> None:
    body = read_form(FORM, b"oauth_token=1-abc&oauth_token_secret=def&user_id=1")
    assert issued_tokens(X_XAUTH, [], body, None) == ["1-abc"]


def test_graph_tokens_in_form_and_cookies_in_the_json_answer() -> None:
    graph = SessionTokens(params=("access_token",), hosts=frozenset({"graph.facebook.com"}))
    target = make_target("POST", ["graph.facebook.com"], "/me/feed")
    form = read_form(FORM, b"message=hi&access_token=EAAB1")
    assert form_tokens(graph, target, form) == ["EAAB1"]
    assert form_tokens(graph, make_target("POST", ["www.facebook.com"], "/x"), form) == []
    assert form_tokens(graph, target, None) == []
    answer = json.dumps({"access_token": "EAAB1", "session_cookies": [
        {"name": "c_user", "value": "100001"}, {"name": "xs", "value": "42:abc"},
        {"name": "c_user", "value": 7}]}).encode()
    assert issued_cookies(answer, ["session_cookies"], "c_user") == ["100001"]
    assert issued_cookies(b"not json", ["session_cookies"], "c_user") == []


def test_request_tokens_only_on_the_token_hosts() -> None:
    headers = [("Authorization", "bearer abc"), ("User-Agent", "praw")]
    assert request_tokens(REDDIT, make_target("GET", ["oauth.reddit.com"], "/api/v1/me"),
                          headers) == ["abc"]
    assert request_tokens(REDDIT, make_target("GET", ["www.reddit.com"], "/"), headers) == []
    assert request_tokens(INSTAGRAM, make_target("GET", ["i.instagram.com"], "/"), [
        ("Authorization", "Bearer IGT:2:x"), ("IG-U-DS-USER-ID", "123"),
        ("Authorization", "")]) == ["IGT:2:x", "123"]


def test_issued_tokens_from_headers_json_and_escaped_bloks_text() -> None:
    headers = [("ig-set-authorization", "Bearer IGT:2:aGVsbG8="),
               ("ig-set-ig-u-ds-user-id", "123")]
    assert issued_tokens(INSTAGRAM, headers, None, None) == ["IGT:2:aGVsbG8=", "123"]
    login_response = json.dumps({"headers": json.dumps(
        {"IG-Set-Authorization": "Bearer IGT:2:Ym9keQ=="})})
    action = f'(bk.action.caa.HandleLoginResponse, {json.dumps(login_response)})'
    text = json.dumps({"layout": {"bloks_payload": {"action": action}}})
    assert issued_tokens(INSTAGRAM, [], None, text) == ["IGT:2:Ym9keQ=="]
    body = read_json(json.dumps({"access_token": "r-abc", "token_type": "bearer"}).encode())
    assert issued_tokens(REDDIT, [], body, None) == ["r-abc"]
    assert read_json(b"not json") is None


# --- the guard's verdicts -----------------------------------------------------------------

def _service(**fields) -> Service:
    return Service("s", "S", ("s.example",), credential_fields=FIELDS, **fields)


def test_guard_form_verdicts() -> None:
    service = _service()
    form = read_form(FORM, b"user=me&pass=x")
    assert guard_form(service, FORM, form).detail == "unrecognized_sign_in"
    assert guard_form(service, FORM, form).reason is Reason.UNVERIFIABLE_LOGIN
    assert guard_form(service, FORM, read_form(FORM, b"text=hi")) is None
    assert guard_form(service, JSON, None).detail == "unreadable_body"  # a form that is not
    assert guard_form(service, "multipart/form-data; boundary=x", None) is None  # an upload


def test_guard_headers_verdicts() -> None:
    basic = [("Authorization", "Basic dTpw")]
    target = make_target("POST", ["www.s.example"], "/api/v1/access_token")
    assert guard_headers(_service(), target, basic).result is LoginResult.UNRECOGNIZED
    apps = (re.compile(r"^/api/v1/access_token$"),)
    assert guard_headers(_service(basic_auth_apps=apps), target, basic) is None
    everyone = _service(access=Access.EVERYONE)  # a tenant-restriction service: not guarded
    assert guard_headers(everyone, target, basic) is None


def test_protobuf_guard_reads_the_sign_in_hosts_only() -> None:
    rule = LoginRule(path=re.compile("^/janus/Login$"), fields=("2",),
                     hosts=frozenset({"accounts.s.example"}),
                     protobuf=ProtobufFields(((2,),), ((5, None, 1),)))
    service = _service(logins=(rule,))
    grpc = "application/grpc-web+proto"
    on_host = make_target("POST", ["accounts.s.example"], "/janus/LoginV2")
    assert protobuf_passwords(service, on_host, grpc) == ((5, None, 1),)
    assert protobuf_passwords(service, on_host, FORM) == ()
    assert protobuf_passwords(service, make_target("POST", ["web.s.example"], "/x"), grpc) == ()
    assert protobuf_passwords(service, make_target("GET", ["accounts.s.example"], "/x"),
                              grpc) == ()
    found = read_message("application/x-protobuf", b"\x2a\x05\x1a\x03\x0a\x01p",
                         [(5, None, 1)])
    assert guard_message(found) is not None
    assert guard_message(read_message("application/x-protobuf", b"\x0a\x01a",
                                      [(5, None, 1)])) is None
