"""Test configurations: small services.yaml / approvals.yaml documents as plain dicts.

Build a document, tweak it as a dict, write it:

    approvals = configs.approvals_doc(mode="report")
    approvals["employees"]["dave"] = configs.employee("dave", addresses=["127.0.0.1"])
    approvals["grants"].append(configs.grant("dave", "x"))
    configs.write_config(tmp_path / "config", approvals=approvals)

The defaults: services facebook, linkedin, x; employees alice, bob, carol; alice is granted
linkedin, carol's linkedin grant has expired; mode enforce.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import yaml

APPROVER = "it.lead@clinic.example"
COMPANY_DOMAIN = "clinic.example"
GRANTED_ON = dt.date(2024, 1, 15)
EXPIRED_ON = dt.date(2024, 6, 30)

Doc = dict[str, Any]

SERVICES: Doc = {
    "services": {
        "facebook": {"name": "Facebook", "domains": ["facebook.com", "fbcdn.net"]},
        "linkedin": {"name": "LinkedIn", "domains": ["linkedin.com", "licdn.com"]},
        "x": {"name": "X (Twitter)", "domains": ["x.com", "twitter.com"]},
    }
}


# LinkedIn with every company-account rule kind (login, session, tenant header, prohibited
# and audited actions): the service the account tests, in process and end to end, exercise.
LINKEDIN_ACCOUNTS: Doc = {
    "name": "LinkedIn",
    "domains": ["linkedin.com", "licdn.com"],
    "logins": [{"path": "^/checkpoint/lg/login-submit", "hosts": ["www.linkedin.com"],
                "fields": ["session_key"]}],
    "session": {"cookie": "li_at"},
    "headers": {"X-GoogApps-Allowed-Domains": "{company_domains}"},
    "prohibited": [{"action": "contact_import", "path": "^/mynetwork/import-contacts"}],
    "audited": [{"action": "group_created", "method": "POST", "path": "^/groups/create",
                 "fields": {"kind": "group"}}],
}


def services_doc(**extra_services: Doc) -> Doc:
    """The default catalog, with `extra_services` (id -> entry) added or replaced."""
    doc = copy.deepcopy(SERVICES)
    doc["services"].update(copy.deepcopy(extra_services))
    return doc


def employee(employee_id: str, *, addresses: list[str] | None = None) -> Doc:
    """An `employees:` entry with the company e-mail `<id>@clinic.example`."""
    entry: Doc = {"email": f"{employee_id}@{COMPANY_DOMAIN}"}
    if addresses:
        entry["addresses"] = list(addresses)
    return entry


def grant(employee_id: str, service: str, **fields: Any) -> Doc:
    """A valid `grants:` entry; `fields` (expires, accounts, ...) are added as given."""
    return {
        "employee": employee_id,
        "service": service,
        "approved_by": APPROVER,
        "approved_on": GRANTED_ON,
        **fields,
    }


def approvals_doc(*, mode: str = "enforce") -> Doc:
    """The default approvals: alice -> linkedin; carol -> linkedin, expired."""
    return {
        "approver": APPROVER,
        "company_domains": [COMPANY_DOMAIN],
        "mode": mode,
        "employees": {name: employee(name) for name in ("alice", "bob", "carol")},
        "grants": [
            grant("alice", "linkedin"),
            grant("carol", "linkedin", expires=EXPIRED_ON),
        ],
    }


class _NoAliasDumper(yaml.SafeDumper):
    """gatekeeper rejects anchors and aliases; PyYAML makes them for shared objects."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(doc: Doc) -> str:
    return yaml.dump(doc, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False)


def write_config(directory: Path, *, services: Doc | None = None,
                 approvals: Doc | None = None) -> Path:
    """Write services.yaml and approvals.yaml (defaults when not given) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "services.yaml").write_text(to_yaml(services or services_doc()))
    (directory / "approvals.yaml").write_text(to_yaml(approvals or approvals_doc()))
    return directory


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """An Apache htpasswd file for `--set proxyauth=@PATH` (sha256-crypt hashes)."""
    from passlib.apache import HtpasswdFile  # comes with mitmproxy, which reads the file

    htpasswd = HtpasswdFile(str(path), new=True, default_scheme="sha256_crypt")
    for user, password in users.items():
        htpasswd.set_password(user, password)
    htpasswd.save()
    return path
