"""Login identifier extraction, account checks and rule matching (gatekeeper.core.logins),
and every shipped catalog rule against a request shaped like the real site's
(tests/catalog_samples.py). Body decoding is tested in test_body_decoding.py."""

from __future__ import annotations

import base64
import json
import re
from types import MappingProxyType

import pytest
from catalog_samples import CONFIG_DIR, SAMPLES, Sample, filled_services_text

from gatekeeper.config.loader import load_policy
from gatekeeper.core.hosts import normalize_host
from gatekeeper.core.logins import (
    LoginResult,
    accounts_of,
    action_target,
    applicable,
    applies,
    check_login,
    first_action,
    login_rule,
    login_step,
    make_target,
    read_form,
    session_reason,
    signup_rule,
    step_of,
)
from gatekeeper.core.model import ActionRule, LoginRule, Reason, Rules, Service
from gatekeeper.core.protobuf import read_message

ALICE = "alice@clinic.example"
BOB = "bob@clinic.example"
ACCOUNTS = frozenset({ALICE})
OWNERS = MappingProxyType({ALICE: "alice", BOB: "bob"})
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
RULE = LoginRule(path=re.compile(r"^/checkpoint/lg/login-submit"), fields=("session_key",))


def multipart(*fields: tuple[str, str], boundary: str = "----WebKitFormBoundaryX1y2",
              part_headers: str = "") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n{part_headers}'
        f"\r\n{value}\r\n"
        for name, value in fields
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode()


MULTIPART = "multipart/form-data; boundary=----WebKitFormBoundaryX1y2"

