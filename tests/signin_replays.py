"""The sign-in requests public clients and the sites' own front ends send, step by step, for
every shipped service that needs a grant: the data of tests/test_signin_replays.py.

Each `Replay` is one client's flow in order (method, URL with query, headers, body encoding,
what the upstream answers), with the source it was read from (docs/catalog.md, "sign-in
paths"; the research notes name the commits). `{account}` is where the client puts the account
name (`%7Baccount%7D` inside URL-encoded JSON), `{token}` a fresh session value the fake
upstream hands out. Per service there is also an invented sign-in endpoint carrying a password
(the catalog does not know it: refused) and ordinary requests that must pass.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from catalog_samples import (
    bloks_params,
    grpc_web,
    mix,
    protobuf_field,
    signed_body,
    snapchat_login,
    snapchat_password,
)

FORM = "application/x-www-form-urlencoded"
FORM_UTF8 = FORM + "; charset=UTF-8"
JSON = "application/json"
GRPC_WEB = "application/grpc-web+proto"
X_PUBLIC_BEARER = ("Bearer AAAAAAAAAAAAAAAAAAAAANRILgAAAAAAnNwIzUejRCOuH5E6I8xnZz4puTs%3D1Zv7"
                   "ttfk8LF81IUq16cHjhLTvJu4FA33AGWWjCpTnA")
q = urllib.parse.quote


@dataclass(frozen=True)
class Step:
    """One request of a flow, and what the upstream answers to it."""

    method: str
    url: str
    content_type: str = ""
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    checked: bool = False  # the proxy checks the account this step names
    mixed: bool = False  # TikTok mix_mode=1: the account travels XOR 5, hex-encoded
    answer: tuple[tuple[str, str], ...] = ()  # response headers ({token})
    reply: str = ""  # response body ({token}); JSON when it starts with `{`
    build: Callable[[str], bytes] | None = None  # a binary body (protobuf) for an account

    def body_for(self, account: str) -> bytes:
        if self.build is not None:
            return self.build(account)
        if self.mixed:
            account = mix(account)
        body = self.body.replace("{account}", account)
        return body.replace("%7Baccount%7D", q(account, safe="")).encode()

    @property
    def host(self) -> str:
        return self.url.split("/", 3)[2]

    @property
    def path(self) -> str:
        return "/" + self.url.split("/", 3)[3].split("?", 1)[0]


@dataclass(frozen=True)
class Session:
    """How the client presents its session afterwards: a cookie (from its jar; `domain` is
    where a forged one is planted) or a header whose value is `value` with the token."""

    url: str  # may hold {token} (a token in the query)
    cookie: str = ""
    domain: str = ""
    header: str = ""
    value: str = "{token}"
    method: str = "GET"
    planted: bool = False  # the client puts the cookie in its jar itself (from a JSON reply)
    marker: tuple[tuple[str, str], ...] = ()  # cookies that say "signed in" beside a forged one
    body: str = ""  # a urlencoded form ({token})


@dataclass(frozen=True)
class Replay:
    service: str
    name: str
    source: str
    steps: tuple[Step, ...]
    session: Session | None

    @property
    def id(self) -> str:
        return f"{self.service}-{self.name}"


def _json_reply(document: dict) -> str:
    return json.dumps(document)


def _bloks_login_reply() -> str:
    """Instagram's bloks answer: the session header inside JSON strings inside a bloks action
    string (instagrapi bloks.py bloks_extract_login_response)."""
    login_response = json.dumps({
        "login_response": json.dumps({"logged_in_user": {"pk": 1}, "status": "ok"}),
        "headers": json.dumps({"IG-Set-Authorization": "Bearer IGT:2:{token}",
                               "ig-set-ig-u-ds-user-id": "1"}),
        "cookies": "sessionid=abc; ds_user_id=1",
    })
    handle = f"(bk.action.caa.HandleLoginResponse, {json.dumps(login_response)})"
    action = f"(bk.action.core.TakeLast, {handle})"
    return json.dumps({"layout": {"bloks_payload": {"action": action}}, "status": "ok"})


_GRAPH_LOGIN_REPLY = _json_reply({
    "session_key": "5.abc", "uid": 1, "access_token": "EAAAAU{token}",
    "session_cookies": [{"name": "c_user", "value": "{token}", "domain": ".facebook.com"},
                        {"name": "xs", "value": "42:abc", "domain": ".facebook.com"}]})
_GRAPH_LOGIN = Step(
    "POST", "https://b-graph.facebook.com/auth/login", FORM,
    "adid=0a1b2c3d&format=json&device_id=0a1b2c3d-4e5f&email={account}&password=hunter2"
    "&generate_analytics_claim=1&credentials_type=password&generate_session_cookies=1"
    "&locale=en_US&method=auth.login&access_token=350685531728%7C62f8ce9f74b12f84c123cc23437a4a32",
    headers=(("X-FB-Friendly-Name", "authenticate"),), checked=True, reply=_GRAPH_LOGIN_REPLY)


REPLAYS: tuple[Replay, ...] = (
    # --- Facebook ---------------------------------------------------------------------------
    Replay("facebook", "web", "PUB (several), medium", (
        Step("GET", "https://www.facebook.com/", answer=(
            ("Set-Cookie", "datr=d4tR; Domain=.facebook.com; Path=/; Secure"),)),
        Step("POST", "https://www.facebook.com/login/?privacy_mutation_token=eyJ0eXBlIjowfQ%3D%3D",
             FORM, "jazoest=21000&lsd=AVqA1b2C3d4&email={account}&login_source="
             "comet_headerless_login&next=&encpass=%23PWD_BROWSER%3A5%3A1700000000%3AAbCdEf",
             checked=True, answer=(
                 ("Set-Cookie", "c_user={token}; Domain=.facebook.com; Path=/; Secure"),
                 ("Set-Cookie", "xs=42%3Aabc; Domain=.facebook.com; Path=/; Secure; HttpOnly"))),
    ), Session("https://www.facebook.com/groups/feed/", cookie="c_user", domain=".facebook.com")),
    Replay("facebook", "mbasic", "PUB (several), medium", (
        Step("GET", "https://mbasic.facebook.com/login/"),
        Step("POST", "https://mbasic.facebook.com/login/device-based/regular/login/?refsrc="
             "deprecated&lwv=100", FORM, "lsd=AVqA1b2C3d4&jazoest=2950&m_ts=1700000000&li=abc"
             "&try_number=0&unrecognized_tries=0&email={account}&pass=hunter2&login=Log+In",
             checked=True, answer=(
                 ("Set-Cookie", "c_user={token}; Domain=.facebook.com; Path=/; Secure"),)),
    ), Session("https://mbasic.facebook.com/home.php", cookie="c_user", domain=".facebook.com")),
    Replay("facebook", "messenger", "FBC fbchat _session.py v2.0.0a5, medium", (
        Step("GET", "https://www.messenger.com/"),
        Step("POST", "https://www.messenger.com/login/password/", FORM,
             "jazoest=2950&lsd=AVqA1b2C3d4&initial_request_id=A1b2&timezone=-60&lgnrnd=123456"
             "&lgnjs=n&email={account}&pass=hunter2&login=1&persistent=1", checked=True,
             answer=(("Set-Cookie", "c_user={token}; Domain=.messenger.com; Path=/; Secure"),)),
    ), Session("https://www.messenger.com/t/100000000000002", cookie="c_user",
               domain=".messenger.com")),
    Replay("facebook", "graph", "PUB (fbchat fork, scripts), medium", (
        _GRAPH_LOGIN,
    ), Session("https://graph.facebook.com/me?fields=id,name", header="Authorization",
               value="OAuth EAAAAU{token}")),
    Replay("facebook", "graph-query", "PUB (facebook-sdk style GET), medium", (
        _GRAPH_LOGIN,
    ), Session("https://graph.facebook.com/me?fields=id,name&access_token=EAAAAU{token}")),
    Replay("facebook", "graph-form", "PUB (facebook-sdk style POST), medium", (
        _GRAPH_LOGIN,
    ), Session("https://graph.facebook.com/me/feed", method="POST",
               body="message=Open+day&access_token=EAAAAU{token}")),
    Replay("facebook", "graph-cookies", "PUB (fbchat fork: session_cookies to the jar), medium", (
        _GRAPH_LOGIN,
    ), Session("https://www.facebook.com/home.php", cookie="c_user", domain=".facebook.com",
               planted=True)),
    # --- Instagram --------------------------------------------------------------------------
    Replay("instagram", "web", "ILO instaloader v4.15.1 instaloadercontext.py, high", (
        Step("GET", "https://www.instagram.com/", answer=(
            ("Set-Cookie", "csrftoken=c5rf; Domain=.instagram.com; Path=/; Secure"),)),
        Step("POST", "https://www.instagram.com/api/v1/web/accounts/login/ajax/", FORM,
             "enc_password=%23PWD_INSTAGRAM_BROWSER%3A0%3A1700000000%3Ahunter2"
             "&username={account}&queryParams=%7B%7D&optIntoOneTap=false",
             headers=(("X-CSRFToken", "c5rf"), ("X-Requested-With", "XMLHttpRequest"),
                      ("X-IG-App-ID", "936619743392459")), checked=True,
             answer=(("Set-Cookie", "ds_user_id={token}; Domain=.instagram.com; Path=/; Secure"),
                     ("Set-Cookie", "sessionid=1%3Aabc; Domain=.instagram.com; Path=/; Secure")),
             reply=_json_reply({"authenticated": True, "userId": "1", "status": "ok"})),
    ), Session("https://www.instagram.com/api/v1/users/web_profile_info/?username=clinic",
               cookie="ds_user_id", domain=".instagram.com")),
    Replay("instagram", "app", "IGR instagrapi d5b72324b2b0 auth.py login(), high", (
        Step("POST", "https://i.instagram.com/api/v1/accounts/contact_point_prefill/", FORM_UTF8,
             signed_body({"phone_id": "57d64c41", "usage": "prefill"})),
        Step("POST", "https://i.instagram.com/api/v1/accounts/login/", FORM_UTF8, signed_body({
            "jazoest": "22578", "country_codes": json.dumps([{"country_code": "1",
                                                              "source": ["default"]}]),
            "phone_id": "57d64c41", "enc_password": "#PWD_INSTAGRAM:4:1700000000:QWJjZA==",
            "username": "{account}", "guid": "0a1b2c3d", "device_id": "android-1234567890abcdef",
            "google_tokens": "[]", "login_attempt_count": "0"}),
            headers=(("X-IG-App-ID", "567067343352427"),
                     ("User-Agent", "Instagram 269.0.0.18.75 Android")), checked=True,
            answer=(("ig-set-authorization", "Bearer IGT:2:{token}"),
                    ("ig-set-ig-u-ds-user-id", "1")),
            reply=_json_reply({"logged_in_user": {"pk": 1}, "status": "ok"})),
    ), Session("https://i.instagram.com/api/v1/feed/reels_tray/", header="Authorization",
               value="Bearer IGT:2:{token}")),
    Replay("instagram", "bloks", "IGR instagrapi d5b72324b2b0 bloks.py, high", (
        Step("POST", "https://b.i.instagram.com/api/v1/bloks/async_action/com.bloks.www.bloks.caa"
             ".login.async.send_login_request/", FORM_UTF8, bloks_params({
                 "client_input_params": {"contact_point": "{account}",
                                         "password": "#PWD_INSTAGRAM:4:1700000000:QWJjZA==",
                                         "device_id": "android-1234567890abcdef"},
                 "server_params": {"credential_type": "password"}}),
             headers=(("X-FB-Friendly-Name", "IgApi: bloks/async_action/com.bloks.www.bloks.caa"
                                             ".login.async.send_login_request/"),),
             checked=True, reply=_bloks_login_reply()),
    ), Session("https://i.instagram.com/api/v1/feed/timeline/", header="Authorization",
               value="Bearer IGT:2:{token}", method="POST")),
    # --- Threads ----------------------------------------------------------------------------
    Replay("threads", "web", "PUB (several), medium", (
        Step("GET", "https://www.threads.net/login/", answer=(
            ("Set-Cookie", "csrftoken=c5rf; Domain=.threads.net; Path=/; Secure"),)),
        Step("POST", "https://www.threads.net/api/v1/web/accounts/login/ajax/", FORM,
             "enc_password=%23PWD_INSTAGRAM_BROWSER%3A0%3A1700000000%3Ahunter2"
             "&optIntoOneTap=false&queryParams=%7B%22is_from_threads%22%3A%22true%22%7D"
             "&stopDeletionNonce=&textAppStopDeletionToken=&username={account}",
             headers=(("X-CSRFToken", "c5rf"), ("X-IG-App-ID", "238260118697367")), checked=True,
             answer=(("Set-Cookie", "ds_user_id={token}; Domain=.threads.net; Path=/; Secure"),)),
    ), Session("https://www.threads.net/@clinic", cookie="ds_user_id", domain=".threads.net")),
    # --- LinkedIn ---------------------------------------------------------------------------
    Replay("linkedin", "api-client", "LIA linkedin-api eeeab320733f client.py, high", (
        Step("GET", "https://www.linkedin.com/uas/authenticate",
             headers=(("X-Li-User-Agent", "LIAuthLibrary:0.0.3 com.linkedin.android:4.1.881"),
                      ("User-Agent", "ANDROID OS")),
             answer=(("Set-Cookie", 'JSESSIONID="ajax:1234"; Domain=.linkedin.com; Path=/'),)),
        Step("POST", "https://www.linkedin.com/uas/authenticate", FORM,
             "session_key={account}&session_password=hunter2&JSESSIONID=%22ajax%3A1234%22",
             headers=(("X-Li-User-Agent", "LIAuthLibrary:0.0.3 com.linkedin.android:4.1.881"),
                      ("User-Agent", "ANDROID OS")), checked=True,
             answer=(("Set-Cookie", "li_at={token}; Domain=.linkedin.com; Path=/; Secure"),),
             reply=_json_reply({"login_result": "PASS"})),
    ), Session("https://www.linkedin.com/voyager/api/feed/updatesV2?count=10&q=chronFeed",
               cookie="li_at", domain=".linkedin.com")),
    Replay("linkedin", "web", "PUB (several), medium-high", (
        Step("GET", "https://www.linkedin.com/login"),
        Step("POST", "https://www.linkedin.com/checkpoint/lg/login-submit", FORM,
             "csrfToken=ajax%3A1234&session_key={account}&ac=0&loginFailureCount=0"
             "&sIdString=0a1b&parentPageKey=d_checkpoint_lg_consumerLogin&session_password="
             "hunter2&loginCsrfParam=0a1b2c3d", checked=True,
             answer=(("Set-Cookie", "li_at={token}; Domain=.linkedin.com; Path=/; Secure"),)),
    ), Session("https://www.linkedin.com/feed/", cookie="li_at", domain=".linkedin.com")),
    Replay("linkedin", "older-form", "catalog, medium", (
        Step("POST", "https://www.linkedin.com/uas/login-submit", FORM,
             "session_key={account}&session_password=hunter2&isJsEnabled=false"
             "&loginCsrfParam=0a1b", checked=True,
             answer=(("Set-Cookie", "li_at={token}; Domain=.linkedin.com; Path=/; Secure"),)),
    ), Session("https://www.linkedin.com/feed/", cookie="li_at", domain=".linkedin.com")),
    # --- X ----------------------------------------------------------------------------------
    Replay("x", "web-flow", "TWK twikit c3b722086, TWS twscrape 9745b021d8a7, high", (
        Step("POST", "https://api.x.com/1.1/guest/activate.json",
             headers=(("Authorization", X_PUBLIC_BEARER),),
             reply=_json_reply({"guest_token": "1700000000000000000"})),
        Step("POST", "https://api.x.com/1.1/onboarding/task.json?flow_name=login", JSON,
             json.dumps({"input_flow_data": {"flow_context": {"start_location": {
                 "location": "splash_screen"}}}, "subtask_versions": {"action_list": 2}}),
             headers=(("Authorization", X_PUBLIC_BEARER), ("x-guest-token", "17000")),
             reply=_json_reply({"flow_token": "g;1:-1:a:0", "subtasks": []})),
        Step("POST", "https://api.x.com/1.1/onboarding/task.json", JSON, json.dumps({
            "flow_token": "g;1:-1:a:1", "subtask_inputs": [{
                "subtask_id": "LoginJsInstrumentationSubtask",
                "js_instrumentation": {"response": "{}", "link": "next_link"}}]}),
             headers=(("Authorization", X_PUBLIC_BEARER), ("x-guest-token", "17000"))),
        Step("POST", "https://api.x.com/1.1/onboarding/task.json", JSON, json.dumps({
            "flow_token": "g;1:-1:a:2", "subtask_inputs": [{
                "subtask_id": "LoginEnterUserIdentifierSSO", "settings_list": {
                    "setting_responses": [{"key": "user_identifier", "response_data": {
                        "text_data": {"result": "{account}"}}}], "link": "next_link"}}]}),
             headers=(("Authorization", X_PUBLIC_BEARER), ("x-guest-token", "17000")),
             checked=True),
        Step("POST", "https://api.x.com/1.1/onboarding/task.json", JSON, json.dumps({
            "flow_token": "g;1:-1:a:3", "subtask_inputs": [{
                "subtask_id": "LoginEnterAlternateIdentifierSubtask",
                "enter_text": {"text": "{account}", "link": "next_link"}}]}),
             headers=(("Authorization", X_PUBLIC_BEARER), ("x-guest-token", "17000")),
             checked=True),
        Step("POST", "https://api.x.com/1.1/onboarding/task.json", JSON, json.dumps({
            "flow_token": "g;1:-1:a:4", "subtask_inputs": [{
                "subtask_id": "LoginEnterPassword",
                "enter_password": {"password": "hunter2", "link": "next_link"}}]}),
             headers=(("Authorization", X_PUBLIC_BEARER), ("x-guest-token", "17000")),
             answer=(("Set-Cookie", "twid=u%3D{token}; Domain=.x.com; Path=/; Secure"),
                     ("Set-Cookie", "auth_token=abc; Domain=.x.com; Path=/; Secure; HttpOnly"),
                     ("Set-Cookie", "ct0=c5rf; Domain=.x.com; Path=/; Secure"))),
    ), Session("https://x.com/i/api/graphql/abc/HomeTimeline?variables=%7B%22count%22%3A20%7D",
               cookie="twid", domain=".x.com")),
    Replay("x", "xauth", "PUB (twitter4j-style clients), low-medium", (
        Step("POST", "https://api.x.com/oauth/access_token", FORM,
             "x_auth_mode=client_auth&x_auth_password=hunter2&x_auth_username={account}",
             headers=(("Authorization", 'OAuth oauth_consumer_key="3nVuSoBZnx6U4vzUxf5w", '
                       'oauth_nonce="n", oauth_signature="s", oauth_signature_method='
                       '"HMAC-SHA1", oauth_timestamp="1700000000", oauth_version="1.0"'),),
             checked=True, reply="oauth_token=1-{token}&oauth_token_secret=def&user_id=1"),
    ), Session("https://api.x.com/1.1/statuses/home_timeline.json?count=20",
               header="Authorization", value='OAuth oauth_consumer_key="3nVuSoBZnx6U4vzUxf5w", '
               'oauth_nonce="n2", oauth_signature="s2", oauth_signature_method="HMAC-SHA1", '
               'oauth_timestamp="1700000100", oauth_token="1-{token}", oauth_version="1.0"')),
    # --- Reddit -----------------------------------------------------------------------------
    Replay("reddit", "script-app", "PRC prawcore 06e47308ab98 auth.py ScriptAuthorizer, high", (
        Step("POST", "https://www.reddit.com/api/v1/access_token", FORM,
             "grant_type=password&password=hunter2&username={account}",
             headers=(("Authorization", "Basic Y2xpZW50LWlkOmNsaWVudC1zZWNyZXQ="),
                      ("User-Agent", "clinic-bot/1.0 by u/clinic prawcore/3.0")), checked=True,
             reply=_json_reply({"access_token": "{token}", "token_type": "bearer",
                                "expires_in": 86400, "scope": "*"})),
    ), Session("https://oauth.reddit.com/api/v1/me", header="Authorization",
               value="bearer {token}")),
    Replay("reddit", "web", "PUB (several, 2025-26), medium", (
        Step("GET", "https://www.reddit.com/login/", answer=(
            ("Set-Cookie", "csrf_token=c5rf; Domain=.reddit.com; Path=/; Secure"),)),
        Step("POST", "https://www.reddit.com/svc/shreddit/account/login/check_is_oidc_required",
             JSON, '{"userIdentifier": "{account}", "csrf_token": "c5rf"}'),
        Step("POST", "https://www.reddit.com/svc/shreddit/account/login", FORM,
             "username={account}&password=hunter2&recaptcha_token=03AF&recaptcha_use_checkbox="
             "false&recaptcha_action=v1%2Fweb%2Flogin_with_password&csrf_token=c5rf",
             checked=True, answer=(
                 ("Set-Cookie", "reddit_session={token}; Domain=.reddit.com; Path=/; Secure"),)),
    ), Session("https://www.reddit.com/r/python/", cookie="reddit_session", domain=".reddit.com")),
    # --- Pinterest --------------------------------------------------------------------------
    Replay("pinterest", "web", "PIN py3-pinterest fafcebfc4ede login(), medium", (
        # a signed-out visitor gets a _pinterest_sess too (a plain GET of / sets it, PUB)
        Step("GET", "https://www.pinterest.com/", answer=(
            ("Set-Cookie", "_pinterest_sess=TWc9PSZhbm9ueW1vdXM=; Domain=.pinterest.com; Path=/;"
                           " Secure"),
            ("Set-Cookie", "_auth=0; Domain=.pinterest.com; Path=/; Secure"))),
        Step("GET", "https://www.pinterest.com/login/?referrer=home_page", answer=(
            ("Set-Cookie", "csrftoken=c5rf; Domain=.pinterest.com; Path=/; Secure"),)),
        Step("POST", "https://www.pinterest.com/resource/UserSessionResource/create/", FORM,
             "source_url=%2Flogin%2F%3Freferrer%3Dhome_page&data=" + q(json.dumps(
                 {"options": {"username_or_email": "{account}", "password": "hunter2"},
                  "context": {}}), safe="") + "&_=1700000000000",
             headers=(("X-CSRFToken", "c5rf"), ("X-Requested-With", "XMLHttpRequest")),
             checked=True, answer=(
                 ("Set-Cookie", "_pinterest_sess={token}; Domain=.pinterest.com; Path=/; Secure"),
                 ("Set-Cookie", "_auth=1; Domain=.pinterest.com; Path=/; Secure"))),
    ), Session("https://www.pinterest.com/resource/UserHomefeedResource/get/?source_url=%2F"
               "&data=%7B%22options%22%3A%7B%7D%7D", cookie="_pinterest_sess",
               domain=".pinterest.com", marker=(("_auth", "1"),))),
    # --- Snapchat: gRPC-Web protobuf, the account and password by field number -------------
    Replay("snapchat", "web", "SNC snapcap-native 2aa89ca5bf12 login.ts, medium (numbers: low)", (
        Step("GET", "https://accounts.snapchat.com/v2/login?continue=%2Faccounts%2Fsso",
             answer=(("Set-Cookie", "sc-a-nonce=n0nce; Path=/; Secure; HttpOnly"),)),
        Step("POST", "https://accounts.snapchat.com/snap.security.WebAttestationService/"
             "BootstrapAttestationSession", GRPC_WEB,
             headers=(("x-grpc-web", "1"),), build=lambda _: grpc_web(protobuf_field(1, "www"))),
        Step("POST", "https://accounts.snapchat.com/snapchat.janus.api.WebLoginService/WebLogin",
             GRPC_WEB, headers=(("x-grpc-web", "1"),), checked=True, build=snapchat_login),
        Step("POST", "https://accounts.snapchat.com/snapchat.janus.api.WebLoginService/WebLogin",
             GRPC_WEB, headers=(("x-grpc-web", "1"),), build=lambda _: snapchat_password(),
             answer=(("Set-Cookie", "__Host-sc-a-auth-session={token}; Path=/; Secure; "
                                    "HttpOnly; SameSite=None"),)),
    ), Session("https://accounts.snapchat.com/accounts/v2/welcome",
               cookie="__Host-sc-a-auth-session", domain="accounts.snapchat.com")),
    # --- TikTok -----------------------------------------------------------------------------
    Replay("tiktok", "web", "PUB (2025 capture), TTX (mix_mode), medium", (
        Step("GET", "https://www.tiktok.com/login/phone-or-email/email", answer=(
            ("Set-Cookie", "passport_csrf_token=c5rf; Domain=.tiktok.com; Path=/; Secure"),)),
        Step("POST", "https://www.tiktok.com/passport/web/user/login/?aid=1459"
             "&account_sdk_source=web&language=en&msToken=abc&X-Bogus=DFSz", FORM,
             "mix_mode=1&username={account}&password=" + mix("hunter2") + "&aid=1459"
             "&is_sso=false&account_sdk_source=web&region=US&language=en"
             "&did=7300000000000000000&fixed_mix_mode=1",
             headers=(("x-tt-passport-csrf-token", "c5rf"),), checked=True, mixed=True,
             answer=(("Set-Cookie", "sessionid={token}; Domain=.tiktok.com; Path=/; Secure"),
                     ("Set-Cookie", "sid_tt={token}; Domain=.tiktok.com; Path=/; Secure"))),
    ), Session("https://www.tiktok.com/api/recommend/item_list/?aid=1988&count=30",
               cookie="sessionid", domain=".tiktok.com")),
)

# A sign-in endpoint the catalog does not know, per service, each in another encoding.
INVENTED: dict[str, Step] = {
    "facebook": Step("POST", "https://www.facebook.com/login/web/submit/?next=%2F", FORM,
                     "email={account}&pass=hunter2"),
    "instagram": Step("POST", "https://i.instagram.com/api/v1/accounts/login_v2/", FORM_UTF8,
                      signed_body({"username": "{account}",
                                   "enc_password": "#PWD_INSTAGRAM:4:1700000000:QWJj"})),
    "threads": Step("POST", "https://www.threads.net/api/v1/web/threads_login/", FORM,
                    "user={account}&secret=%23PWD_BROWSER%3A10%3A1700000000%3AAbCd"),
    "linkedin": Step("POST", "https://www.linkedin.com/voyager/api/authenticate", JSON,
                     '{"credentials": {"session_key": "{account}", "session_password": "x"}}'),
    "x": Step("POST", "https://api.x.com/1.1/account/login_verification.json", JSON,
              '{"subtask_inputs": [{"enter_password": {"password": "hunter2"}}]}'),
    "reddit": Step("POST", "https://www.reddit.com/svc/shreddit/account/login_v2", FORM,
                   "user={account}", headers=(("Authorization", "Basic bWU6aHVudGVyMg=="),)),
    "pinterest": Step("POST", "https://www.pinterest.com/resource/UserLoginResource/create/",
                      FORM, "data=" + q(json.dumps({"options": {
                          "email": "{account}", "password": "hunter2"}}), safe="")),
    "snapchat": Step("POST", "https://accounts.snapchat.com/accounts/login", FORM,
                     "username={account}&password=hunter2"),
    "tiktok": Step("POST", "https://www.tiktok.com/passport/web/account/login_v3/", FORM,
                   "mix_mode=1&email={account}&password=" + mix("hunter2"), mixed=True),
}

_FB_GRAPHQL = "av=1&__user=1&__a=1&fb_dtsg=NAcN0abc&jazoest=25478&lsd=AVqA1b2C3d4&doc_id=1&"


def _fb(name: str, variables: dict) -> str:
    return _FB_GRAPHQL + f"fb_api_req_friendly_name={name}&variables=" + q(
        json.dumps(variables), safe="")


_UPLOAD = "multipart/form-data; boundary=----WebKitFormBoundaryX1y2"


def _upload(field: str, filename: str, extra: str = "") -> str:
    extra_part = (f'------WebKitFormBoundaryX1y2\r\nContent-Disposition: form-data; '
                  f'name="caption"\r\n\r\n{extra}\r\n') if extra else ""
    return (f"{extra_part}------WebKitFormBoundaryX1y2\r\nContent-Disposition: form-data; "
            f'name="{field}"; filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
            "\xff\xd8\xff\xe0JFIF-image-bytes\r\n------WebKitFormBoundaryX1y2--\r\n")


# Ordinary use of a signed-in company account: feed, post, comment, search, upload, GraphQL.
ORDINARY: dict[str, tuple[Step, ...]] = {
    "facebook": (
        Step("POST", "https://www.facebook.com/api/graphql/", FORM, _fb(
            "CometNewsFeedPaginationQuery", {"count": 10, "cursor": None})),
        Step("POST", "https://www.facebook.com/api/graphql/", FORM, _fb(
            "ComposerStoryCreateMutation", {"input": {"message": {"text": "Open Saturday"},
                                                      "actor_id": "1"}})),
        Step("POST", "https://www.facebook.com/api/graphql/", FORM, _fb(
            "CometUFICreateCommentMutation", {"input": {"message": {"text": "Thanks!"},
                                                        "feedback_id": "ZmVlZGJhY2s6MQ=="}})),
        Step("GET", "https://www.facebook.com/search/top/?q=clinic"),
        Step("POST", "https://upload.facebook.com/ajax/react_composer/attachments/photo/upload"
             "?av=1&__user=1", _UPLOAD, _upload("farr", "poster.jpg")),
    ),
    "instagram": (
        Step("POST", "https://i.instagram.com/api/v1/feed/timeline/", FORM_UTF8,
             "feed_view_info=%5B%5D&phone_id=57d64c41&reason=cold_start_fetch&is_pull_to_refresh=0"),
        Step("GET", "https://i.instagram.com/api/v1/fbsearch/topsearch_flat/?query=clinic"),
        Step("POST", "https://i.instagram.com/api/v1/media/123_1/comment/", FORM_UTF8,
             signed_body({"comment_text": "Great work!", "_uid": "1", "_uuid": "0a1b"})),
        Step("POST", "https://i.instagram.com/rupload_igphoto/1700000000_0_123",
             "application/octet-stream", "\xff\xd8\xff\xe0JFIF-image-bytes",
             headers=(("X-Instagram-Rupload-Params", '{"upload_id":"1700000000"}'),)),
        Step("POST", "https://i.instagram.com/api/v1/media/configure/", FORM_UTF8,
             signed_body({"caption": "Open day", "upload_id": "1700000000", "_uid": "1"})),
        Step("POST", "https://www.instagram.com/graphql/query", FORM,
             "doc_id=1&variables=" + q(json.dumps({"shortcode": "abc"}), safe="")),
    ),
    "threads": (
        Step("POST", "https://www.threads.net/api/graphql", FORM,
             "lsd=AVq&doc_id=1&variables=" + q(json.dumps({"userID": "1"}), safe="")),
    ),
    "linkedin": (
        Step("GET", "https://www.linkedin.com/voyager/api/feed/updatesV2?count=10&q=chronFeed"),
        Step("GET", "https://www.linkedin.com/voyager/api/graphql?variables=(keywords:clinic)"
             "&queryId=voyagerSearchDashClusters.abc"),
        Step("POST", "https://www.linkedin.com/voyager/api/messaging/conversations?action=create",
             JSON, json.dumps({"keyVersion": "LEGACY_INBOX", "conversationCreate": {
                 "eventCreate": {"value": {"com.linkedin.voyager.messaging.create.MessageCreate":
                                           {"body": "Hello", "attachments": []}}},
                 "recipients": ["ACoAA"], "subtype": "MEMBER_TO_MEMBER"}})),
        Step("POST", "https://www.linkedin.com/voyager/api/feed/dash/followingStates/urn%3Ali%3A"
             "fsd_followingState%3Aurn%3Ali%3Afsd_company%3A1", JSON,
             '{"patch": {"$set": {"following": true}}}'),
    ),
    "x": (
        Step("GET", "https://x.com/i/api/graphql/abc/SearchTimeline?variables=%7B%22rawQuery"
             "%22%3A%22clinic%22%7D"),
        Step("POST", "https://x.com/i/api/graphql/abc/CreateTweet", JSON, json.dumps({
            "variables": {"tweet_text": "Open on Saturday", "media": {"media_entities": []}},
            "features": {"longform_notetweets_consumption_enabled": True}, "queryId": "abc"}),
             headers=(("Authorization", X_PUBLIC_BEARER), ("x-csrf-token", "c5rf"))),
        Step("POST", "https://x.com/i/api/graphql/abc/FavoriteTweet", JSON,
             '{"variables": {"tweet_id": "1"}, "queryId": "abc"}',
             headers=(("Authorization", X_PUBLIC_BEARER),)),
        Step("POST", "https://upload.x.com/i/media/upload.json?command=INIT&total_bytes=12"
             "&media_type=image%2Fjpeg", FORM, ""),
        Step("POST", "https://x.com/i/api/1.1/dm/new2.json", JSON,
             '{"conversation_id": "1-2", "text": "Hello", "request_id": "r1"}'),
    ),
    "reddit": (
        Step("POST", "https://oauth.reddit.com/api/comment/", FORM,
             "thing_id=t3_abc&text=Thanks%21&api_type=json"),
        Step("POST", "https://oauth.reddit.com/api/submit/", FORM,
             "sr=clinic&kind=self&title=Open+day&text=Saturday&api_type=json"),
        Step("POST", "https://oauth.reddit.com/api/vote/", FORM, "id=t3_abc&dir=1"),
        Step("GET", "https://oauth.reddit.com/r/clinic/search/?q=open&restrict_sr=1"),
        Step("POST", "https://oauth.reddit.com/api/media/asset.json", FORM,
             "filepath=poster.jpg&mimetype=image%2Fjpeg"),
    ),
    "pinterest": (
        Step("GET", "https://www.pinterest.com/resource/BaseSearchResource/get/?source_url="
             "%2Fsearch%2F&data=%7B%22options%22%3A%7B%22query%22%3A%22clinic%22%7D%7D"),
        Step("POST", "https://www.pinterest.com/resource/PinResource/create/", FORM,
             "source_url=%2F&data=" + q(json.dumps({"options": {
                 "board_id": "1", "description": "Open day", "link": "https://clinic.example",
                 "image_url": "https://clinic.example/poster.jpg"}, "context": {}}), safe="")),
        Step("POST", "https://www.pinterest.com/resource/PinCommentResource/create/", FORM,
             "data=" + q(json.dumps({"options": {"pinId": "1", "text": "Nice"}}), safe="")),
        Step("POST", "https://www.pinterest.com/upload-image/?img=poster.jpg", _UPLOAD,
             _upload("img", "poster.jpg")),
    ),
    "snapchat": (
        Step("GET", "https://accounts.snapchat.com/accounts/v2/login"),
    ),
    "tiktok": (
        Step("GET", "https://www.tiktok.com/api/search/general/full/?keyword=clinic&aid=1988"),
        Step("GET", "https://www.tiktok.com/api/comment/list/?aweme_id=1&count=20&aid=1988"),
        Step("POST", "https://www.tiktok.com/api/commit/item/digg/?aweme_id=1&type=1&aid=1988",
             FORM, "aweme_id=1&type=1"),
    ),
}

SERVICES = tuple(dict.fromkeys(replay.service for replay in REPLAYS))


def hosts_of(service: str) -> list[str]:
    """Every host name a service's replays, invented endpoint and ordinary requests use."""
    steps = [s for r in REPLAYS if r.service == service for s in r.steps]
    steps += [INVENTED[service], *ORDINARY[service]]
    urls = [s.url for s in steps] + [r.session.url for r in REPLAYS
                                     if r.service == service and r.session]
    return sorted({url.split("/", 3)[2] for url in urls})
