"""Requests shaped like the real sites' for every rule of the shipped catalog (config/).

Used by the pure catalog test (each sample matches the rule meant for it, and every shipped
rule has a sample) and by the end-to-end test (each sample through the real proxy). Login
bodies carry `{account}` where the site puts the account name; replace it, do not format
(JSON braces). Shapes come from the sites' web clients as seen in public automation code
(see /work/shared/field-notes.md and docs/catalog.md); the values are made up.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def filled_services_text() -> str:
    """The shipped services.yaml with every placeholder filled in, so that the services open
    to everyone (tenant headers) are intercepted and their rules apply too."""
    text = (CONFIG_DIR / "services.yaml").read_text(encoding="utf-8")
    names = yaml.safe_load(text).get("placeholders") or {}
    head = text.split("\nplaceholders:")[0]
    return head + "\nplaceholders:\n" + "".join(f"  {n}: value-of-{n}\n" for n in names)


@dataclass(frozen=True)
class Sample:
    service: str
    kind: str  # "logins", "signups", "prohibited" or "audited"
    method: str
    url: str
    content_type: str = ""
    body: str = ""
    action: str | None = None  # for prohibited and audited samples (signups: account_created)
    target: str | None = None  # audited: what the record names (group, profile id)
    mixed: bool = False  # TikTok mix_mode=1: the account travels XOR 5, hex-encoded
    build: Callable[[str], bytes] | None = None  # a binary body (protobuf) for an account

    def body_for(self, account: str) -> bytes:
        """The body with the account where the site puts it: `{account}` as is, or
        `%7Baccount%7D` (inside URL-encoded JSON) percent-encoded."""
        if self.build is not None:
            return self.build(account)
        if self.mixed:
            account = mix(account)
        body = self.body.replace("{account}", account)
        return body.replace("%7Baccount%7D", urllib.parse.quote(account, safe="")).encode()

    @property
    def host(self) -> str:
        return self.url.split("/", 3)[2]

    @property
    def path(self) -> str:
        """Path with the query."""
        return "/" + self.url.split("/", 3)[3]

    @property
    def id(self) -> str:
        return f"{self.service}-{self.kind}-{self.method}-{self.path.split('?')[0]}"


def mix(value: str) -> str:
    """TikTok's mix_mode=1: each UTF-8 byte XOR 5, hex-encoded."""
    return "".join(f"{b ^ 5:02x}" for b in value.encode())


def protobuf_field(number: int, value: str | bytes) -> bytes:
    """One length-delimited protobuf field: a string or a nested message."""
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def grpc_web(*fields: bytes) -> bytes:
    """A gRPC-Web request body: one uncompressed data frame holding the message."""
    message = b"".join(fields)
    return b"\x00" + len(message).to_bytes(4, "big") + message


# Snapchat's WebLoginRequest (snapcap-native login.ts; field numbers: docs/catalog.md): the
# browser header (1: attestation, continue parameter, session payload), the account (2
# username, 3 e-mail, 4 phone), the challenge answer (5) > password answer > password (1).
_SNAP_HEADER = protobuf_field(1, protobuf_field(2, "kameleon-attestation-token")
                              + protobuf_field(5, "/accounts/sso?client_id=web-calling-corp--prod"))


def snapchat_login(account: str) -> bytes:
    """WebLogin's first call: the account, as a username (or an e-mail when it has an @)."""
    return grpc_web(_SNAP_HEADER, protobuf_field(3 if "@" in account else 2, account))


def snapchat_password(password: str = "hunter2") -> bytes:
    """WebLogin's second call: the server's session payload echoed, and the password."""
    header = protobuf_field(1, protobuf_field(1, b"\x08\x01session-payload")
                            + protobuf_field(5, "/accounts/sso?client_id=web-calling-corp--prod"))
    return grpc_web(header, protobuf_field(5, protobuf_field(2, protobuf_field(1, password))))


def signed_body(document: dict) -> str:
    """Instagram's app API: `signed_body=SIGNATURE.<URL-encoded JSON>` (instagrapi)."""
    return "signed_body=SIGNATURE." + urllib.parse.quote(json.dumps(document), safe="")