# (case, content type, body, query, expected result, expected offending identifier)
LOGIN_CASES = [
    ("urlencoded company", FORM, b"session_key=alice%40clinic.example&session_password=pw",
     "", LoginResult.COMPANY, None),
    ("urlencoded personal", FORM, b"session_key=alice.private%40gmail.com&session_password=pw",
     "", LoginResult.PERSONAL, "alice.private@gmail.com"),
    ("a colleague's account", FORM, b"session_key=bob%40clinic.example", "",
     LoginResult.MISMATCH, BOB),
    ("repeated field hides a personal address", FORM,
     b"session_key=alice%40clinic.example&session_key=alice.private%40gmail.com", "",
     LoginResult.PERSONAL, "alice.private@gmail.com"),
    ("personal address first, company second", FORM,
     b"session_key=me%40gmail.com&session_key=alice%40clinic.example", "",
     LoginResult.PERSONAL, "me@gmail.com"),
    ("colleague beats personal", FORM,
     b"session_key=me%40gmail.com&session_key=bob%40clinic.example", "",
     LoginResult.MISMATCH, BOB),
    ("uppercase company", FORM, b"session_key=ALICE%40Clinic.EXAMPLE", "",
     LoginResult.COMPANY, None),
    ("surrounding white space", FORM, b"session_key=+alice%40clinic.example%09", "",
     LoginResult.COMPANY, None),
    ("full-width company", FORM, "session_key=ａｌｉｃｅ＠ｃｌｉｎｉｃ．ｅｘａｍｐｌｅ".encode(),
     "", LoginResult.COMPANY, None),
    ("full-width personal", FORM, "session_key=ＭＥ＠ＧＭＡＩＬ．ＣＯＭ".encode(), "",
     LoginResult.PERSONAL, "me@gmail.com"),
    ("PHP-style array field", FORM, b"session_key[]=me%40gmail.com", "",
     LoginResult.PERSONAL, "me@gmail.com"),
    ("query string overrides the body", FORM, b"session_key=alice%40clinic.example",
     "session_key=me%40gmail.com", LoginResult.PERSONAL, "me@gmail.com"),
    ("charset latin-1", "application/x-www-form-urlencoded; charset=ISO-8859-1",
     b"session_key=j%F6rg%40gmail.com", "", LoginResult.PERSONAL, "jörg@gmail.com"),
    ("empty field", FORM, b"session_key=&session_password=pw", "",
     LoginResult.UNVERIFIABLE, None),
    ("missing field", FORM, b"session_password=pw", "", LoginResult.UNVERIFIABLE, None),
    ("empty body", FORM, b"", "", LoginResult.UNVERIFIABLE, None),
    ("empty value beside a company one", FORM,
     b"session_key=&session_key=alice%40clinic.example", "", LoginResult.COMPANY, None),
    ("not UTF-8", FORM, b"session_key=\xff\xfe", "", LoginResult.UNVERIFIABLE, None),
    ("bad percent escape in UTF-8", FORM, b"session_key=%ff%fe", "",
     LoginResult.UNVERIFIABLE, None),
    ("JSON company", JSON, b'{"session_key": "alice@clinic.example"}', "",
     LoginResult.COMPANY, None),
    ("JSON nested personal", JSON,
     b'{"data": {"steps": [{"x": 1}, {"auth": {"session_key": "me@gmail.com"}}]}}', "",
     LoginResult.PERSONAL, "me@gmail.com"),
    ("JSON list of values", JSON,
     b'{"session_key": ["alice@clinic.example", "me@gmail.com"]}', "",
     LoginResult.PERSONAL, "me@gmail.com"),
    ("JSON duplicate key hides a personal address", JSON,
     b'{"session_key": "alice@clinic.example", "session_key": "me@gmail.com"}', "",
     LoginResult.PERSONAL, "me@gmail.com"),
    ("JSON object where the account goes", JSON, b'{"session_key": {"v": "x"}}', "",
     LoginResult.UNVERIFIABLE, None),
    ("JSON null", JSON, b'{"session_key": null}', "", LoginResult.UNVERIFIABLE, None),
    ("JSON unparseable", JSON, b'{"session_key": "me@gmail.com"', "",
     LoginResult.UNVERIFIABLE, None),
    ("JSON nested too deep for a recursive parser", JSON,
     b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "", LoginResult.UNVERIFIABLE, None),
    ("JSON sent as text/plain", "text/plain;charset=UTF-8", b'{"session_key": "me@gmail.com"}',
     "", LoginResult.PERSONAL, "me@gmail.com"),
    ("JSON without a content type", "", b'[{"session_key": "me@gmail.com"}]', "",
     LoginResult.PERSONAL, "me@gmail.com"),
    ("multipart company", MULTIPART,
     multipart(("session_key", ALICE), ("session_password", "pw")), "",
     LoginResult.COMPANY, None),
    ("multipart personal", MULTIPART, multipart(("session_key", "Me@Gmail.com")), "",
     LoginResult.PERSONAL, "me@gmail.com"),
    ("multipart repeated", MULTIPART,
     multipart(("session_key", ALICE), ("session_key", "me@gmail.com")), "",
     LoginResult.PERSONAL, "me@gmail.com"),
    ("multipart without boundary", "multipart/form-data",
     multipart(("session_key", "me@gmail.com")), "", LoginResult.UNVERIFIABLE, None),
    ("multipart with a wrong boundary", "multipart/form-data; boundary=other",
     multipart(("session_key", "me@gmail.com")), "", LoginResult.UNVERIFIABLE, None),
    # Parser differences: what gatekeeper would read is not what every server reads.
    ("multipart part in base64", MULTIPART,
     multipart(("session_key", base64.b64encode(ALICE.encode()).decode()),
               part_headers="Content-Transfer-Encoding: base64\r\n"), "",
     LoginResult.UNVERIFIABLE, None),
    ("multipart part with any transfer encoding", MULTIPART,
     multipart(("session_key", ALICE), part_headers="Content-Transfer-Encoding: 8bit\r\n"),
     "", LoginResult.UNVERIFIABLE, None),
    ("multipart part with two dispositions", MULTIPART,
     multipart(("session_key", ALICE),
               part_headers='Content-Disposition: form-data; name="other"\r\n'), "",
     LoginResult.UNVERIFIABLE, None),
    ("multipart part with two types", MULTIPART,
     multipart(("session_key", ALICE),
               part_headers="Content-Type: text/plain\r\nContent-Type: text/html\r\n"), "",
     LoginResult.UNVERIFIABLE, None),
    ("multipart part in UTF-7", MULTIPART,
     multipart(("session_key", ALICE), part_headers="Content-Type: text/plain; charset=utf-7\r\n"),
     "", LoginResult.UNVERIFIABLE, None),
    ("multipart with two boundaries", MULTIPART + "; boundary=other",
     multipart(("session_key", ALICE)), "", LoginResult.UNVERIFIABLE, None),
    ("urlencoded in UTF-16", FORM + "; charset=utf-16",
     "session_key=alice%40clinic.example".encode("utf-16"), "", LoginResult.UNVERIFIABLE, None),
    ("urlencoded in an unknown charset", FORM + "; charset=x-none",
     b"session_key=alice%40clinic.example", "", LoginResult.UNVERIFIABLE, None),
    ("urlencoded in Latin-1", FORM + "; charset=ISO-8859-1",
     b"session_key=alice%40clinic.example", "", LoginResult.COMPANY, None),
]


