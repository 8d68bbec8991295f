"""The pure decision: host normalization, domain matching, identity and grants, table-driven."""

from __future__ import annotations

import datetime as dt

import pytest
from support import configs

from gatekeeper.config.loader import load_policy
from gatekeeper.core.decision import decide
from gatekeeper.core.hosts import DomainIndex, normalize_host
from gatekeeper.core.model import Decision, Mode, Reason, Verdict

TODAY = dt.date(2026, 11, 28)

SERVICES = configs.services_doc(
    linkedin={"name": "LinkedIn", "domains": ["linkedin.com"]},
    bucher={"name": "Bücher", "domains": ["bücher.example"]},
)
del SERVICES["services"]["x"]

APPROVALS = configs.approvals_doc()
APPROVALS["employees"] = {
    "alice": configs.employee("alice", addresses=["10.20.0.15"]),
    "bob": configs.employee("bob", addresses=["10.30.0.0/24", "2001:db8::/64"]),
    "carol": configs.employee("carol"),
}
APPROVALS["grants"] = [
    configs.grant("alice", "facebook", approved_on=dt.date(2026, 11, 1)),
    configs.grant("carol", "facebook", approved_on=dt.date(2026, 1, 1),
                  expires=dt.date(2026, 11, 28)),
    configs.grant("bob", "bucher", approved_on=dt.date(2026, 1, 1),
                  expires=dt.date(2026, 11, 29)),
]


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory):
    config = configs.write_config(tmp_path_factory.mktemp("config"), services=SERVICES,
                                  approvals=APPROVALS)
    return load_policy(config)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("FaceBook.COM.", "facebook.com"),
        ("www.facebook.com:443", "www.facebook.com"),
        ("  WWW.Facebook.com  ", "www.facebook.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example.", "xn--bcher-kva.example"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("", ""),
    ],
)
def test_normalize_host(raw: str, normalized: str) -> None:
    assert normalize_host(raw) == normalized


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("FaceBook.COM.", "facebook"),
        ("www.facebook.com:443", "facebook"),
        ("static.xx.fbcdn.net", "facebook"),
        ("evilfacebook.com", None),
        ("facebook.com.evil.net", None),
        ("facebook.co", None),
        ("com", None),
        ("xn--bcher-kva.example", "bucher"),
        ("www.bücher.example", "bucher"),
        ("bank.example", None),
        ("linkedin.com", "linkedin"),
    ],
)
def test_host_matching(policy, host: str, service: str | None) -> None:
    decision = decide(policy, "alice", (host,), TODAY)
    assert decision.service == service
    if service is None:
        assert (decision.verdict, decision.reason) == (Verdict.PASS, Reason.NOT_GOVERNED)


@pytest.mark.parametrize(
    ("employee", "hosts", "verdict", "reason"),
    [
        ("alice", ("www.facebook.com",), Verdict.ALLOW, Reason.APPROVED),
        ("alice", ("www.linkedin.com",), Verdict.BLOCK, Reason.NOT_APPROVED),
        ("bob", ("www.facebook.com",), Verdict.BLOCK, Reason.NOT_APPROVED),
        (None, ("www.facebook.com",), Verdict.BLOCK, Reason.UNKNOWN_EMPLOYEE),
        ("mallory", ("www.facebook.com",), Verdict.BLOCK, Reason.UNKNOWN_EMPLOYEE),
        # expires 2026-11-28: blocked from that date on
        ("carol", ("www.facebook.com",), Verdict.BLOCK, Reason.EXPIRED),
        # expires 2026-11-29: still valid on the 28th
        ("bob", ("bücher.example",), Verdict.ALLOW, Reason.APPROVED),
        # either host naming a governed service governs the request
        ("bob", ("cdn.example", "www.facebook.com"), Verdict.BLOCK, Reason.NOT_APPROVED),
        ("bob", (None, "bank.example", None), Verdict.PASS, Reason.NOT_GOVERNED),
        (None, ("bank.example",), Verdict.PASS, Reason.NOT_GOVERNED),
    ],
)
def test_decision_table(policy, employee, hosts, verdict, reason) -> None:
    decision = decide(policy, employee, hosts, TODAY)
    assert (decision.verdict, decision.reason) == (verdict, reason)


@pytest.mark.parametrize(
    ("user", "address", "employee"),
    [
        ("alice", None, "alice"),
        ("alice", "10.30.0.7", "alice"),  # the proxy-auth name wins over the device
        ("mallory", "10.20.0.15", None),  # an unknown user name is not rescued by the address
        (None, "10.20.0.15", "alice"),
        (None, "::ffff:10.20.0.15", "alice"),
        (None, "10.30.0.200", "bob"),
        (None, "2001:db8::42", "bob"),
        (None, "10.30.1.1", None),
        (None, "not-an-ip", None),
        (None, None, None),
    ],
)
def test_identify(policy, user, address, employee) -> None:
    assert policy.identify(user, address) == employee


def test_allow_hosts_pattern_intercepts_catalog_domains_and_addresses(policy) -> None:
    """Of names, only the catalog's domains; every IP literal, as it names no host at all."""
    import re

    pattern = re.compile(policy.domains.allow_hosts_pattern(), re.IGNORECASE)
    for host in ("www.facebook.com:443", "FACEBOOK.COM.:443", "facebook.com", "a.b.fbcdn.net:80",
                 "10.0.0.1:443", "2130706433:443", "0X7F.1:443", "0177.0.0.1:80", "::1:443",
                 "[::ffff:10.0.0.1]:443", "fe80::1%eth0:443"):
        assert pattern.search(host), host
    for host in ("evilfacebook.com:443", "facebook.com.evil.net:443", "bank.example:443",
                 "cafe.be:443", "1e100.net:443", "1.2.3.4.5:443"):
        assert not pattern.search(host), host


def test_empty_catalog_intercepts_nothing() -> None:
    import re

    assert not re.search(DomainIndex({}).allow_hosts_pattern(), "www.facebook.com:443")


def test_every_named_service_must_allow(policy) -> None:
    """alice may use facebook, not linkedin: a facebook tunnel carrying a linkedin Host header
    is blocked, whichever order the names come in."""
    for hosts in (("www.facebook.com", "www.linkedin.com"), ("www.linkedin.com", "facebook.com")):
        decision = decide(policy, "alice", hosts, TODAY)
        assert (decision.verdict, decision.reason, decision.service) == (
            Verdict.BLOCK, Reason.NOT_APPROVED, "linkedin")


@pytest.mark.parametrize(("verdict", "reason", "mode", "enforced"), [
    (Verdict.BLOCK, Reason.NOT_APPROVED, Mode.ENFORCE, True),
    (Verdict.BLOCK, Reason.NOT_APPROVED, Mode.REPORT, False),  # reported, let through
    (Verdict.BLOCK, Reason.INTERNAL_ERROR, Mode.REPORT, True),  # fails closed in every mode
    (Verdict.ALLOW, Reason.APPROVED, Mode.REPORT, True),
    (Verdict.PASS, Reason.NOT_GOVERNED, Mode.REPORT, True),
])
def test_report_or_enforce_is_the_decisions_own_answer(verdict, reason, mode, enforced) -> None:
    assert Decision(verdict, reason, "facebook", "alice").enforced(mode) is enforced