def bloks_params(document: dict) -> str:
    """Instagram's bloks actions: form field `params` holds JSON (instagrapi bloks.py)."""
    return ("params=" + urllib.parse.quote(json.dumps(document), safe="")
            + "&_uuid=0a1b2c3d-4e5f&bk_client_context=%7B%22bloks_version%22%3A%22abc%22%7D"
            "&bloks_versioning_id=abc")


_IG_APP_LOGIN = signed_body({
    "jazoest": "22578", "country_codes": json.dumps([{"country_code": "1", "source": ["default"]}]),
    "phone_id": "57d64c41-a916-3fa5-bd7a-3796c1dab122", "enc_password":
    "#PWD_INSTAGRAM:4:1700000000:QWJjZA==", "username": "{account}", "adid": "", "guid":
    "0a1b2c3d-4e5f", "device_id": "android-1234567890abcdef", "google_tokens": "[]",
    "login_attempt_count": "0"})
_IG_BLOKS_LOGIN = bloks_params({
    "client_input_params": {"device_id": "android-1234567890abcdef", "contact_point":
                            "{account}", "password": "#PWD_INSTAGRAM:4:1700000000:QWJjZA==",
                            "login_attempt_count": 1},
    "server_params": {"credential_type": "password", "device_id": "android-1234567890abcdef"}})
_X_ALTERNATE_STEP = json.dumps({
    "flow_token": "g;169xxxxxxxxxxxxxxxxxx:-1700000000000:abcdefghij:3",
    "subtask_inputs": [{"subtask_id": "LoginEnterAlternateIdentifierSubtask",
                        "enter_text": {"text": "{account}", "link": "next_link"}}],
})

_X_IDENTIFIER_STEP = json.dumps({
    "flow_token": "g;169xxxxxxxxxxxxxxxxxx:-1700000000000:abcdefghij:1",
    "subtask_inputs": [{
        "subtask_id": "LoginEnterUserIdentifierSSO",
        "settings_list": {
            "setting_responses": [{
                "key": "user_identifier",
                "response_data": {"text_data": {"result": "{account}"}},
            }],
            "link": "next_link",
        },
    }],
})