@pytest.mark.parametrize(
    ("content_type", "body", "query", "result", "identifier"),
    [case[1:] for case in LOGIN_CASES],
    ids=[case[0] for case in LOGIN_CASES],
)
def test_login_check(content_type: str, body: bytes, query: str, result: LoginResult,
                     identifier: str | None) -> None:
    form = read_form(content_type, body, query)
    check = check_login(RULE, ACCOUNTS, "alice", OWNERS, form)
    assert check.result is result
    assert check.identifier == identifier
    assert (check.reason is None) == (result is LoginResult.COMPANY)


def test_reasons_and_owner() -> None:
    form = read_form(FORM, b"session_key=bob%40clinic.example")
    check = check_login(RULE, ACCOUNTS, "alice", OWNERS, form)
    assert (check.reason, check.owner) == (Reason.ACCOUNT_MISMATCH, "bob")
    personal = check_login(RULE, ACCOUNTS, "alice", OWNERS, read_form(FORM, b"session_key=x"))
    assert personal.reason is Reason.PERSONAL_ACCOUNT
    unreadable = check_login(RULE, ACCOUNTS, "alice", OWNERS, None)
    assert (unreadable.reason, unreadable.detail) == (Reason.UNVERIFIABLE_LOGIN, "unreadable_body")


def test_own_company_address_not_granted_for_this_service_is_refused() -> None:
    """Bob's grant names the shared marketing account: his own address is not it."""
    form = read_form(FORM, b"session_key=bob%40clinic.example")
    check = check_login(RULE, frozenset({"marketing@clinic.example"}), "bob", OWNERS, form)
    assert check.result is LoginResult.PERSONAL


def _mixed(value: str) -> str:
    return "".join(f"{b ^ 5:02x}" for b in value.encode())


@pytest.mark.parametrize(("account", "mode", "expected"), [
    (ALICE, "1", LoginResult.COMPANY),
    ("alice.private@gmail.com", "1", LoginResult.PERSONAL),
    (ALICE, "0", LoginResult.PERSONAL),  # the hex text is not decoded without mix_mode=1
])
def test_tiktok_mix_mode_values_are_decoded(account: str, mode: str,
                                            expected: LoginResult) -> None:
    """mix_mode=1 XORs each byte with 5 and hex-encodes it; the check reads the account."""
    form = read_form(FORM, f"username={_mixed(account)}&password=x&mix_mode={mode}".encode())
    rule = LoginRule(path=re.compile("^/passport/web/user/login/?$"), fields=("username", "email"))
    assert check_login(rule, ACCOUNTS, "alice", OWNERS, form).result is expected


@pytest.mark.parametrize("body", [
    f"username={ALICE}&mix_mode=1",  # not hex: refused, not read as plain text
    f"username={_mixed(ALICE)}&mix_mode=1&mix_mode=0",  # which mode the server reads is unknown
    "username=c3ff&mix_mode=1",  # hex of bytes that are not UTF-8 after the XOR
])
def test_tiktok_unreadable_mix_mode_is_unverifiable(body: str) -> None:
    rule = LoginRule(path=re.compile("^/passport/web/user/login/?$"), fields=("username",))
    form = read_form(FORM, body.encode())
    assert check_login(rule, ACCOUNTS, "alice", OWNERS, form).result is LoginResult.UNVERIFIABLE


# --- rule matching --------------------------------------------------------------------------

