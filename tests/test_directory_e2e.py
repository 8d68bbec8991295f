"""Employees and proxy sign-in from a real OpenLDAP server (Debian slapd on loopback).

The directory (support/ldap.py): dave, erin and frank are in the staff group with company
e-mails; mallory is not in the group; gina is, with a private e-mail. approvals.yaml lists
alice, bob and carol only, and grants erin Facebook and frank X: erin and frank are employees
only because the directory says so.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from support import configs
from support.cli import run_main
from support.ldap import SERVICE_DN, SERVICE_PASSWORD, STAFF_DN, SUFFIX, Slapd, available
from support.waiting import wait_until

from gatekeeper.state import StateDB

TIMEOUT = 15
DIRECTORY_TIMEOUT = 2  # timeout_seconds in gateway.yaml
REGULAR = ["--mode", "regular"]  # gateway.yaml says explicit: no transparent listener here
PASSWORDS = {"dave": "dave-pw-1", "erin": "erin:pw-2", "frank": "frank-pw-3",
             "mallory": "mallory-pw-4", "gina": "gina-pw-5"}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not available(), reason="needs Debian slapd and ldap-utils"),
]


@pytest.fixture
def slapd(tmp_path: Path):
    server = Slapd(tmp_path / "slapd").start()
    yield server
    server.stop()


def write_directory_config(tmp_path: Path, slapd: Slapd, **directory: Any) -> Path:
    """approvals.yaml with directory-only grants, gateway.yaml with a directory: section."""
    approvals = configs.approvals_doc()
    approvals["grants"] += [configs.grant("erin", "facebook"), configs.grant("frank", "x")]
    config = configs.write_config(tmp_path / "config", approvals=approvals)
    password_file = tmp_path / "directory.password"
    password_file.write_text(SERVICE_PASSWORD + "\n")
    password_file.chmod(0o600)
    gateway = {
        "mode": "explicit",
        "lan": {"networks": ["192.0.2.0/24"]},
        "directory": {
            "preset": "openldap",
            "url": slapd.url,
            "bind_dn": SERVICE_DN,
            "bind_password_file": str(password_file),
            "base_dn": SUFFIX,
            "group": STAFF_DN,
            "timeout_seconds": DIRECTORY_TIMEOUT,
            **directory,
        },
    }
    (config / "gateway.yaml").write_text(yaml.safe_dump(gateway))
    return config


def start(gk, config: Path):
    proxy = gk(config, args=REGULAR)
    proxy.wait_for_metric("gatekeeper_directory_refreshes_total", 1, result="success")
    return proxy


def get(proxy, user: str, password: str, url: str) -> requests.Response:
    """A fresh connection signing in as `user` (quoted in the proxy URL: `CLINIC\\erin`)."""
    session = proxy.session(urllib.parse.quote(user, safe=""), urllib.parse.quote(password))
    return session.get(url, timeout=TIMEOUT)


def assert_sign_in_refused(proxy, user: str, password: str, site) -> None:
    """407 with the proxy's challenge (realm gatekeeper), on a plain request and on CONNECT."""
    reply = get(proxy, user, password, site.url("/", scheme="http"))
    assert reply.status_code == 407
    assert reply.headers["Proxy-Authenticate"] == 'Basic realm="gatekeeper"'
    with pytest.raises(requests.exceptions.ProxyError, match="407"):
        get(proxy, user, password, site.url("/"))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`gatekeeper ARGS...`, in process."""
    return lambda *args: run_main(capsys, args)


# --- sign-in ------------------------------------------------------------------------------------


def test_directory_only_employee_signs_in_and_uses_the_grant(gk, fake_sites, slapd, tmp_path):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    facebook = fake_sites.facebook

    over_tls = get(proxy, "erin", PASSWORDS["erin"], facebook.url("/home"))
    plain = get(proxy, "erin", PASSWORDS["erin"], facebook.url("/plain", scheme="http"))
    not_granted = get(proxy, "erin", PASSWORDS["erin"], fake_sites.linkedin.url("/"))

    assert over_tls.status_code == 200 and over_tls.text == "hello from www.facebook.com"
    assert plain.status_code == 200
    assert not_granted.status_code == 403
    assert not_granted.headers["X-Gatekeeper-Reason"] == "not_approved"
    assert {e["employee"] for e in proxy.events("decision")} == {"erin"}
    # The credentials are checked, then taken off the request: upstream never sees them.
    assert all(r.header("Proxy-Authorization") is None for r in facebook.requests)
    assert proxy.metric("gatekeeper_directory_sign_ins_total", result="success") >= 1
    assert proxy.metric("gatekeeper_directory_employees") == 3  # dave, erin, frank


def test_wrong_password_gets_407_like_proxyauth(gk, fake_sites, slapd, tmp_path):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    assert_sign_in_refused(proxy, "erin", "not-her-password", fake_sites.facebook)
    assert_sign_in_refused(proxy, "erin", "", fake_sites.facebook)  # never an anonymous bind
    assert fake_sites.facebook.connections == 0
    assert proxy.metric("gatekeeper_directory_sign_ins_total", result="rejected") == 4
    reply = proxy.session().get(fake_sites.facebook.url("/", scheme="http"), timeout=TIMEOUT)
    assert reply.status_code == 407  # no credentials at all


def test_people_who_are_not_employees_cannot_sign_in(gk, fake_sites, slapd, tmp_path):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    # mallory is not in the staff group; gina's e-mail is not in a company domain; alice is
    # in approvals.yaml but has no account in the directory.
    for user in ("mallory", "gina", "alice"):
        assert_sign_in_refused(proxy, user, PASSWORDS.get(user, "pw"), fake_sites.x)


@pytest.mark.parametrize("spelling", ["Erin", "ERIN", "CLINIC\\erin", "clinic\\Erin",
                                      "erin@clinic.example", "Erin@CLINIC.example"])
def test_case_domain_and_realm_spellings_are_the_same_employee(gk, fake_sites, slapd,
                                                                 tmp_path, spelling):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    reply = get(proxy, spelling, PASSWORDS["erin"], fake_sites.facebook.url("/"))
    assert reply.status_code == 200
    assert {e["employee"] for e in proxy.events("decision")} == {"erin"}


def test_another_domain_or_realm_is_not_the_office_account(gk, fake_sites, slapd, tmp_path):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    for spelling in ("OTHER\\erin", "erin@gmail.com"):
        assert_sign_in_refused(proxy, spelling, PASSWORDS["erin"], fake_sites.facebook)


def test_a_successful_sign_in_is_cached_briefly(gk, fake_sites, slapd, tmp_path):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    url = fake_sites.facebook.url("/", scheme="http")
    for _ in range(3):
        assert get(proxy, "erin", PASSWORDS["erin"], url).status_code == 200
    assert proxy.metric("gatekeeper_directory_sign_ins_total", result="success") == 1
    assert proxy.metric("gatekeeper_directory_sign_ins_total", result="cached") == 2
    # The cache is keyed by the password too: a wrong one is checked, and refused.
    assert get(proxy, "erin", "guess", url).status_code == 407


# --- tricks -------------------------------------------------------------------------------------
# (erin's password has a colon in it: the whole of it counts, as everywhere above)


@pytest.mark.parametrize("user", [
    "*", "erin)(uid=*", "erin*", "uid=erin,ou=people,dc=clinic,dc=example", "erin\x00", "",
], ids=["wildcard", "filter-injection", "prefix-wildcard", "a-dn", "nul", "empty-user"])
def test_names_that_are_not_an_employee_id_sign_in_nobody(gk, fake_sites, slapd, tmp_path,
                                                          user):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    reply = get(proxy, user, PASSWORDS["erin"], fake_sites.facebook.url("/", scheme="http"))
    assert reply.status_code == 407
    assert fake_sites.facebook.connections == 0


def test_half_a_password_split_at_its_colon_is_wrong(gk, fake_sites, slapd, tmp_path):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    assert_sign_in_refused(proxy, "erin", PASSWORDS["erin"].split(":")[0], fake_sites.facebook)


def test_the_service_accounts_password_signs_in_nobody(gk, fake_sites, slapd, tmp_path):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    for user in ("gatekeeper", SERVICE_DN):
        assert_sign_in_refused(proxy, user, SERVICE_PASSWORD, fake_sites.facebook)


# --- the employee list --------------------------------------------------------------------------


def test_a_leaver_loses_access_within_one_refresh(gk, fake_sites, slapd, tmp_path, cli):
    proxy = start(gk, write_directory_config(tmp_path, slapd, refresh_seconds=1))
    x = fake_sites.x
    session = proxy.session("frank", PASSWORDS["frank"])
    assert session.get(x.url("/"), timeout=TIMEOUT).status_code == 200
    assert proxy.metric("gatekeeper_active_grants", service="x") == 1

    refreshed = proxy.metric("gatekeeper_directory_refreshes_total", result="success")
    slapd.remove_member("frank")
    wait_until(lambda: proxy.metric("gatekeeper_directory_refreshes_total",
                                    result="success") >= refreshed + 2, "two refreshes")

    # The tunnel he already had is still signed in, but he is nobody's employee any more.
    blocked = session.get(x.url("/"), timeout=TIMEOUT)
    assert blocked.status_code == 403
    assert blocked.headers["X-Gatekeeper-Reason"] == "unknown_employee"
    assert_sign_in_refused(proxy, "frank", PASSWORDS["frank"], x)  # and cannot sign in again
    assert proxy.metric("gatekeeper_active_grants", service="x") == 0

    review = cli("review", "--json", "--config-dir", str(proxy.config_dir),
                 "--state-dir", str(proxy.state_dir))
    assert review.returncode == 0, review.stderr
    report = json.loads(review.stdout)
    assert [(g["employee"], g["service"]) for g in report["leaver_grants"]] == [("frank", "x")]
    assert ("frank", "x") not in {(g["employee"], g["service"]) for g in report["grants"]}
    text = cli("review", "--config-dir", str(proxy.config_dir),
               "--state-dir", str(proxy.state_dir)).stdout
    assert "Grants of leavers" in text and "gatekeeper revoke frank x" in text


def test_sighup_reads_the_directory_again(gk, fake_sites, slapd, tmp_path):
    proxy = start(gk, write_directory_config(tmp_path, slapd))  # refresh every 15 minutes
    assert_sign_in_refused(proxy, "mallory", PASSWORDS["mallory"], fake_sites.x)
    slapd.add_member("mallory")
    proxy.signal(signal.SIGHUP)
    proxy.wait_for_metric("gatekeeper_directory_refreshes_total", 2, result="success")
    reply = get(proxy, "mallory", PASSWORDS["mallory"], fake_sites.x.url("/"))
    assert reply.status_code == 403  # an employee now, without a grant for X
    assert reply.headers["X-Gatekeeper-Reason"] == "not_approved"


def test_directory_down_keeps_the_last_good_list_and_nothing_hangs(gk, fake_sites, slapd,
                                                                    tmp_path):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    facebook = fake_sites.facebook
    assert get(proxy, "erin", PASSWORDS["erin"], facebook.url("/")).status_code == 200
    status, body = proxy.readyz()
    assert status == 200 and "directory: ok, 4 accounts" in body

    slapd.stop()
    proxy.signal(signal.SIGHUP)
    proxy.wait_for_metric("gatekeeper_directory_refreshes_total", 1, result="failure")
    assert proxy.metric("gatekeeper_directory_up") == 0
    assert proxy.metric("gatekeeper_directory_employees") == 3  # the last good list
    status, body = proxy.readyz()
    assert status == 200
    assert "directory: not answering since" in body and "keeping the list of" in body
    failed = proxy.wait_for_log(lambda e: e.get("event") == "directory_refresh_failed")
    assert failed["keeping_employees"] == 4

    # erin signed in a moment ago: still fine. dave's sign-in cannot be checked: a clear 503,
    # at once (the directory refuses connections), not a hang.
    assert get(proxy, "erin", PASSWORDS["erin"], facebook.url("/")).status_code == 200
    started = time.monotonic()
    reply = get(proxy, "dave", PASSWORDS["dave"], facebook.url("/", scheme="http"))
    assert reply.status_code == 503
    assert reply.headers["X-Gatekeeper-Reason"] == "directory_unavailable"
    assert time.monotonic() - started < DIRECTORY_TIMEOUT + 1
    with pytest.raises(requests.exceptions.ProxyError, match="503"):
        get(proxy, "dave", PASSWORDS["dave"], facebook.url("/"))

    # Restarted while the directory is still down, the proxy starts with the saved list
    # (copied to the state directory the next proxy of this test gets).
    proxy.stop()
    next_state = tmp_path / "state-2"
    next_state.mkdir(mode=0o700)
    shutil.copy2(proxy.state_dir / "directory.json", next_state / "directory.json")
    again = gk(proxy.config_dir, args=REGULAR)
    again.wait_for_metric("gatekeeper_directory_refreshes_total", 1, result="failure")
    assert again.metric("gatekeeper_directory_employees") == 3
    assert "keeping the list of" in again.readyz()[1]


def test_a_slow_directory_delays_nobody_else(gk, fake_sites, slapd, tmp_path):
    timeout = 4  # seconds: long enough for the checks below on a busy machine
    proxy = start(gk, write_directory_config(tmp_path, slapd, timeout_seconds=timeout))
    facebook = fake_sites.facebook
    erin = proxy.session("erin", PASSWORDS["erin"])
    assert erin.get(facebook.url("/"), timeout=TIMEOUT).status_code == 200  # signed in

    slapd.pause()  # accepts connections, answers nothing
    try:
        outcome: dict[str, Any] = {}

        def dave_signs_in() -> None:
            begun = time.monotonic()
            reply = get(proxy, "dave", PASSWORDS["dave"], facebook.url("/", scheme="http"))
            outcome.update(status=reply.status_code, seconds=time.monotonic() - begun)

        waiting = [threading.Thread(target=dave_signs_in) for _ in range(6)]
        for thread in waiting:
            thread.start()
        # While dave waits, erin (signed in) and a non-social site answer as fast as ever.
        slowest = 0.0
        for _ in range(10):
            begun = time.monotonic()
            assert erin.get(facebook.url("/"), timeout=TIMEOUT).status_code == 200
            fresh = proxy.session("erin", PASSWORDS["erin"])  # a new connection, cached
            assert fresh.get(fake_sites.bank.url("/", scheme="http"),
                             timeout=TIMEOUT).status_code == 200
            slowest = max(slowest, time.monotonic() - begun)
        # A blocked event loop would hold them for the directory's whole timeout.
        assert slowest < 1, \
            f"a request took {slowest:.2f}s while the directory was slow"
        assert not outcome, "dave's sign-in should still be waiting on the directory"
        for thread in waiting:
            thread.join(TIMEOUT)
        assert outcome["status"] == 503
        assert outcome["seconds"] < timeout + 1.5
    finally:
        slapd.resume()


# --- commands -----------------------------------------------------------------------------------


def test_check_validates_the_section_and_online_counts_the_employees(slapd, tmp_path, cli):
    config = write_directory_config(tmp_path, slapd)
    offline = cli("check", "--config-dir", str(config))
    assert offline.returncode == 0, offline.stderr
    assert f"directory: {slapd.url} (openldap)" in offline.stdout

    online = cli("check", "--online", "--config-dir", str(config))
    assert online.returncode == 0, online.stderr
    assert "4 accounts, 3 employees from the directory (1 left out)" in online.stdout
    assert "left out: gina: no e-mail in a company domain" in online.stdout

    password_file = tmp_path / "directory.password"
    password_file.chmod(0o644)
    loose = cli("check", "--config-dir", str(config))
    assert loose.returncode == 1
    assert "may be read by others (mode 0644): run `chmod 600" in loose.stderr
    password_file.chmod(0o600)

    password_file.write_text("wrong-password\n")
    refused = cli("check", "--online", "--config-dir", str(config))
    assert refused.returncode == 1
    assert f"the directory refused the service account '{SERVICE_DN}'" in refused.stderr

    slapd.stop()
    down = cli("check", "--online", "--config-dir", str(config))
    assert down.returncode == 1 and "cannot read the employees" in down.stderr


def test_explain_grant_and_requests_name_directory_people(gk, fake_sites, slapd, tmp_path, cli):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    dirs = ["--config-dir", str(proxy.config_dir), "--state-dir", str(proxy.state_dir)]

    explained = cli("explain", *dirs, "erin", "https://www.facebook.com/")
    assert explained.returncode == 0, explained.stderr
    assert "allow: Facebook (facebook) for erin (Erin Example <erin@clinic.example>)" \
        in explained.stdout
    as_json = json.loads(cli("explain", *dirs, "--json", "CLINIC\\Erin",
                             "https://www.facebook.com/").stdout)
    assert (as_json["employee"], as_json["employee_name"], as_json["decision"]) == \
        ("erin", "Erin Example", "allow")

    # dave is only in the directory: the approver can grant him a service all the same.
    granted = cli("grant", *dirs, "dave", "linkedin")
    assert granted.returncode == 0, granted.stderr
    assert "signing in as dave@clinic.example" in granted.stdout
    wait_until(lambda: get(proxy, "dave", PASSWORDS["dave"],
                           fake_sites.linkedin.url("/")).status_code == 200, "dave's grant")

    # An access request from the block page lists who asked.
    blocked = get(proxy, "dave", PASSWORDS["dave"], fake_sites.x.url("/"))
    assert blocked.status_code == 403
    with StateDB(proxy.state_dir) as db:
        db.submit_request("dave", "x", "Post the clinic's news", dt.datetime.now(dt.UTC))
    listed = json.loads(cli("requests", *dirs, "--json").stdout)
    assert [(r["employee"], r["employee_name"], r["employee_email"]) for r in listed] == \
        [("dave", "Dave Doe", "dave@clinic.example")]
    header, row = cli("requests", *dirs).stdout.splitlines()
    assert row.index("Dave Doe <dave@clinic.example>") == header.index("NAME")


# --- secrets ------------------------------------------------------------------------------------


def test_the_bind_password_is_in_no_command_line_log_or_state_file(gk, fake_sites, slapd,
                                                                    tmp_path):
    proxy = start(gk, write_directory_config(tmp_path, slapd))
    get(proxy, "erin", PASSWORDS["erin"], fake_sites.facebook.url("/"))
    get(proxy, "erin", "wrong", fake_sites.facebook.url("/", scheme="http"))
    proxy.signal(signal.SIGHUP)
    proxy.wait_for_metric("gatekeeper_directory_refreshes_total", 2, result="success")

    secrets = [SERVICE_PASSWORD.encode(), PASSWORDS["erin"].encode()]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        assert not any(s in cmdline for s in secrets), f"a password in /proc/{pid}/cmdline"
    proxy.stop()
    logs = (proxy.stdout + proxy.stderr).encode()
    assert not any(s in logs for s in secrets)
    for path in proxy.state_dir.rglob("*"):
        if path.is_file():
            assert not any(s in path.read_bytes() for s in secrets), path
    saved = proxy.state_dir / "directory.json"
    assert saved.exists() and saved.stat().st_mode & 0o077 == 0


# --- TLS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ldaps", "starttls"])
def test_tls_to_the_directory_with_a_ca_file(gk, fake_sites, slapd, tmp_path, transport):
    if transport == "ldaps":
        section = {"url": slapd.ldaps_url}
    else:  # StartTLS on the plain port, by name so that the certificate's name matches
        section = {"url": f"ldap://localhost:{slapd.port}", "starttls": True}
    config = write_directory_config(tmp_path, slapd, ca_file=str(slapd.ca_file), **section)
    proxy = start(gk, config)
    assert get(proxy, "erin", PASSWORDS["erin"], fake_sites.facebook.url("/")).status_code == 200
    assert_sign_in_refused(proxy, "erin", "wrong", fake_sites.facebook)


def test_a_directory_certificate_from_an_unknown_ca_is_refused(slapd, tmp_path, cli):
    config = write_directory_config(tmp_path, slapd, url=slapd.ldaps_url)  # no ca_file
    refused = cli("check", "--online", "--config-dir", str(config))
    assert refused.returncode == 1
    assert "cannot read the employees" in refused.stderr
    assert "certificate" in refused.stderr.lower()
