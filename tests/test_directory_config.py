"""The directory's pure parts: sign-in names, merging the directory into the policy, the
`directory:` section of gateway.yaml and what it changes in approvals.yaml's validation."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from support import configs

from gatekeeper.config.loader import load_policy
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.directory import DirectoryList, Person, compose, leaver_grants
from gatekeeper.core.identifiers import normalize_user
from gatekeeper.gateway import load_gateway

REALMS = frozenset({"clinic", "clinic.example"})


def person(uid: str, email: str | None = None, name: str = "") -> Person:
    return Person(uid, email or f"{uid}@clinic.example", name or uid.title(),
                  f"uid={uid},ou=people,dc=clinic,dc=example")


def directory(*people: Person) -> DirectoryList:
    return DirectoryList(MappingProxyType({p.id: p for p in people}), REALMS, 0.0)


@pytest.mark.parametrize(("name", "key"), [
    ("dave", "dave"), ("Dave", "dave"), ("CLINIC\\Dave", "dave"), ("clinic\\dave", "dave"),
    ("dave@clinic.example", "dave"), ("DAVE@Clinic.Example", "dave"), (" dave ", "dave"),
    ("OTHER\\dave", "other\\dave"), ("dave@gmail.com", "dave@gmail.com"),
])
def test_sign_in_names_normalize_to_one_key(name: str, key: str) -> None:
    assert normalize_user(name, REALMS) == key


def write(tmp_path: Path, approvals: dict[str, Any], directory_section: bool) -> Path:
    config = configs.write_config(tmp_path / "config", approvals=approvals)
    if directory_section:
        password = tmp_path / "pw"
        if not password.exists():  # a test may have changed it on purpose
            password.write_text("secret\n")
            password.chmod(0o600)
        gateway = {"mode": "explicit", "lan": {"networks": ["192.0.2.0/24"]},
                   "directory": {"preset": "openldap", "url": "ldaps://dc.clinic.example",
                                 "bind_dn": "cn=gk,dc=clinic,dc=example",
                                 "bind_password_file": str(password),
                                 "base_dn": "dc=clinic,dc=example"}}
        (config / "gateway.yaml").write_text(yaml.safe_dump(gateway))
    return config


def test_grants_may_name_directory_people_only_with_a_directory(tmp_path: Path) -> None:
    approvals = configs.approvals_doc()
    approvals["grants"].append(configs.grant("erin", "facebook"))
    with pytest.raises(ConfigError, match="unknown employee 'erin'"):
        load_policy(write(tmp_path / "plain", approvals, directory_section=False))
    policy = load_policy(write(tmp_path / "dir", approvals, directory_section=True))
    assert ("erin", "facebook") in policy.grants
    assert "erin" not in policy.employees  # until the directory says who erin is


def test_compose_adds_directory_employees_and_the_file_wins(tmp_path: Path) -> None:
    approvals = configs.approvals_doc()
    approvals["grants"] += [configs.grant("erin", "facebook"), configs.grant("frank", "x")]
    policy = load_policy(write(tmp_path, approvals, directory_section=True))
    result = compose(policy, directory(
        person("erin", name="Erin Example"),
        person("alice", "alice.other@clinic.example", "Alice Directory"),  # in the file too
        person("gina", "gina@gmail.com"),  # a private e-mail
        person("bobby", "bob@clinic.example"),  # bob's e-mail in approvals.yaml
    ))
    merged = result.policy

    assert merged.employees["erin"].display_name == "Erin Example"
    assert merged.employees["alice"].email == "alice@clinic.example"  # the file's
    assert merged.employees["alice"].display_name == "Alice Directory"
    assert merged.grants[("erin", "facebook")].accounts == {"erin@clinic.example"}
    assert merged.accounts["erin@clinic.example"] == "erin"
    assert dict(result.skipped) == {
        "gina": "no e-mail in a company domain",
        "bobby": "its e-mail belongs to employee 'bob' in approvals.yaml",
    }
    assert [(g.employee, g.service) for g in leaver_grants(merged)] == [("frank", "x")]
    assert merged.identify("CLINIC\\Erin", None) == "erin"
    assert merged.identify("Alice@clinic.example", None) == "alice"
    assert merged.identify("frank", None) is None
    assert policy.identify("Alice", None) is None  # without a directory: exact ids only


def test_grants_spelled_as_sign_in_names_are_the_directory_employees(tmp_path: Path) -> None:
    """`CLINIC\\erin` and `erin@clinic.local` are erin when the realm is the office's; two
    spellings for one service are ambiguous (neither grants); another realm is nobody."""
    approvals = configs.approvals_doc()
    approvals["grants"] += [configs.grant("CLINIC\\Erin", "facebook"),
                            configs.grant("erin@clinic.local", "x"),
                            configs.grant("CLINIC\\hal", "x"), configs.grant("hal", "x"),
                            configs.grant("OTHER\\ivy", "x")]
    policy = load_policy(write(tmp_path, approvals, directory_section=True))
    people = {p.id: p for p in (person("erin"), person("hal"), person("ivy"))}
    listing = DirectoryList(MappingProxyType(people), REALMS | {"clinic.local"}, 0.0)
    merged = compose(policy, listing).policy
    assert merged.grants[("erin", "facebook")].employee == "erin"
    assert merged.grants[("erin", "facebook")].accounts == {"erin@clinic.example"}
    assert ("erin", "x") in merged.grants
    assert merged.grants[("hal", "x")].employee == "hal"  # the exact spelling wins
    assert sorted((g.employee, g.service) for g in leaver_grants(merged)) == [
        ("CLINIC\\hal", "x"), ("OTHER\\ivy", "x")]


def gateway_problems(tmp_path: Path, **section: Any) -> list[str]:
    config = write(tmp_path, configs.approvals_doc(), directory_section=True)
    doc = yaml.safe_load((config / "gateway.yaml").read_text())
    doc["directory"].update(section)
    doc["directory"] = {k: v for k, v in doc["directory"].items() if v is not None}
    (config / "gateway.yaml").write_text(yaml.safe_dump(doc))
    try:
        load_gateway(config)
    except ConfigError as e:
        return [p.message for p in e.problems]
    return []


def test_presets_fill_in_the_attributes_and_the_group_filter(tmp_path: Path) -> None:
    assert gateway_problems(tmp_path) == []
    config = tmp_path / "config"
    settings = load_gateway(config).directory
    assert settings is not None
    assert (settings.id_attribute, settings.email_attribute, settings.port) == ("uid", "mail", 636)
    assert settings.realms == REALMS

    doc = yaml.safe_load((config / "gateway.yaml").read_text())
    doc["directory"].update(preset="active_directory", group="CN=Staff (all),DC=clinic",
                            url="ldap://dc.clinic.example:3268", starttls=True)
    (config / "gateway.yaml").write_text(yaml.safe_dump(doc))
    ad = load_gateway(config).directory
    assert ad is not None and ad.id_attribute == "sAMAccountName" and ad.group is None
    assert "(memberOf:1.2.840.113556.1.4.1941:=CN=Staff \\28all\\29,DC=clinic)" in ad.filter
    assert "userAccountControl:1.2.840.113556.1.4.803:=2" in ad.filter  # disabled: no


@pytest.mark.parametrize(("section", "problem"), [
    ({"preset": "novell"}, "preset must be 'active_directory' or 'openldap'"),
    ({"url": "http://dc.clinic.example"}, "must be ldap://HOST[:PORT] or ldaps://"),
    ({"url": "ldap://dc.clinic.example"}, "would send the employees' passwords unencrypted"),
    ({"starttls": True}, "starttls is for ldap:// URLs"),
    ({"ca_file": "/nonexistent/ca.pem"}, "is not a file"),
    ({"filter": "objectClass=person"}, "must be an LDAP filter in parentheses"),
    ({"timeout_seconds": 0}, "timeout_seconds must be a number"),
    ({"bind_password": "x"}, "unknown key 'bind_password'"),
    ({"bind_dn": None}, "missing required key 'bind_dn'"),
])
def test_invalid_directory_sections_are_reported(tmp_path: Path, section: dict[str, Any],
                                                 problem: str) -> None:
    problems = gateway_problems(tmp_path, **section)
    assert any(problem in p for p in problems), problems


def test_the_bind_password_file_must_be_private_and_not_empty(tmp_path: Path) -> None:
    assert gateway_problems(tmp_path) == []
    password = tmp_path / "pw"
    password.chmod(0o640)
    assert any("may be read by others (mode 0640)" in p for p in gateway_problems(tmp_path))
    password.chmod(0o600)
    password.write_text("")
    assert any("is empty" in p for p in gateway_problems(tmp_path))
    missing = gateway_problems(tmp_path, bind_password_file=str(tmp_path / "missing"))
    assert any("cannot read" in p for p in missing)