LINKEDIN = Service(
    id="linkedin",
    name="LinkedIn",
    domains=("linkedin.com",),
    logins=(LoginRule(path=re.compile("^/checkpoint/lg/login-submit"), fields=("session_key",),
                      hosts=frozenset({"www.linkedin.com"})),),
    prohibited=(ActionRule("contact_import", re.compile("^/mynetwork/import-contacts")),),
    audited=(ActionRule("group_created", re.compile("^/groups/new"), method="POST",
                        fields=MappingProxyType({"kind": "Group", "public": "True"})),),
)


@pytest.mark.parametrize(("method", "host", "path", "matches"), [
    ("POST", "www.linkedin.com", "/checkpoint/lg/login-submit", True),
    ("post", "www.linkedin.com", "/checkpoint/lg/login-submit", True),
    ("POST", "www.linkedin.com", "/checkpoint/lg/login-submit/extra", True),
    ("POST", "www.linkedin.com", "//checkpoint//lg/login-submit", True),
    ("POST", "www.linkedin.com", "/checkpoint/./lg/login%2Dsubmit", True),
    ("POST", "www.linkedin.com", "/checkpoint/lg/login-submit;jsessionid=1", True),
    ("POST", "www.linkedin.com", "/feed/../checkpoint/lg/login-submit", True),
    ("POST", "www.linkedin.com", "/checkpoint%2Flg%2Flogin-submit", True),
    ("POST", "www.linkedin.com", "/checkpoint\\lg\\login-submit", True),
    ("GET", "www.linkedin.com", "/checkpoint/lg/login-submit", False),
    ("POST", "linkedin.com", "/checkpoint/lg/login-submit", False),
    ("POST", "www.linkedin.com", "/x/checkpoint/lg/login-submit", False),
])
def test_login_rule_matching(method: str, host: str, path: str, matches: bool) -> None:
    target = make_target(method, (host,), path)
    assert (login_rule(LINKEDIN, target) is not None) is matches
    assert applicable(LINKEDIN, target).needs_body is matches


def test_any_named_host_makes_a_host_bound_rule_apply() -> None:
    """Connect target and Host header may differ; a rule for either one applies."""
    target = make_target("POST", ("linkedin.com", "www.linkedin.com", None), "/checkpoint/lg/"
                         "login-submit")
    assert login_rule(LINKEDIN, target) is not None


def test_action_rules() -> None:
    contacts = make_target("GET", ("www.linkedin.com",), "/mynetwork/import-contacts/")
    assert first_action(applicable(LINKEDIN, contacts).prohibited, None).action == "contact_import"
    assert not applicable(LINKEDIN, contacts).needs_body
    group = make_target("POST", ("www.linkedin.com",), "/groups/new")
    assert applicable(LINKEDIN, group).needs_body
    assert first_action(applicable(LINKEDIN, group).audited, None) is None  # fields need the body
    yes = read_form(JSON, b'{"input": {"kind": "group", "public": true}}')
    assert first_action(applicable(LINKEDIN, group).audited, yes).action == "group_created"
    no = read_form(FORM, b"kind=Group&public=false")
    assert first_action(applicable(LINKEDIN, group).audited, no) is None
    get = make_target("GET", ("www.linkedin.com",), "/groups/new")
    assert first_action(applicable(LINKEDIN, get).audited, yes) is None


@pytest.mark.parametrize(("owners", "reason"), [
    ([], None),
    (["alice"], None),
    (["alice", "alice"], None),
    ([None], Reason.UNVERIFIED_SESSION),
    (["alice", None], Reason.UNVERIFIED_SESSION),
    (["bob"], Reason.ACCOUNT_MISMATCH),
    ([None, "bob"], Reason.ACCOUNT_MISMATCH),
])
def test_session_reason(owners: list[str | None], reason: Reason | None) -> None:
    assert session_reason(owners, "alice") is reason


# --- the shipped catalog ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    return load_policy(CONFIG_DIR, overrides={"services.yaml": filled_services_text()})


def _sample_target(sample: Sample):
    path, _, query = sample.path.partition("?")
    return make_target(sample.method, (normalize_host(sample.host),), path, query)


