"""The shipped example data in config/: a catalog that can never break unrelated sites.

The loader validates the schema; this checks what only the data can get wrong: no domain
nested in another service's, no broad shared domain, anchored rule paths that match the
requests they document, and tenant-restriction services that stay out of the way until IT
fills in their placeholders.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SERVICES_FILE = CONFIG_DIR / "services.yaml"

# Domains shared by many unrelated sites: claiming one would intercept (and block) them all.
BROAD_SHARED_DOMAINS = frozenset(
    {
        "google.com",
        "googleapis.com",
        "gstatic.com",
        "googleusercontent.com",
        "ggpht.com",
        "gvt1.com",
        "doubleclick.net",
        "microsoft.com",
        "microsoftonline.com",
        "live.com",
        "windows.net",
        "azureedge.net",
        "msedge.net",
        "amazonaws.com",
        "cloudfront.net",
        "akamaihd.net",
        "akamaized.net",
        "akamaiedge.net",
        "edgekey.net",
        "edgesuite.net",
        "fastly.net",
        "fastly.com",
        "cloudflare.com",
        "cloudflare.net",
        "app.link",
        "apple.com",
        "icloud.com",
    }
)


SHIPPED_TEXT = SERVICES_FILE.read_text(encoding="utf-8")
SHIPPED = yaml.safe_load(SHIPPED_TEXT)
CATALOG = SHIPPED["services"]
FILLED = {name: f"value-of-{name}" for name in SHIPPED["placeholders"]}


def _covers(domain: str, host: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _rules(service: dict) -> list[tuple[str, dict]]:
    return [
        (kind, rule)
        for kind in ("logins", "prohibited", "audited")
        for rule in service.get(kind) or []
    ]


@pytest.fixture
def services() -> dict:
    return CATALOG


def test_shipped_catalog_governs_the_social_networks_the_policy_names() -> None:
    assert {"facebook", "instagram", "linkedin", "x", "youtube", "tiktok"} <= set(CATALOG)


def test_no_domain_is_claimed_by_two_services(services: dict) -> None:
    owners = [
        (domain.lower(), service_id)
        for service_id, service in services.items()
        for domain in service["domains"]
    ]
    for domain, owner in owners:
        for other_domain, other_owner in owners:
            if owner != other_owner:
                assert not _covers(other_domain, domain), (domain, owner, other_domain, other_owner)


def test_no_service_claims_a_broad_shared_domain(services: dict) -> None:
    for service_id, service in services.items():
        claimed = {domain.lower() for domain in service["domains"]}
        assert not claimed & BROAD_SHARED_DOMAINS, (service_id, claimed & BROAD_SHARED_DOMAINS)


def test_rule_paths_are_anchored_regexes(services: dict) -> None:
    for service_id, service in services.items():
        for kind, rule in _rules(service):
            assert rule["path"].startswith("^"), (service_id, kind, rule["path"])
            re.compile(rule["path"])


def test_rule_hosts_lie_within_the_service(services: dict) -> None:
    for service_id, service in services.items():
        for kind, rule in _rules(service):
            for host in rule.get("hosts") or []:
                assert any(_covers(d, host) for d in service["domains"]), (service_id, kind, host)


def test_example_paths_match_the_rules_meant_for_them() -> None:
    """Spot checks that a rule matches the real request it documents, and nothing broader."""
    shipped = CATALOG

    def matching(service_id: str, kind: str, path: str) -> list[dict]:
        return [r for r in shipped[service_id].get(kind, []) if re.match(r["path"], path)]

    assert matching("linkedin", "logins", "/checkpoint/lg/login-submit")
    assert matching("facebook", "logins", "/login/")
    assert not matching("facebook", "logins", "/login/save-device/")
    assert matching("facebook", "prohibited", "/v19.0/dialog/oauth")
    assert matching("x", "logins", "/1.1/onboarding/task.json")
    assert not matching("x", "logins", "/1x1/onboarding/task.json")
    assert matching("facebook", "logins", "/login.php")
    assert matching("linkedin", "logins", "/uas/authenticate")
    assert not matching("linkedin", "logins", "/voyager/api/uas/authenticate")  # a probe
    assert matching("instagram", "logins", "/api/v1/accounts/login/")
    assert matching("instagram", "logins", "/accounts/login/ajax/two_factor/")
    assert not matching("instagram", "logins", "/api/v1/accounts/logout/")
    assert matching("reddit", "logins", "/api/v1/access_token")
    assert not matching("reddit", "logins", "/api/v1/access_token/extra")
    assert matching("tiktok", "logins", "/passport/web/email/login/")
    assert not matching("tiktok", "logins", "/passport/web/account/info/")


def test_every_service_that_needs_a_grant_checks_sign_ins_and_sessions(services: dict) -> None:
    """Issue 10: no service is "any account". YouTube signs in on Google's hosts (its
    tenant header applies there)."""
    for service_id, service in services.items():
        if service.get("access", "approved") != "approved" or service_id == "youtube":
            continue
        assert service.get("logins"), service_id
        assert service.get("session"), service_id


def test_the_session_of_x_is_never_its_shared_app_token(services: dict) -> None:
    """Every X client sends one public `Authorization: Bearer`: binding it would refuse
    everyone (catalog-research section 1.3)."""
    session = services["x"]["session"]
    assert session.get("schemes") == ["OAuth"] or "headers" not in session


def test_credential_fields_are_shipped_explicitly() -> None:
    from gatekeeper.core.credentials import DEFAULT_CREDENTIAL_FIELDS

    assert tuple(SHIPPED["credential_fields"]) == DEFAULT_CREDENTIAL_FIELDS


def test_shipped_config_loads() -> None:
    from gatekeeper.config.loader import load_policy  # the lead's loader, imported late

    policy = load_policy(CONFIG_DIR)
    assert policy.domains.service_for("www.facebook.com") == "facebook"
    assert policy.domains.service_for("www.google.com") is None


def test_tenant_restrictions_wait_for_their_placeholders() -> None:
    """Open-to-everyone services are relayed untouched until IT fills their placeholders."""
    from gatekeeper.config.loader import load_policy

    policy = load_policy(CONFIG_DIR)
    assert {p.split("}")[0] + "}" for p in policy.unfilled} == {f"{{{n}}}" for n in FILLED}
    for host in ("login.microsoftonline.com", "accounts.google.com", "slack.com"):
        assert policy.domains.service_for(host) is None, host

    filled = SHIPPED_TEXT.split("\nplaceholders:")[0] + "\nplaceholders:\n" + "".join(
        f"  {name}: {value}\n" for name, value in FILLED.items()
    )
    policy = load_policy(CONFIG_DIR, overrides={"services.yaml": filled})
    assert policy.unfilled == ()
    assert policy.domains.service_for("login.microsoftonline.com") == "microsoft_login"
    assert dict(policy.services["microsoft_login"].headers) == {
        "Restrict-Access-To-Tenants": "value-of-microsoft_tenant_domains",
        "Restrict-Access-Context": "value-of-microsoft_directory_id",
    }
