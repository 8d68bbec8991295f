"""Every validation error, reported as `path:line: message`, and nothing accepted that is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.config.incremental import LoadCache
from gatekeeper.config.loader import load_policy
from gatekeeper.config.yamlsrc import MAX_FILE_BYTES, ConfigError

SERVICES = """\
services:
  facebook:
    name: Facebook
    domains: [facebook.com]
  linkedin:
    name: LinkedIn
    domains: [linkedin.com]
    terms_url: https://www.linkedin.com/legal/user-agreement
"""

APPROVALS = """\
approver: it.lead@clinic.example
company_domains: [clinic.example]
employees:
  alice:
    email: alice@clinic.example
    addresses: [10.0.0.15]
  bob:
    email: bob@clinic.example
grants:
  - employee: alice
    service: linkedin
    approved_by: it.lead@clinic.example
    approved_on: 2026-11-20
"""

GRANT = """\
  - employee: {employee}
    service: {service}
    approved_by: {approved_by}
    approved_on: {approved_on}
"""


def problems(tmp_path: Path, services: str = SERVICES, approvals: str = APPROVALS) -> list[str]:
    (tmp_path / "services.yaml").write_text(services)
    (tmp_path / "approvals.yaml").write_text(approvals)
    try:
        load_policy(tmp_path)
    except ConfigError as e:
        return [str(p).replace(f"{tmp_path}/", "") for p in e.problems]
    return []


def grant(**fields: str) -> str:
    values = {"employee": "bob", "service": "facebook", "approved_by": "it.lead@clinic.example",
              "approved_on": "2026-11-20"}
    values.update(fields)
    return APPROVALS + GRANT.format(**values)


def test_valid_config_loads(tmp_path: Path) -> None:
    assert problems(tmp_path) == []


@pytest.mark.parametrize(
    ("approvals", "expected"),
    [
        (APPROVALS.replace("  bob:", "  bob:\n    emial: x@clinic.example"),
         "approvals.yaml:8: unknown key 'emial' in employee 'bob'"),
        (APPROVALS.replace("company_domains: [clinic.example]\n", ""),
         "approvals.yaml:1: approvals.yaml is missing required key 'company_domains'"),
        (APPROVALS.replace("approver: it.lead@clinic.example", "approver: nobody"),
         "approvals.yaml:1: approver 'nobody' is not valid"),
        (APPROVALS.replace("approver: it.lead@clinic.example",
                           "approver: it.lead@clinic.example\nmode: strict"),
         "approvals.yaml:2: mode must be 'enforce' or 'report', not 'strict'"),
        (grant(employee="mallory"), "approvals.yaml:14: grant names unknown employee 'mallory'"),
        (grant(service="myspace"), "approvals.yaml:15: grant names unknown service 'myspace'"),
        (grant(approved_by="bob@clinic.example"),
         "approvals.yaml:16: approved_by 'bob@clinic.example' is not the approver"),
        (grant(approved_on="2026-13-01"),
         "approvals.yaml:17: grant: approved_on must be a date (YYYY-MM-DD)"),
        (grant(approved_on="yesterday"),
         "approvals.yaml:17: grant: approved_on must be a date (YYYY-MM-DD)"),
        (grant(employee="alice", service="linkedin"),
         "approvals.yaml:14: duplicate grant for employee 'alice' and service 'linkedin'"),
        (grant() + "    expires: 2026-11-01\n",
         "approvals.yaml:18: grant: expires must be after approved_on"),
        (grant() + "    accounts: [bob@gmail.com]\n",
         "approvals.yaml:18: grant: account 'bob@gmail.com' is not in a company domain"),
        (grant() + "    accounts: [alice@clinic.example]\n",
         "account 'alice@clinic.example' of employee 'bob' already belongs to employee 'alice'"),
        (grant() + "    require_terms: maybe\n",
         "approvals.yaml:18: grant: require_terms must be true or false"),
        (APPROVALS.replace("bob@clinic.example", "bob@gmail.com"),
         "approvals.yaml:8: employee 'bob': email 'bob@gmail.com' is not in a company domain"),
        (APPROVALS.replace("bob@clinic.example", "bob"),
         "approvals.yaml:8: employee 'bob': email 'bob' is not an e-mail address"),
        (APPROVALS.replace("  bob:\n    email: bob@clinic.example",
                           "  bob:\n    email: bob@clinic.example\n    addresses: [10.0.0.0/24]"),
         "employee 'bob': address 10.0.0.0/24 overlaps 10.0.0.15/32 of employee 'alice'"),
        (APPROVALS.replace("[10.0.0.15]", "[10.0.0.300]"),
         "approvals.yaml:6: employee 'alice': '10.0.0.300' is not an IP address or CIDR"),
        (APPROVALS.replace("  bob:", "  'bob smith':"),
         "approvals.yaml:7: employee id 'bob smith' is not valid"),
        (APPROVALS.replace("employees:", "require_terms_acknowledgement: yes please\nemployees:"),
         "approvals.yaml:3: require_terms_acknowledgement must be true or false"),
        (APPROVALS.split("grants:")[0] + "grants: {}\n",
         "approvals.yaml:9: grants must be a list"),
    ],
)
def test_approvals_errors(tmp_path: Path, approvals: str, expected: str) -> None:
    found = problems(tmp_path, approvals=approvals)
    assert any(p.startswith(expected) or expected in p for p in found), found


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        (SERVICES.replace("  linkedin:", "  LinkedIn:"),
         "services.yaml:5: service id 'LinkedIn' is not valid ([a-z0-9_-]+)"),
        (SERVICES.replace("[linkedin.com]", "[linkedin.com, facebook.com]"),
         "services.yaml:7: service 'linkedin': domain 'facebook.com' is already claimed by "
         "service 'facebook' (line 4)"),
        (SERVICES.replace("[linkedin.com]", "[linkedin]"),
         "services.yaml:7: service 'linkedin': not a domain name: 'linkedin'"),
        (SERVICES.replace("[linkedin.com]", "[]"),
         "services.yaml:7: service 'linkedin': domains must not be empty"),
        (SERVICES.replace("    name: LinkedIn\n", ""),
         "services.yaml:6: service 'linkedin' is missing required key 'name'"),
        (SERVICES.replace("terms_url: https://", "terms_url: ftp://"),
         "services.yaml:8: service 'linkedin': terms_url must be an http(s) URL"),
        (SERVICES + "    domians: [x.com]\n",
         "services.yaml:9: unknown key 'domians' in service 'linkedin'"),
        (SERVICES + "    logins:\n      - path: ^/login(\n        fields: [email]\n",
         "services.yaml:10: service 'linkedin': login rule: path is not a valid regular "
         "expression"),
        (SERVICES + "    logins:\n      - path: ^/login\n        fields: []\n",
         "services.yaml:11: service 'linkedin': login rule: fields must not be empty"),
        (SERVICES + "    logins:\n      - path: ^/login\n        fields: [email]\n"
         "        hosts: [www.facebook.com]\n",
         "services.yaml:12: service 'linkedin': login rule: host 'www.facebook.com' is not in the "
         "service's domains"),
        (SERVICES + "    logins:\n      - path: ^/login\n        fields: [email]\n"
         "        method: post\n",
         "services.yaml:12: service 'linkedin': login rule: method 'post' is not valid"),
        (SERVICES + "    logins:\n      - path: ^/login\n        fields: [email]\n"
         "        when: [key]\n",
         "services.yaml:12: service 'linkedin': login rule: when must be a mapping of field name"),
        (SERVICES + "    logins:\n      - path: ^/login\n",
         "services.yaml:10: service 'linkedin': login rule needs either fields (a form or JSON) "
         "or protobuf"),
        (SERVICES + "    logins:\n      - path: ^/login\n        fields: [a]\n"
         "        protobuf: {fields: [[2]]}\n",
         "services.yaml:10: service 'linkedin': login rule needs either fields"),
        (SERVICES + "    logins:\n      - path: ^/login\n        protobuf:\n"
         "          fields: [[2], [5, 0]]\n",
         "services.yaml:12: service 'linkedin': login rule: protobuf: fields: 0 is not a field "
         "number"),
        (SERVICES + "    logins:\n      - path: ^/login\n        protobuf:\n"
         "          fields: [2]\n",
         "services.yaml:12: service 'linkedin': login rule: protobuf: fields: a path is a list"),
        (SERVICES + "    logins:\n      - path: ^/login\n        protobuf:\n"
         "          fields: [[1, 1, 1, 1, 1, 1, 1, 1, 1]]\n",
         "services.yaml:12: service 'linkedin': login rule: protobuf: fields: a path is a list "
         "of 1 to 8"),
        (SERVICES + "    logins:\n      - path: ^/login\n        protobuf:\n"
         "          fields: [[2]]\n          passwords: [[5, '**', 1]]\n",
         "services.yaml:13: service 'linkedin': login rule: protobuf: passwords: '**' is not a "
         "field number"),
        (SERVICES + "    logins:\n      - path: ^/login\n        protobuf: {password: [[1]]}\n",
         "services.yaml:11: unknown key 'password' in service 'linkedin': login rule: protobuf"),
        (SERVICES + "    audited:\n      - action: group_created\n        path: ^/g\n"
         "        fields: {name: [a, b]}\n",
         "services.yaml:12: service 'linkedin': audited: fields: field 'name' must have a plain"),
        (SERVICES + "    prohibited:\n      - action: App Install\n        path: ^/oauth\n",
         "services.yaml:10: service 'linkedin': prohibited: action 'App Install' is not valid"),
        (SERVICES + "    headers:\n      Bad Header: x\n",
         "services.yaml:10: service 'linkedin': 'Bad Header' is not a valid header name"),
        (SERVICES + "    session: {cookies: li_at}\n",
         "services.yaml:9: unknown key 'cookies' in service 'linkedin': session"),
        (SERVICES + "    session:\n      headers: [Authorization]\n      when: {_auth: '1'}\n",
         "services.yaml:11: service 'linkedin': session: when needs a cookie"),
        (SERVICES + "    session: {hosts: [www.linkedin.com]}\n",
         "services.yaml:9: service 'linkedin': session needs a cookie, headers or params"),
        (SERVICES + "    session:\n      headers: [Bad Header]\n",
         "services.yaml:10: service 'linkedin': session: headers: 'Bad Header' is not a valid"),
        (SERVICES + "    session:\n      headers: [Authorization]\n      hosts: [www.x.com]\n",
         "services.yaml:11: service 'linkedin': session: host 'www.x.com' is not in the"),
        (SERVICES + "    session:\n      headers: [Authorization]\n"
         "      issued: {pattern: 'T.*'}\n",
         "services.yaml:11: service 'linkedin': session: issued pattern needs one group"),
        (SERVICES + "    session:\n      headers: [Authorization]\n      issued: {body: [t]}\n",
         "services.yaml:11: unknown key 'body' in service 'linkedin': session: issued"),
        (SERVICES + "    credential_fields: password\n",
         "services.yaml:9: service 'linkedin': credential_fields must be a list"),
        (SERVICES + "    basic_auth_apps: ['^/token(']\n",
         "services.yaml:9: service 'linkedin': basic_auth_apps is not a valid regular"),
        ("credential_fields: []\n" + SERVICES,
         "services.yaml:1: credential_fields must not be empty"),
        ("services:\n  x: !!python/object/apply:os.system [echo]\n",
         "services.yaml:2: YAML tag tag:yaml.org,2002:python/object/apply:os.system is not "
         "allowed"),
        ("services:\n  a: &a [x, *a]\n", "services.yaml:2: anchors and aliases"),
        ("services:\n  facebook:\n    name: A\n    name: B\n    domains: [a.com]\n",
         "services.yaml:4: duplicate key 'name'"),
        ("services:\n  facebook: {name: A, domains: [a.com]\n",
         "services.yaml:3: YAML syntax error"),
        ("", "services.yaml: file is empty"),
        ("- just\n- a list\n", "services.yaml:1: services.yaml must be a mapping"),
    ],
)
def test_services_errors(tmp_path: Path, services: str, expected: str) -> None:
    found = problems(tmp_path, services=services)
    assert any(p.startswith(expected) for p in found), found


def test_credential_fields_default_and_add_up(tmp_path: Path) -> None:
    """Without a top-level list the shipped defaults apply; a service's list adds to it."""
    (tmp_path / "approvals.yaml").write_text(APPROVALS)
    (tmp_path / "services.yaml").write_text(SERVICES + "    credential_fields: [pin]\n")
    services = load_policy(tmp_path).services
    assert {"password", "pass", "enc_password"} <= services["facebook"].credential_fields
    assert "pin" in services["linkedin"].credential_fields
    assert "pin" not in services["facebook"].credential_fields
    (tmp_path / "services.yaml").write_text("credential_fields: [Pass-Word]\n" + SERVICES)
    assert load_policy(tmp_path).services["facebook"].credential_fields == {"pass_word"}


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    bomb = "services:\n  a: &a [x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 12):
        bomb += f"  b{i}: &b{i} [*{'a' if i == 1 else f'b{i - 1}'}] \n"
    found = problems(tmp_path, services=bomb)
    assert any("anchors and aliases" in p for p in found)