def _sample_form(sample: Sample, account: str, rule: LoginRule | None = None):
    if rule is not None and rule.protobuf is not None:
        fields = (*rule.protobuf.identifiers, *rule.protobuf.passwords)
        return read_message(sample.content_type, sample.body_for(account), fields)
    return read_form(sample.content_type, sample.body_for(account),
                     sample.path.partition("?")[2])


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_rules_by_method_are_every_rule_that_applies(shipped, method: str) -> None:
    """The per-method index (`Service.rules_for`) and `applicable` choose exactly the rules a
    scan of every rule with `applies` chooses, in catalog order: for every shipped sample's
    host and path, under every method, for every service."""
    for sample in SAMPLES:
        target = _sample_target(sample)
        target = make_target(method, target.hosts, sample.path.partition("?")[0], target.query)
        for service in shipped.services.values():
            expected = Rules(*(tuple(r for r in rules if applies(r, target)) for rules in (
                service.logins, service.signups, service.prohibited, service.audited)))
            assert applicable(service, target) == expected, (service.id, sample.id, method)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_catalog_rule_matches_the_real_sites_request(shipped, sample: Sample) -> None:
    assert shipped.domains.service_for(normalize_host(sample.host)) == sample.service
    service = shipped.services[sample.service]
    target = _sample_target(sample)
    if sample.kind == "logins":
        assert login_rule(service, target) is not None
        results = {}
        for account in (ALICE, "Alice@Clinic.Example", "me@gmail.com"):
            form = _sample_form(sample, account, login_rule(service, target))
            rule = step_of(applicable(service, target).logins, form)
            assert rule is not None
            results[account] = check_login(rule, ACCOUNTS, "alice", shipped.accounts,
                                           form).result
        assert results == {ALICE: LoginResult.COMPANY, "Alice@Clinic.Example":
                           LoginResult.COMPANY, "me@gmail.com": LoginResult.PERSONAL}
    elif sample.kind == "signups":
        assert login_rule(service, target) is None
        results = {}
        for account in (ALICE, "me@gmail.com"):
            form = _sample_form(sample, account)
            rule = step_of(applicable(service, target).signups, form)
            assert rule is not None
            check = check_login(rule, ACCOUNTS, "alice", shipped.accounts, form)
            results[account] = check.result
        assert results == {ALICE: LoginResult.COMPANY, "me@gmail.com": LoginResult.PERSONAL}
        assert check_login(rule, ACCOUNTS, "alice", shipped.accounts,
                           _sample_form(sample, ALICE)).account == ALICE
    else:
        assert login_rule(service, target) is None
        form = _sample_form(sample, ALICE)
        matched = first_action(getattr(applicable(service, target), sample.kind), form)
        assert matched is not None and matched.action == sample.action
        if sample.kind == "audited":
            assert action_target(matched, target, form) == sample.target


def test_every_shipped_rule_has_a_sample(shipped) -> None:
    """A rule added to config/services.yaml needs a request shaped like the site's here."""
    uncovered = []
    for service in shipped.services.values():
        samples = [s for s in SAMPLES if s.service == service.id]
        for kind in ("logins", "signups", "prohibited", "audited"):
            for rule in getattr(service, kind):
                covered = any(
                    s.kind == kind and _rule_matches(rule, s) for s in samples
                )
                if not covered:
                    uncovered.append((service.id, kind, rule.path.pattern))
    assert not uncovered


def _rule_matches(rule: LoginRule | ActionRule, sample: Sample) -> bool:
    target = _sample_target(sample)
    if isinstance(rule, LoginRule):
        return any(r is rule for r in (login_rule(Service("s", "s", (), logins=(rule,)), target),
                                       signup_rule(Service("s", "s", (), signups=(rule,)),
                                                   target)))
    applying = (rule,) if applies(rule, target) else ()
    return first_action(applying, _sample_form(sample, ALICE)) is rule


def test_accounts_of(shipped) -> None:
    assert accounts_of(shipped, "alice", "linkedin") == frozenset({ALICE})
    assert accounts_of(shipped, "bob", "facebook") == frozenset({"marketing@clinic.example"})
    # a service open to everyone: the employee's own company address
    assert accounts_of(shipped, "dave", "google_accounts") == frozenset({"dave@clinic.example"})
    assert accounts_of(shipped, None, "google_accounts") == frozenset()


