"""Requests shaped like the real sites' for every rule of the shipped catalog (config/).

Used by the pure catalog test (each sample matches the rule meant for it, and every shipped
rule has a sample) and by the end-to-end test (each sample through the real proxy). Login
bodies carry `{account}` where the site puts the account name; replace it, do not format
(JSON braces). Shapes come from the sites' web clients as seen in public automation code
(see /work/shared/field-notes.md and docs/catalog.md); the values are made up.
"""

from __future__ import annotations

import json
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
    kind: str  # "logins", "prohibited" or "audited"
    method: str
    url: str
    content_type: str = ""
    body: str = ""
    action: str | None = None  # for prohibited and audited samples

    def body_for(self, account: str) -> bytes:
        return self.body.replace("{account}", account).encode()

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
           action="group_created"),
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
)