SAMPLES: tuple[Sample, ...] = (
    # --- Facebook ---
    Sample("facebook", "logins", "POST",
           "https://www.facebook.com/login/?privacy_mutation_token=eyJ0eXBlIjowfQ%3D%3D",
           FORM, "jazoest=21000&lsd=AVqA1b2C3d4&email={account}&login_source="
           "comet_headerless_login&next=&encpass=%23PWD_BROWSER%3A5%3A1700000000%3AAbCdEf"),
    Sample("facebook", "logins", "POST",
           "https://m.facebook.com/login/device-based/regular/login/?refsrc=deprecated&lwv=100",
           FORM, "lsd=AVqA1b2C3d4&jazoest=2950&m_ts=1700000000&li=abc&try_number=0"
           "&unrecognized_tries=0&email={account}&pass=hunter2&login=Log+In"),
    Sample("facebook", "logins", "POST",
           "https://www.facebook.com/login/device-based/login/async/?api_key=882a8490361da98702"
           "bf97a021ddc14d&auth_token=0&skip_api_login=1",
           FORM, "jazoest=2950&lsd=AVqA1b2C3d4&email={account}&encpass=%23PWD_BROWSER%3A5%3A1"
           "&persistent=1"),
    Sample("facebook", "prohibited", "GET",
           "https://www.facebook.com/v19.0/dialog/oauth?client_id=1234567890&redirect_uri="
           "https%3A%2F%2Fapp.example%2Fcb&scope=email%2Cuser_friends&response_type=code",
           action="app_authorization"),
    Sample("facebook", "prohibited", "GET", "https://www.facebook.com/find-friends/browser/",
           action="contact_import"),
    Sample("facebook", "audited", "POST", "https://www.facebook.com/api/graphql/",
           FORM, "av=100000000000001&__user=100000000000001&__a=1&fb_dtsg=NAcN0abc"
           "&fb_api_caller_class=RelayModern&fb_api_req_friendly_name="
           "useGroupsCometCreateMutation&variables=%7B%22input%22%3A%7B%22name%22%3A%22Clinic"
           "%20news%22%2C%22privacy%22%3A%22PRIVATE%22%7D%7D&server_timestamps=true"
           "&doc_id=7000000000000000",
           action="group_created", target="Clinic news"),
    # --- Instagram ---
    Sample("instagram", "logins", "POST", "https://www.instagram.com/accounts/login/ajax/",
           FORM, "enc_password=%23PWD_INSTAGRAM_BROWSER%3A10%3A1700000000%3AAbCd&username="
           "{account}&queryParams=%7B%7D&optIntoOneTap=false&trustedDeviceRecords=%7B%7D"),
    Sample("instagram", "logins", "POST",
           "https://www.instagram.com/api/v1/web/accounts/login/ajax/",
           FORM, "enc_password=%23PWD_INSTAGRAM_BROWSER%3A10%3A1700000000%3AAbCd"
           "&optIntoOneTap=false&queryParams=%7B%7D&trustedDeviceRecords=%7B%7D"
           "&username={account}"),
    Sample("instagram", "prohibited", "GET",
           "https://www.instagram.com/oauth/authorize?client_id=990602627938098&redirect_uri="
           "https%3A%2F%2Fapp.example%2Fcb&scope=instagram_business_basic&response_type=code",
           action="app_authorization"),
    # --- LinkedIn ---
    Sample("linkedin", "logins", "POST", "https://www.linkedin.com/checkpoint/lg/login-submit",
           FORM, "csrfToken=ajax%3A1234567890123456789&session_key={account}&ac=0"
           "&loginFailureCount=0&sIdString=0a1b2c3d&parentPageKey=d_checkpoint_lg_consumerLogin"
           "&pageInstance=urn%3Ali%3Apage%3Ad_checkpoint_lg_consumerLogin&session_password="
           "hunter2&_d=d&controlId=d_checkpoint_lg_consumerLogin-login_submit_button"),
    Sample("linkedin", "logins", "POST", "https://www.linkedin.com/uas/login-submit",
           FORM, "session_key={account}&session_password=hunter2&isJsEnabled=false"
           "&loginCsrfParam=0a1b2c3d-4e5f"),
    Sample("linkedin", "prohibited", "GET",
           "https://www.linkedin.com/oauth/v2/authorization?response_type=code&client_id="
           "86abcdefghijkl&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=openid%20profile",
           action="app_authorization"),
    Sample("linkedin", "prohibited", "GET",
           "https://www.linkedin.com/uas/oauth2/authorization?response_type=code&client_id=86a",
           action="app_authorization"),
    Sample("linkedin", "prohibited", "GET",
           "https://www.linkedin.com/mynetwork/import-contacts/",
           action="contact_import"),
    # --- X ---
    Sample("x", "logins", "POST", "https://api.x.com/1.1/onboarding/task.json",
           JSON, _X_IDENTIFIER_STEP),
    Sample("x", "prohibited", "GET",
           "https://x.com/i/oauth2/authorize?response_type=code&client_id=M1M5R3BMVy13QmpScXk"
           "&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=tweet.read&state=s"
           "&code_challenge=c&code_challenge_method=plain",
           action="app_authorization"),
    Sample("x", "prohibited", "GET",
           "https://api.x.com/oauth/authenticate?oauth_token=NPcudxy0yU5T3tBzho7iCotZ3cnetKwcT",
           action="app_authorization"),
    Sample("x", "prohibited", "POST", "https://x.com/i/api/1.1/contacts/upload.json",
           JSON, '{"contacts":[{"emails":["someone@example.org"]}]}',
           action="contact_import"),
    # --- TikTok (plain values; the web client's mix_mode=1 obfuscation is refused) ---
    Sample("tiktok", "logins", "POST",
           "https://www.tiktok.com/passport/web/user/login/?aid=1459&account_sdk_source=web"
           "&language=en",
           FORM, "username={account}&password=hunter2&mix_mode=0&captcha=&fixed_mix_mode=0"),
    Sample("tiktok", "prohibited", "GET",
           "https://www.tiktok.com/v2/auth/authorize/?client_key=aw1234&scope=user.info.basic"
           "&response_type=code&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s",
           action="app_authorization"),
    # --- others ---
    Sample("pinterest", "prohibited", "GET",
           "https://www.pinterest.com/oauth/?client_id=1234567&redirect_uri=https%3A%2F%2Fapp"
           ".example%2Fcb&response_type=code&scope=boards%3Aread",
           action="app_authorization"),
    Sample("snapchat", "prohibited", "GET",
           "https://accounts.snapchat.com/accounts/oauth2/auth?client_id=abc&redirect_uri="
           "https%3A%2F%2Fapp.example%2Fcb&response_type=code&scope=https%3A%2F%2Fauth.snapchat"
           ".com%2Foauth2%2Fapi%2Fuser.display_name",
           action="app_authorization"),
    Sample("reddit", "prohibited", "GET",
           "https://www.reddit.com/api/v1/authorize?client_id=CLIENT&response_type=code"
           "&state=s&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&duration=temporary"
           "&scope=identity",
           action="app_authorization"),
    Sample("google_accounts", "prohibited", "GET",
           "https://accounts.google.com/o/oauth2/v2/auth?client_id=123.apps.googleusercontent"
           ".com&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code&scope=openid",
           action="app_authorization"),
    Sample("google_accounts", "prohibited", "GET",
           "https://accounts.google.com/signin/oauth/consent?authuser=0&part=AJi8hAM"
           "&as=S123&client_id=123.apps.googleusercontent.com",
           action="app_authorization"),
    # --- sign-in paths of issue 10 (docs/catalog.md, "sign-in paths") ---
    Sample("facebook", "logins", "POST", "https://www.messenger.com/login/password/",
           FORM, "jazoest=2950&lsd=AVqA1b2C3d4&initial_request_id=A1b2&timezone=-60"
           "&lgndim=eyJ3IjoxOTIwfQ%3D%3D&lgnrnd=123456_AbCd&lgnjs=n&email={account}"
           "&pass=hunter2&login=1&persistent=1&default_persistent="),
    Sample("facebook", "logins", "POST", "https://b-graph.facebook.com/auth/login",
           FORM, "adid=0a1b2c3d&format=json&device_id=0a1b2c3d-4e5f&email={account}"
           "&password=hunter2&generate_analytics_claim=1&credentials_type=password"
           "&generate_session_cookies=1&error_detail_type=button_with_disabled&locale=en_US"
           "&client_country_code=US&method=auth.login&fb_api_req_friendly_name=authenticate"
           "&access_token=350685531728%7C62f8ce9f74b12f84c123cc23437a4a32"),
    Sample("facebook", "logins", "POST", "https://api.facebook.com/method/auth.login",
           FORM, "api_key=882a8490361da98702bf97a021ddc14d&email={account}&format=JSON"
           "&locale=en_US&method=auth.login&password=hunter2&return_ssl_resources=0&v=1.0"
           "&sig=0123456789abcdef0123456789abcdef"),
    Sample("instagram", "logins", "POST", "https://i.instagram.com/api/v1/accounts/login/",
           FORM + "; charset=UTF-8", _IG_APP_LOGIN),
    Sample("instagram", "logins", "POST",
           "https://b.i.instagram.com/api/v1/bloks/async_action/com.bloks.www.bloks.caa.login"
           ".async.send_login_request/", FORM + "; charset=UTF-8", _IG_BLOKS_LOGIN),
    Sample("threads", "logins", "POST", "https://www.threads.net/api/v1/web/accounts/login/ajax/",
           FORM, "enc_password=%23PWD_INSTAGRAM_BROWSER%3A0%3A1700000000%3Ahunter2"
           "&optIntoOneTap=false&queryParams=%7B%22is_from_threads%22%3A%22true%22%7D"
           "&stopDeletionNonce=&textAppStopDeletionToken=&username={account}"),
    Sample("linkedin", "logins", "POST", "https://www.linkedin.com/uas/authenticate",
           FORM, "session_key={account}&session_password=hunter2"
           "&JSESSIONID=%22ajax%3A1234567890123456789%22"),
    Sample("x", "logins", "POST", "https://api.x.com/1.1/onboarding/task.json",
           JSON, _X_ALTERNATE_STEP),
    Sample("x", "logins", "POST", "https://api.x.com/oauth/access_token",
           FORM, "x_auth_mode=client_auth&x_auth_password=hunter2&x_auth_username={account}"),
    Sample("tiktok", "logins", "POST",
           "https://www.tiktok.com/passport/web/user/login/?aid=1459&account_sdk_source=web"
           "&language=en&msToken=abc&X-Bogus=DFSz",
           FORM, "mix_mode=1&username={account}&password=6d706b7660777737&aid=1459"
           "&is_sso=false&account_sdk_source=web&region=US&language=en&did=7300000000000000000"
           "&fixed_mix_mode=1", mixed=True),
    Sample("tiktok", "logins", "POST",
           "https://api16-normal-c-useast1a.tiktokv.com/passport/user/login/?aid=1233",
           FORM, "mix_mode=1&email={account}&password=6d706b7660777737", mixed=True),
    Sample("pinterest", "logins", "POST",
           "https://www.pinterest.com/resource/UserSessionResource/create/",
           FORM, "source_url=%2Flogin%2F%3Freferrer%3Dhome_page&data=%7B%22options%22%3A%7B"
           "%22username_or_email%22%3A%22%7Baccount%7D%22%2C%22password%22%3A%22hunter2%22%7D"
           "%2C%22context%22%3A%7B%7D%7D&_=1700000000000"),
    Sample("snapchat", "logins", "POST",
           "https://accounts.snapchat.com/snapchat.janus.api.WebLoginService/WebLogin",
           "application/grpc-web+proto", build=snapchat_login),
    Sample("reddit", "logins", "POST", "https://www.reddit.com/api/v1/access_token",
           FORM, "grant_type=password&password=hunter2&username={account}"),
    Sample("reddit", "logins", "POST", "https://www.reddit.com/svc/shreddit/account/login",
           FORM, "username={account}&password=hunter2&recaptcha_token=03AFcWeA&recaptcha_use"
           "_checkbox=false&recaptcha_action=v1%2Fweb%2Flogin_with_password"
           "&csrf_token=0a1b2c3d"),
    Sample("reddit", "logins", "POST", "https://www.reddit.com/api/login",
           FORM, "user={account}&passwd=hunter2&api_type=json&rem=true"),
)