def test_real_x_identifier_step_is_read_at_depth() -> None:
    x = next(s for s in SAMPLES if s.service == "x" and s.kind == "logins")
    form = _sample_form(x, "me@gmail.com")
    assert form is not None and form.values("result") == ["me@gmail.com"]
    assert json.loads(x.body_for("a"))["subtask_inputs"][0]["subtask_id"]


def test_x_login_rule_checks_only_the_identifier_step(shipped) -> None:
    """X's other sign-in steps post to the same endpoint: `when` leaves them alone, and an
    unreadable body still counts as the step (refused, never waved through)."""
    x = next(s for s in SAMPLES if s.service == "x" and s.kind == "logins")
    rule = login_rule(shipped.services["x"], make_target("POST", ["api.x.com"],
                                                         "/1.1/onboarding/task.json"))
    assert rule is not None and dict(rule.when) == {"key": "user_identifier"}
    start = read_form("application/json", json.dumps(
        {"input_flow_data": {"flow_context": {"start_location": {"location": "unknown"}}},
         "subtask_versions": {"action_list": 2}}).encode())
    password = read_form("application/json", json.dumps(
        {"flow_token": "g;1", "subtask_inputs": [{"subtask_id": "LoginEnterPassword",
         "enter_password": {"password": "hunter2", "link": "next_link"}}]}).encode())
    assert not login_step(rule, start) and not login_step(rule, password)
    assert login_step(rule, _sample_form(x, "me@gmail.com"))
    assert login_step(rule, None)


def test_explain_names_the_login_rule_and_its_fields(capsys) -> None:
    from gatekeeper.cli import main

    url = "https://www.linkedin.com/checkpoint/lg/login-submit"
    assert main(["explain", "--config-dir", str(CONFIG_DIR), "--method", "POST", "alice",
                 url]) == 0
    text = capsys.readouterr().out
    assert "login rule matches" in text and "session_key" in text and ALICE in text
    assert main(["explain", "--config-dir", str(CONFIG_DIR), "--json", "--method", "POST",
                 "alice", url]) == 0
    rule = json.loads(capsys.readouterr().out)["login_rule"]
    assert rule["fields"] == ["session_key"] and rule["accounts"] == [ALICE]
    assert main(["explain", "--config-dir", str(CONFIG_DIR), "--json", "alice", url]) == 0
    assert json.loads(capsys.readouterr().out)["login_rule"] is None  # a GET signs nobody in


def test_explain_names_the_sign_up_rule(capsys) -> None:
    from gatekeeper.cli import main

    url = "https://www.linkedin.com/signup/api/cors/createAccount?csrfToken=ajax%3A1"
    assert main(["explain", "--config-dir", str(CONFIG_DIR), "--method", "POST", "alice",
                 url]) == 0
    text = capsys.readouterr().out
    assert "sign-up rule matches" in text and "emailAddress" in text and ALICE in text
    assert "login rule matches" not in text
    assert main(["explain", "--config-dir", str(CONFIG_DIR), "--json", "--method", "POST",
                 "alice", url]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["login_rule"] is None
    assert explained["signup_rule"]["fields"] == ["emailAddress"]


def test_x_identifier_steps_sent_together_are_all_checked(shipped) -> None:
    """Both identifier subtasks in one request: the alternate step's `text` is checked too."""
    body = json.dumps({"flow_token": "g;1", "subtask_inputs": [
        {"subtask_id": "LoginEnterUserIdentifierSSO", "settings_list": {"setting_responses": [
            {"key": "user_identifier", "response_data": {"text_data": {"result": ALICE}}}]}},
        {"subtask_id": "LoginEnterAlternateIdentifierSubtask",
         "enter_text": {"text": "me@gmail.com"}}]}).encode()
    form = read_form(JSON, body)
    target = make_target("POST", ["api.x.com"], "/1.1/onboarding/task.json")
    rule = step_of(applicable(shipped.services["x"], target).logins, form)
    assert rule is not None and set(rule.fields) == {"result", "text"}
    check = check_login(rule, ACCOUNTS, "alice", shipped.accounts, form)
    assert check.result is LoginResult.PERSONAL and check.identifier == "me@gmail.com"