def test_missing_file(tmp_path: Path) -> None:
    (tmp_path / "services.yaml").write_text(SERVICES)
    with pytest.raises(ConfigError) as e:
        load_policy(tmp_path)
    assert [str(p) for p in e.value.problems] == [f"{tmp_path}/approvals.yaml: file not found"]


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "services.yaml").write_bytes(b"services:\n  \xff: x\n")
    (tmp_path / "approvals.yaml").write_text(APPROVALS)
    with pytest.raises(ConfigError) as e:
        load_policy(tmp_path)
    assert "not UTF-8 text" in str(e.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    approvals = grant(employee="mallory", service="myspace", approved_by="x@clinic.example")
    found = problems(tmp_path, approvals=approvals)
    assert len(found) == 3, found


def test_unfilled_placeholders_are_listed_and_header_left_out(tmp_path: Path) -> None:
    services = SERVICES + (
        "    headers:\n"
        "      X-GoogApps-Allowed-Domains: \"{company_domains}\"\n"
        "      Restrict-Access-To-Tenants: \"{microsoft_tenant_domains}\"\n"
    )
    (tmp_path / "services.yaml").write_text(services)
    (tmp_path / "approvals.yaml").write_text(APPROVALS)
    policy = load_policy(tmp_path)
    expected = (("X-GoogApps-Allowed-Domains", "clinic.example"),)
    assert policy.services["linkedin"].headers == expected
    assert len(policy.unfilled) == 1 and "microsoft_tenant_domains" in policy.unfilled[0]
    filled = services.replace(
        "services:", "placeholders:\n  microsoft_tenant_domains: clinic.example\nservices:"
    )
    (tmp_path / "services.yaml").write_text(filled)
    policy = load_policy(tmp_path)
    assert ("Restrict-Access-To-Tenants", "clinic.example") in policy.services["linkedin"].headers
    assert policy.unfilled == ()


def _employees_with_addresses(addresses: list[str]) -> str:
    """approvals.yaml with one employee per address, in order (e0, e1, ...)."""
    lines = ["approver: it.lead@clinic.example", "company_domains: [clinic.example]",
             "employees:"]
    for i, address in enumerate(addresses):
        lines += [f"  e{i}:", f"    email: e{i}@clinic.example", f"    addresses: [{address}]"]
    return "\n".join(lines) + "\n"


def test_every_overlap_is_reported_in_order_at_the_later_employee(tmp_path: Path) -> None:
    """The sweep finds what comparing every pair found: each overlapping pair once, at the
    later employee's line, earlier owner named, in file order (nested, equal, v6)."""
    addresses = ["10.0.0.0/16", "10.1.0.1", "10.0.5.0/24", "10.0.5.7", "10.1.0.1",
                 "fd00::/64", "fd00::1", "10.0.0.0/8"]
    found = problems(tmp_path, approvals=_employees_with_addresses(addresses))
    assert found == [
        "approvals.yaml:11: employee 'e2': address 10.0.5.0/24 overlaps 10.0.0.0/16 of "
        "employee 'e0'",
        "approvals.yaml:14: employee 'e3': address 10.0.5.7/32 overlaps 10.0.0.0/16 of "
        "employee 'e0'",
        "approvals.yaml:14: employee 'e3': address 10.0.5.7/32 overlaps 10.0.5.0/24 of "
        "employee 'e2'",
        "approvals.yaml:17: employee 'e4': address 10.1.0.1/32 overlaps 10.1.0.1/32 of "
        "employee 'e1'",
        "approvals.yaml:23: employee 'e6': address fd00::1/128 overlaps fd00::/64 of "
        "employee 'e5'",
        *(f"approvals.yaml:26: employee 'e7': address 10.0.0.0/8 overlaps {net} of "
          f"employee 'e{i}'" for i, net in enumerate(
              ["10.0.0.0/16", "10.1.0.1/32", "10.0.5.0/24", "10.0.5.7/32", "10.1.0.1/32"])),
    ]


def test_ten_thousand_device_addresses_load_and_resolve(tmp_path: Path) -> None:
    """A clinic group's single file: 10,000 devices (once minutes of pairwise checks)."""
    addresses = [f"10.{i >> 8}.{i & 255}.1" if i % 100 else f"10.200.{i // 100}.0/28"
                 for i in range(10_000)]
    (tmp_path / "services.yaml").write_text(SERVICES)
    (tmp_path / "approvals.yaml").write_text(_employees_with_addresses(addresses))
    policy = load_policy(tmp_path)
    assert policy.identify(None, "10.39.15.1") == "e9999"
    assert policy.identify(None, "10.200.37.14") == "e3700"  # inside e3700's /28
    assert policy.identify(None, "::ffff:10.0.1.1") == "e1"
    assert policy.identify(None, "10.200.37.16") is None  # just past the /28


def test_fifty_thousand_grants_fit_under_the_size_cap(tmp_path: Path) -> None:
    """The cap stays a cap, with room for 10,000 employees x 5 grants."""
    grants = "".join(
        GRANT.format(employee=f"e{i:05d}", service=s, approved_by="it.lead@clinic.example",
                     approved_on="2026-01-15")
        for i in range(10_000) for s in ("facebook", "linkedin", "x", "youtube", "tiktok")
    )
    assert 2 * len(grants.encode()) < MAX_FILE_BYTES
    (tmp_path / "services.yaml").write_text(SERVICES)
    (tmp_path / "approvals.yaml").write_text("#" * (MAX_FILE_BYTES + 1))
    with pytest.raises(ConfigError) as e:
        load_policy(tmp_path)
    assert f"file larger than {MAX_FILE_BYTES} bytes" in str(e.value)


def _policy_fields(policy) -> tuple:
    """Everything a policy enforces, comparable (indexes compared by their contents)."""
    return (policy.approver, policy.company_domains, policy.mode, dict(policy.services),
            list(policy.employees.items()), list(policy.grants.items()),
            dict(policy.addresses.exact),
            [(v, length, dict(t)) for v, length, t in policy.addresses.networks],
            dict(policy.accounts), policy.sha256, sorted(policy.domains.domains()))


CACHE_EDITS = {
    # taken from the remembered entries: only the changed entry is parsed
    "grant appended": (grant(), True),
    "grant changed": (APPROVALS.replace("2026-11-20", "2026-11-21"), True),
    "employee added in the middle": (
        APPROVALS.replace("  bob:", "  carol:\n    email: carol@clinic.example\n  bob:"), True),
    "grant for a new employee": (grant(employee="carol").replace(
        "  bob:", "  carol:\n    email: carol@clinic.example\n  bob:"), True),
    "an employee's e-mail changed (her grant's default account)": (
        APPROVALS.replace("email: alice@clinic.example", "email: alice.b@clinic.example"), True),
    "comment with quotes in an entry": (APPROVALS.replace(
        "approved_on: 2026-11-20", "approved_on: 2026-11-20  # Alice's \"page\""), True),
    # the same outcome as a full load, errors included, whichever way it is reached
    "grant of an unknown employee": (grant(employee="mallory"), False),
    "duplicate grant": (grant(employee="alice", service="linkedin"), False),
    "overlapping address": (APPROVALS.replace(
        "  bob:\n    email: bob@clinic.example",
        "  bob:\n    email: bob@clinic.example\n    addresses: [10.0.0.0/24]"), False),
    "account of another employee": (grant() + "    accounts: [alice@clinic.example]\n", False),
    "quoted value": (APPROVALS.replace("service: linkedin", 'service: "linkedin"'), False),
    "approver changed": (APPROVALS.replace("approver: it.lead@", "approver: it.boss@")
                         .replace("approved_by: it.lead@", "approved_by: it.boss@"), False),
    "flow list of grants": (APPROVALS.split("grants:")[0] + "grants: []\n", False),
}


@pytest.mark.parametrize(("approvals", "reused"), CACHE_EDITS.values(), ids=CACHE_EDITS.keys())
def test_reload_cache_gives_what_a_full_load_gives(
    tmp_path: Path, approvals: str, reused: bool
) -> None:
    """The reloader's cache reuses unchanged entries, and the outcome (policy or every
    problem with its line) is exactly a full load's."""
    (tmp_path / "services.yaml").write_text(SERVICES)
    (tmp_path / "approvals.yaml").write_text(APPROVALS)
    cache = LoadCache()
    load_policy(tmp_path, cache=cache)
    (tmp_path / "approvals.yaml").write_text(approvals)
    texts = {name: (tmp_path / name).read_text() for name in ("services.yaml", "approvals.yaml")}
    assert (cache.reuse(tmp_path, texts, "sha") is not None) is reused
    cache = LoadCache()
    (tmp_path / "approvals.yaml").write_text(APPROVALS)
    load_policy(tmp_path, cache=cache)
    (tmp_path / "approvals.yaml").write_text(approvals)
    try:
        full = _policy_fields(load_policy(tmp_path))
    except ConfigError as e:
        full = str(e)
    try:
        cached = _policy_fields(load_policy(tmp_path, cache=cache))
    except ConfigError as e:
        cached = str(e)
    assert cached == full


def test_reload_cache_reads_grants_listed_at_the_margin(tmp_path: Path) -> None:
    """PyYAML's default dump puts the `- ` of the grants at the key's column: the cache still
    reuses the unchanged entries, and gives what a full load gives."""
    def at_margin(text: str) -> str:
        head, grants = text.split("grants:\n")
        return head + "grants:\n" + "\n".join(line[2:] for line in grants.split("\n"))

    (tmp_path / "services.yaml").write_text(SERVICES)
    (tmp_path / "approvals.yaml").write_text(at_margin(APPROVALS))
    cache = LoadCache()
    load_policy(tmp_path, cache=cache)
    edited = at_margin(grant())
    assert edited.endswith("\n- employee: bob\n  service: facebook\n"
                           "  approved_by: it.lead@clinic.example\n  approved_on: 2026-11-20\n")
    (tmp_path / "approvals.yaml").write_text(edited)
    texts = {name: (tmp_path / name).read_text() for name in ("services.yaml", "approvals.yaml")}
    assert cache.reuse(tmp_path, texts, "sha") is not None
    assert _policy_fields(load_policy(tmp_path, cache=cache)) == _policy_fields(
        load_policy(tmp_path))


def test_approved_on_after_tomorrow_is_refused_with_its_line(tmp_path: Path) -> None:
    import datetime as dt

    tomorrow = dt.date.today() + dt.timedelta(days=1)
    assert problems(tmp_path, approvals=grant(approved_on=tomorrow.isoformat())) == []
    later = tomorrow + dt.timedelta(days=1)
    assert problems(tmp_path, approvals=grant(approved_on=later.isoformat())) == [
        f"approvals.yaml:17: grant: approved_on {later} is in the future "
        f"(today is {dt.date.today()})"
    ]