def _fb_graphql(name: str, variables: dict) -> str:
    """Facebook's web GraphQL call: the friendly name and `variables` JSON in the form."""
    return ("av=100000000000001&__user=100000000000001&__a=1&fb_dtsg=NAcN0abc&jazoest=25512"
            "&lsd=AVqA1b2C3d4&fb_api_caller_class=RelayModern&fb_api_req_friendly_name=" + name
            + "&variables=" + urllib.parse.quote(json.dumps(variables), safe="")
            + "&server_timestamps=true&doc_id=7000000000000001")


def _pin_resource(options: dict) -> str:
    """Pinterest's resource calls: form field `data` holds {"options": .., "context": {}}."""
    data = json.dumps({"options": options, "context": {}})
    return "source_url=%2F&data=" + urllib.parse.quote(data, safe="") + "&_=1700000000000"


# Sign-ups (`{account}`: the address) and the activities the policy asks to record (issue 15):
# groups and pages created and joined, friends, follows and connections. Shapes from the
# sources in docs/catalog.md ("Activities and sign-ups"); the values are made up.
ACTIVITY_SAMPLES: tuple[Sample, ...] = (
    # --- Facebook ---
    Sample("facebook", "signups", "POST", "https://www.facebook.com/reg/submit/?cid=103",
           FORM, "jazoest=2950&lsd=AVqA1b2C3d4&firstname=Alice&lastname=Clinic&reg_email__="
           "{account}&reg_email_confirmation__={account}&reg_passwd__=%23PWD_BROWSER%3A5%3A1"
           "%3AAbCd&birthday_day=1&birthday_month=1&birthday_year=1990&sex=1&websubmit=1",
           action="account_created"),
    Sample("facebook", "audited", "POST", "https://www.facebook.com/api/graphql/",
           FORM, _fb_graphql("AdditionalProfilePlusCreationMutation", {"input": {
               "name": "Clinic Pets", "category_ids": ["2214"], "actor_id": "1"}}),
           action="page_created", target="Clinic Pets"),
    Sample("facebook", "audited", "POST", "https://www.facebook.com/api/graphql/",
           FORM, _fb_graphql("GroupCometJoinForumMutation", {"groupID": "123456789012345",
                                                             "input": {"group_id":
                                                                       "123456789012345",
                                                                       "actor_id": "1"}}),
           action="group_joined", target="123456789012345"),
    Sample("facebook", "audited", "POST", "https://web.facebook.com/api/graphql/",
           FORM, _fb_graphql("GroupsCometRequestToParticipateMutation", {"input": {
               "group_id": "223456789012345", "actor_id": "1"}}),
           action="group_joined", target="223456789012345"),
    Sample("facebook", "audited", "POST", "https://www.facebook.com/api/graphql/",
           FORM, _fb_graphql("FriendingCometFriendRequestSendMutation", {"input": {
               "friend_requestee_ids": ["100000000000777"], "refs": [None],
               "source": "profile_button", "actor_id": "1"}, "scale": 1}),
           action="friend_request_sent", target="100000000000777"),
    Sample("facebook", "audited", "POST", "https://www.facebook.com/api/graphql/",
           FORM, _fb_graphql("FriendingCometFriendRequestConfirmMutation", {"input": {
               "friend_requester_id": "100000000000888", "source": "friends_tab",
               "actor_id": "1"}, "scale": 1}),
           action="friend_request_accepted", target="100000000000888"),
    # --- Instagram ---
    Sample("instagram", "signups", "POST",
           "https://www.instagram.com/api/v1/web/accounts/web_create_ajax/attempt/",
           FORM, "email={account}&enc_password=%23PWD_INSTAGRAM_BROWSER%3A0%3A1700000000%3A"
           "hunter2&username=clinic.pets&first_name=Clinic&opt_into_one_tap=false",
           action="account_created"),
    Sample("instagram", "signups", "POST",
           "https://www.instagram.com/api/v1/web/accounts/web_create_ajax/",
           FORM, "email={account}&enc_password=%23PWD_INSTAGRAM_BROWSER%3A0%3A1700000000%3A"
           "hunter2&username=clinic.pets&first_name=Clinic&opt_into_one_tap=false"
           "&client_id=abc&seamless_login_enabled=1",
           action="account_created"),
    Sample("instagram", "signups", "POST", "https://i.instagram.com/api/v1/accounts/create/",
           FORM, signed_body({"email": "{account}", "enc_password":
                              "#PWD_INSTAGRAM:4:1700000000:QWJjZA==", "username":
                              "clinic.pets", "first_name": "Clinic", "day": "1", "month": "1",
                              "year": "1990", "force_sign_up_code": "abc",
                              "device_id": "android-1234567890abcdef"}),
           action="account_created"),
    Sample("instagram", "signups", "POST",
           "https://i.instagram.com/api/v1/accounts/create_validated/",
           FORM, signed_body({"phone_number": "{account}", "verification_code": "123456",
                              "enc_password": "#PWD_INSTAGRAM:4:1700000000:QWJjZA==",
                              "username": "clinic.pets"}),
           action="account_created"),
    Sample("instagram", "audited", "POST",
           "https://i.instagram.com/api/v1/friendships/create/4242424242/",
           FORM, signed_body({"user_id": "4242424242", "radio_type": "wifi-none",
                              "_uid": "1", "device_id": "android-1234567890abcdef"}),
           action="followed", target="4242424242"),
    Sample("instagram", "audited", "POST",
           "https://i.instagram.com/api/v1/friendships/approve/5353535353/",
           FORM, signed_body({"user_id": "5353535353", "radio_type": "wifi-none"}),
           action="follow_request_approved", target="5353535353"),
    # --- LinkedIn ---
    Sample("linkedin", "signups", "POST",
           "https://www.linkedin.com/signup/api/cors/createAccount?csrfToken=ajax%3A123",
           JSON, json.dumps({"emailAddress": "{account}", "password": "hunter2",
                             "firstName": "Alice", "lastName": "Clinic"}),
           action="account_created"),
    Sample("linkedin", "audited", "POST",
           "https://www.linkedin.com/voyager/api/voyagerRelationshipsDashMemberRelationships"
           "?action=verifyQuotaAndCreateV2&decorationId=com.linkedin.voyager.dash.deco."
           "relationships.InvitationCreationResultWithInvitee-2",
           JSON, json.dumps({"invitee": {"inviteeUnion": {
               "memberProfile": "urn:li:fsd_profile:ACoAAB1234"}},
               "customMessage": "Hello from the clinic"}),
           action="connection_request_sent", target="urn:li:fsd_profile:ACoAAB1234"),
    Sample("linkedin", "audited", "POST",
           "https://www.linkedin.com/voyager/api/relationships/invitations/7000000000000000042"
           "?action=accept",
           JSON, json.dumps({"invitationId": "7000000000000000042",
                             "invitationSharedSecret": "abcd", "isGenericInvitation": False}),
           action="connection_accepted", target="7000000000000000042"),
    # --- X ---
    Sample("x", "signups", "POST", "https://api.x.com/1.1/onboarding/begin_verification.json",
           JSON, json.dumps({"email": "{account}", "display_name": "Alice",
                             "flow_token": "g;169xxxxxxxxxxxxxxxxxx:-1700000000000:abc:0"}),
           action="account_created"),
    Sample("x", "audited", "POST", "https://x.com/i/api/1.1/friendships/create.json",
           FORM, "include_profile_interstitial_type=1&skip_status=1&user_id=44196397",
           action="followed", target="44196397"),
    Sample("x", "audited", "POST", "https://x.com/i/api/graphql/aBcDeF123/JoinCommunity",
           JSON, json.dumps({"variables": {"communityId": "1500000000000000001"},
                             "features": {"c9s_tweet_anatomy_moderator_badge_enabled": True},
                             "queryId": "aBcDeF123"}),
           action="group_joined", target="1500000000000000001"),
    # --- YouTube ---
    Sample("youtube", "audited", "POST",
           "https://www.youtube.com/youtubei/v1/subscription/subscribe?prettyPrint=false",
           JSON, json.dumps({"context": {"client": {"clientName": "WEB", "clientVersion":
                                                    "2.20261201.00.00"}},
                             "channelIds": ["UCabcdefghijklmnopqrstuv"], "params": "EgIIAhgA"}),
           action="followed", target="UCabcdefghijklmnopqrstuv"),
    # --- TikTok ---
    Sample("tiktok", "signups", "POST",
           "https://www.tiktok.com/passport/web/email/register_verify_login/?aid=1459"
           "&account_sdk_source=web",
           FORM, "mix_mode=1&email={account}&code=313233343536&password=6d706b7660777737"
           "&type=34&birthday=1990-01-01&fixed_mix_mode=1", action="account_created",
           mixed=True),
    Sample("tiktok", "audited", "POST",
           "https://www.tiktok.com/api/commit/follow/user/?aid=1988&user_id=6800000000000000001"
           "&type=1&channel_id=0&from=18&from_pre=0&sec_user_id=MS4wLjABAAAA",
           FORM, "", action="followed", target="6800000000000000001"),
    # --- Pinterest ---
    Sample("pinterest", "signups", "POST",
           "https://www.pinterest.com/resource/UserRegisterResource/create/",
           FORM, _pin_resource({"email": "{account}", "password": "hunter2", "age": "30",
                                "first_name": "Alice", "country": "US"}),
           action="account_created"),
    Sample("pinterest", "audited", "POST",
           "https://www.pinterest.com/resource/UserFollowResource/create/",
           FORM, _pin_resource({"user_id": "700000000000000001"}),
           action="followed", target="700000000000000001"),
    Sample("pinterest", "audited", "POST",
           "https://www.pinterest.com/resource/BoardResource/create/",
           FORM, _pin_resource({"name": "Clinic tips", "description": "", "privacy": "public"}),
           action="board_created", target="Clinic tips"),
    # --- Reddit ---
    Sample("reddit", "signups", "POST", "https://www.reddit.com/svc/shreddit/account/register",
           FORM, "email={account}&username=clinic_pets&password=hunter2&csrf_token=0a1b2c3d"
           "&gRecaptchaResponse=03AFcWeA", action="account_created"),
    Sample("reddit", "signups", "POST", "https://www.reddit.com/api/register",
           FORM, "user=clinic_pets&passwd=hunter2&passwd2=hunter2&email={account}"
           "&api_type=json", action="account_created"),
    Sample("reddit", "audited", "POST", "https://oauth.reddit.com/api/subscribe/",
           FORM, "action=sub&sr_name=AskVet&skip_initial_defaults=true",
           action="group_joined", target="AskVet"),
    Sample("reddit", "audited", "POST", "https://oauth.reddit.com/api/site_admin/",
           FORM, "name=ClinicPets&title=Clinic+pets&type=public&link_type=any&api_type=json",
           action="group_created", target="ClinicPets"),
    Sample("reddit", "audited", "PUT", "https://oauth.reddit.com/api/v1/me/friends/vet_bob",
           JSON, json.dumps({"name": "vet_bob"}), action="friend_added", target="vet_bob"),
)
SAMPLES = (*SAMPLES, *ACTIVITY_SAMPLES)
