"""The approver's commands against real approvals.yaml files and real state databases in
temporary directories: in process through `gatekeeper.cli.main(argv)`, and as the installed
`gatekeeper` console script in the one test against a running proxy."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import configs
from support.cli import run_main

from gatekeeper.config.loader import load_policy
from gatekeeper.state import (
    APPROVED,
    DENIED,
    PENDING,
    AuditedAction,
    BlockedAttempt,
    GrantUse,
    StateDB,
)

GATEKEEPER = Path(sys.executable).parent / "gatekeeper"
REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"
APPROVER = "it.lead@clinic.example"  # the approver in the repository's approvals.yaml
NOW = dt.datetime.now(dt.UTC)
TODAY = dt.date.today()
LATER = TODAY + dt.timedelta(days=40)
TIMEOUT = 10


class Approver:
    """Runs `gatekeeper COMMAND --config-dir ... --state-dir ...` and opens the same files: in
    process with `capsys` capturing its output, else as the installed console script."""

    def __init__(self, config_dir: Path, state_dir: Path,
                 capsys: pytest.CaptureFixture[str] | None = None) -> None:
        self.config_dir = config_dir
        self.state_dir = state_dir
        self.approvals = config_dir / "approvals.yaml"
        self.capsys = capsys

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [command, "--config-dir", str(self.config_dir),
                "--state-dir", str(self.state_dir), *args]
        if self.capsys is None:
            return subprocess.run([str(GATEKEEPER), *argv], capture_output=True, text=True,
                                  timeout=60, check=False)
        return run_main(self.capsys, argv)

    def ok(self, command: str, *args: str) -> str:
        done = self.run(command, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def refused(self, command: str, *args: str) -> str:
        """Runs a command that must fail with status 1 and change nothing in approvals.yaml."""
        before = self.approvals.read_bytes()
        done = self.run(command, *args)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert self.approvals.read_bytes() == before
        return done.stderr

    def db(self) -> StateDB:
        return StateDB(self.state_dir)

    def submit(self, employee: str, service: str, text: str = "I run the clinic page") -> str:
        with self.db() as db:
            request, _ = db.submit_request(employee, service, text, NOW)
        return request.id

    def status(self, request_id: str) -> str:
        with self.db() as db:
            return db.get_request(request_id).status


@pytest.fixture
def gk_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Approver:
    """The repository's config/ copied into a tmp dir, and an empty state database."""
    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
    approver = Approver(config, tmp_path / "state", capsys)
    approver.db().close()
    return approver


# --- requests ---------------------------------------------------------------------------------


def test_requests_lists_pending_as_json_and_as_a_table(gk_cli: Approver) -> None:
    dave = gk_cli.submit("dave", "instagram", "Post the clinic's opening hours")
    alice = gk_cli.submit("alice", "facebook")
    with gk_cli.db() as db:
        db.decide_request(alice, DENIED, APPROVER, None, NOW)

    listed = json.loads(gk_cli.ok("requests", "--json"))
    assert [r["id"] for r in listed] == [dave]
    assert {"id", "employee", "service", "justification", "created", "status"} <= set(listed[0])
    assert listed[0]["employee"] == "dave"
    assert listed[0]["service"] == "instagram"
    assert listed[0]["justification"] == "Post the clinic's opening hours"
    assert listed[0]["status"] == PENDING
    assert dt.datetime.fromisoformat(listed[0]["created"]) == NOW.replace(microsecond=0)

    everything = json.loads(gk_cli.ok("requests", "--json", "--all"))
    assert {(r["id"], r["status"]) for r in everything} == {(dave, PENDING), (alice, DENIED)}

    header, row = gk_cli.ok("requests").splitlines()
    assert f"gatekeeper approve {dave}" in row
    for column, value in (("EMPLOYEE", "dave"), ("SERVICE", "instagram"),
                          ("JUSTIFICATION", "Post the clinic's opening hours")):
        assert row.index(value) == header.index(column)  # aligned under its heading


def test_requests_with_nothing_pending_says_so(gk_cli: Approver) -> None:
    assert json.loads(gk_cli.ok("requests", "--json")) == []
    assert gk_cli.ok("requests") == "no pending access requests\n"


def test_missing_state_database_is_an_error_not_a_new_empty_one(gk_cli: Approver,
                                                                tmp_path: Path) -> None:
    gk_cli.state_dir = tmp_path / "typo"
    assert "no state database" in gk_cli.refused("requests")
    assert not gk_cli.state_dir.exists()


# --- approve / deny ---------------------------------------------------------------------------


def test_approve_writes_the_grant_then_marks_the_request(gk_cli: Approver) -> None:
    request_id = gk_cli.submit("dave", "instagram")
    out = gk_cli.ok("approve", request_id.upper(), "--expires", LATER.isoformat(),
                    "--account", "dave@clinic.example", "clinicexample_dave")

    grant = load_policy(gk_cli.config_dir).grants[("dave", "instagram")]
    assert grant.approved_by == APPROVER
    assert grant.approved_on == TODAY
    assert grant.expires == LATER
    assert grant.accounts == {"dave@clinic.example", "clinicexample_dave"}
    assert f"approved: dave may use instagram until {LATER}" in out
    assert f"(request {request_id})" in out
    with gk_cli.db() as db:
        decided = db.get_request(request_id)
    assert (decided.status, decided.decided_by) == (APPROVED, APPROVER)

    again = gk_cli.refused("approve", request_id)
    assert f"access request {request_id} was already approved" in again


def test_approve_without_account_defaults_to_the_employee_email(gk_cli: Approver) -> None:
    request_id = gk_cli.submit("dave", "linkedin")
    out = gk_cli.ok("approve", request_id)
    grant = load_policy(gk_cli.config_dir).grants[("dave", "linkedin")]
    assert (grant.accounts, grant.expires) == ({"dave@clinic.example"}, None)
    assert "with no expiry, signing in as dave@clinic.example" in out


def test_approve_unknown_id_is_refused(gk_cli: Approver) -> None:
    assert "no access request with id 'zz99zz99'" in gk_cli.refused("approve", "zz99zz99")


def test_approve_with_an_expiry_in_the_past_changes_nothing(gk_cli: Approver) -> None:
    request_id = gk_cli.submit("dave", "instagram")
    yesterday = TODAY - dt.timedelta(days=1)
    error = gk_cli.refused("approve", request_id, "--expires", yesterday.isoformat())
    assert "is not in the future" in error
    assert f"request {request_id} is still pending" in error
    assert gk_cli.status(request_id) == PENDING


def test_approve_for_a_service_not_in_the_catalog_keeps_the_request_pending(
    gk_cli: Approver,
) -> None:
    request_id = gk_cli.submit("dave", "myspace")
    error = gk_cli.refused("approve", request_id)
    assert "unknown service 'myspace'" in error
    assert gk_cli.status(request_id) == PENDING


def test_approve_that_would_make_the_file_invalid_is_refused(gk_cli: Approver) -> None:
    request_id = gk_cli.submit("dave", "instagram")
    error = gk_cli.refused("approve", request_id, "--account", "dave@gmail.example")
    assert "approvals.yaml would be invalid" in error
    assert f"{gk_cli.approvals.resolve()}:" in error  # path:line: message
    assert "'dave@gmail.example' is not in a company domain" in error
    assert gk_cli.status(request_id) == PENDING


def test_approve_says_so_when_the_grant_is_written_but_the_request_not_marked(
    gk_cli: Approver,
) -> None:
    request_id = gk_cli.submit("dave", "instagram")
    with sqlite3.connect(gk_cli.state_dir / "gatekeeper.db") as conn:  # a fault inside SQLite
        conn.execute("CREATE TRIGGER fail BEFORE UPDATE ON access_requests"
                     " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    done = gk_cli.run("approve", request_id)
    assert done.returncode == 1
    assert f"the grant is written to {gk_cli.approvals.resolve()} and in force" in done.stderr
    assert "disk on fire" in done.stderr
    assert ("dave", "instagram") in load_policy(gk_cli.config_dir).grants
    assert gk_cli.status(request_id) == PENDING

    with sqlite3.connect(gk_cli.state_dir / "gatekeeper.db") as conn:
        conn.execute("DROP TRIGGER fail")
    gk_cli.ok("approve", request_id)  # running it again finishes the job
    assert gk_cli.status(request_id) == APPROVED


def test_deny_records_the_decision_and_leaves_the_file_alone(gk_cli: Approver) -> None:
    request_id = gk_cli.submit("dave", "tiktok")
    before = gk_cli.approvals.read_bytes()
    out = gk_cli.ok("deny", request_id, "--reason", "not needed for the job")
    assert out == f"denied: request {request_id} of dave for tiktok: not needed for the job\n"
    assert gk_cli.approvals.read_bytes() == before
    with gk_cli.db() as db:
        denied = db.get_request(request_id)
    assert (denied.status, denied.decided_by, denied.decision_reason) == (
        DENIED, APPROVER, "not needed for the job"
    )
    assert "was already denied" in gk_cli.refused("deny", request_id)
    assert "was already denied" in gk_cli.refused("approve", request_id)


# --- grant / revoke ---------------------------------------------------------------------------


def test_grant_and_revoke_without_a_request(gk_cli: Approver) -> None:
    out = gk_cli.ok("grant", "dave", "x", "--expires", LATER.isoformat())
    assert out.startswith(f"granted: dave may use x until {LATER}")
    assert load_policy(gk_cli.config_dir).grants[("dave", "x")].expires == LATER

    out = gk_cli.ok("revoke", "dave", "x")
    assert out.startswith("revoked: dave may no longer use x")
    assert ("dave", "x") not in load_policy(gk_cli.config_dir).grants
    assert "there is no grant for employee 'dave'" in gk_cli.refused("revoke", "dave", "x")


def test_grant_marks_a_pending_request_for_the_pair_approved(gk_cli: Approver) -> None:
    wanted = gk_cli.submit("dave", "pinterest")
    other = gk_cli.submit("dave", "reddit")
    out = gk_cli.ok("grant", "dave", "pinterest")
    assert f"pending request {wanted} of dave for pinterest marked approved" in out
    assert (gk_cli.status(wanted), gk_cli.status(other)) == (APPROVED, PENDING)


def test_grant_renews_an_existing_grant(gk_cli: Approver) -> None:
    out = gk_cli.ok("grant", "bob", "facebook", "--expires", LATER.isoformat())
    assert out.startswith(f"grant renewed: bob may use facebook until {LATER}, signing in as "
                          "marketing@clinic.example")
    grant = load_policy(gk_cli.config_dir).grants[("bob", "facebook")]
    assert (grant.approved_on, grant.expires) == (TODAY, LATER)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("erin", "facebook"), "unknown employee 'erin'"),
        (("dave", "myspace"), "unknown service 'myspace'"),
        (("dave", "x", "--expires", TODAY.isoformat()), "is not in the future"),
        (("dave", "x", "--account", "dave@gmail.example"), "approvals.yaml would be invalid"),
    ],
)
def test_grant_refusals_change_nothing(gk_cli: Approver, args: tuple[str, ...],
                                       message: str) -> None:
    assert message in gk_cli.refused("grant", *args)


def test_an_already_invalid_config_is_reported_with_its_problems(gk_cli: Approver) -> None:
    text = gk_cli.approvals.read_text()
    gk_cli.approvals.write_text(text.replace("mode: enforce", "mode: enforce\ncolour: blue"))
    error = gk_cli.refused("grant", "dave", "x")
    assert "the configuration is invalid, so nothing was changed" in error
    line = text.splitlines().index("mode: enforce") + 2
    assert f"{gk_cli.approvals}:{line}: unknown key 'colour'" in error


def test_bad_date_is_a_usage_error(gk_cli: Approver) -> None:
    done = gk_cli.run("grant", "dave", "x", "--expires", "next week")
    assert done.returncode == 2
    assert "not a date (YYYY-MM-DD): 'next week'" in done.stderr


# --- acknowledgements / review ----------------------------------------------------------------


def test_acknowledgements_lists_who_accepted_which_terms(gk_cli: Approver) -> None:
    with gk_cli.db() as db:
        db.acknowledge("bob", "facebook", "https://www.facebook.com/terms.php", NOW)
        db.acknowledge("alice", "linkedin", "https://www.linkedin.com/legal/user-agreement",
                       NOW + dt.timedelta(minutes=5))
    listed = json.loads(gk_cli.ok("acknowledgements", "--json"))
    assert [(a["employee"], a["service"], a["terms_url"]) for a in listed] == [
        ("bob", "facebook", "https://www.facebook.com/terms.php"),
        ("alice", "linkedin", "https://www.linkedin.com/legal/user-agreement"),
    ]
    assert dt.datetime.fromisoformat(listed[0]["acknowledged_at"]) == NOW.replace(microsecond=0)
    table = gk_cli.ok("acknowledgements").splitlines()
    assert table[0].split() == ["ACKNOWLEDGED", "EMPLOYEE", "SERVICE", "TERMS"]
    assert table[1].endswith("bob       facebook  https://www.facebook.com/terms.php")


LINKEDIN_TERMS = "https://www.linkedin.com/legal/user-agreement"


@pytest.fixture
def reviewed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Approver:
    """A scripted month: grants with dates around today, requests, blocks, audited actions,
    grant use and acknowledgements, recorded the way the proxy records them."""
    services = configs.services_doc(linkedin={
        "name": "LinkedIn", "domains": ["linkedin.com"], "terms_url": LINKEDIN_TERMS,
    })
    approvals = configs.approvals_doc()  # alice linkedin (2024, no expiry), carol expired
    approvals["grants"] += [
        configs.grant("bob", "facebook", expires=TODAY + dt.timedelta(days=10)),
        configs.grant("bob", "x", approved_on=TODAY - dt.timedelta(days=5)),
    ]
    approver = Approver(configs.write_config(tmp_path / "config", services=services,
                                             approvals=approvals), tmp_path / "state", capsys)
    hour = dt.timedelta(hours=1)
    with approver.db() as db:
        db.submit_request("carol", "x", "Watch the health ministry's posts", NOW - 3 * hour)
        approved, _ = db.submit_request("bob", "x", "Clinic news", NOW - 2 * hour)
        db.decide_request(approved.id, APPROVED, configs.APPROVER, None, NOW - hour)
        db.record_many([
            *(BlockedAttempt("bob", "linkedin", "not_approved", NOW - hour) for _ in range(3)),
            BlockedAttempt("bob", "linkedin", "not_approved", NOW - dt.timedelta(days=60)),
            BlockedAttempt("alice", "linkedin", "personal_account", NOW - hour),
            BlockedAttempt("alice", "linkedin", "personal_account", NOW - hour),
            BlockedAttempt(None, "x", "unknown_employee", NOW - hour),
            AuditedAction("bob", "facebook", "create_group", NOW - 2 * hour),
            AuditedAction("bob", "facebook", "create_group", NOW - dt.timedelta(days=45)),
            GrantUse("alice", "linkedin", NOW - hour),
        ])
        db.acknowledge("alice", "linkedin", LINKEDIN_TERMS, NOW - 4 * hour)
        db.acknowledge("alice", "linkedin", "https://www.linkedin.com/old-terms",
                       NOW - dt.timedelta(days=100))
    return approver


def test_review_json_over_the_default_30_days(reviewed: Approver) -> None:
    report = json.loads(reviewed.ok("review", "--json"))
    assert report["today"] == TODAY.isoformat()
    assert report["since"] == (TODAY - dt.timedelta(days=30)).isoformat()
    assert [(g["employee"], g["service"]) for g in report["grants"]] == [
        ("alice", "linkedin"), ("bob", "facebook"), ("bob", "x"),
    ]
    assert [(g["service"], g["days_left"]) for g in report["expiring_soon"]] == [("facebook", 10)]
    # alice's 2024 grant was used an hour ago; bob's facebook grant of 2024 never
    assert [(g["employee"], g["service"]) for g in report["unused"]] == [("bob", "facebook")]
    assert [(g["employee"], g["service"]) for g in report["expired_grants"]] == [
        ("carol", "linkedin"),
    ]
    assert [(r["employee"], r["service"], r["age_days"]) for r in report["pending_requests"]] \
        == [("carol", "x", (TODAY - (NOW - dt.timedelta(hours=3)).date()).days)]
    assert [(r["employee"], r["status"]) for r in report["decided_requests"]] == [
        ("bob", APPROVED),
    ]
    assert [(b["employee"], b["service"], b["reason"], b["count"])
            for b in report["blocked_attempts"]] == [
        ("alice", "linkedin", "personal_account", 2),  # personal-account logins first
        ("bob", "linkedin", "not_approved", 3),  # the block 60 days ago is outside
        (None, "x", "unknown_employee", 1),
    ]
    assert [(a["employee"], a["action"]) for a in report["audited_actions"]] == [
        ("bob", "create_group"),
    ]
    assert [(a["terms_url"], a["current"]) for a in report["acknowledgements"]] == [
        ("https://www.linkedin.com/old-terms", False), (LINKEDIN_TERMS, True),
    ]


def test_review_since_widens_the_window(reviewed: Approver) -> None:
    since = TODAY - dt.timedelta(days=90)
    report = json.loads(reviewed.ok("review", "--json", "--since", since.isoformat()))
    assert report["since"] == since.isoformat()
    counts = {(b["employee"], b["reason"]): b["count"] for b in report["blocked_attempts"]}
    assert counts[("bob", "not_approved")] == 4
    assert len(report["audited_actions"]) == 2


def test_review_text_names_each_section(reviewed: Approver) -> None:
    text = reviewed.ok("review")
    assert text.startswith(f"Access review on {TODAY}")
    assert "Expiring within 30 days (1)\n  bob facebook: expires" in text
    assert "Blocked attempts (3)\n  alice linkedin personal_account: 2" in text
    assert "(terms changed since)" in text


# --- a running proxy --------------------------------------------------------------------------


def fetch_until(session, url: str, status: int, deadline_s: float) -> float:
    """Seconds until `url` answers `status` through the proxy; fails after `deadline_s`."""
    start = time.monotonic()
    while True:
        reply = session.get(url, timeout=TIMEOUT)
        elapsed = time.monotonic() - start
        if reply.status_code == status:
            return elapsed
        assert elapsed < deadline_s, f"still {reply.status_code} after {elapsed:.1f}s"
        time.sleep(0.05)


@pytest.mark.e2e
def test_running_proxy_picks_up_grant_and_revoke_live(gk, fake_sites, config_dir: Path) -> None:
    proxy = gk(args=["--set", "proxyauth=any"])
    cli = Approver(config_dir, proxy.state_dir)
    session = proxy.session("bob", "pw")
    url = fake_sites.facebook.url("/")
    assert session.get(url, timeout=TIMEOUT).status_code == 403

    cli.ok("grant", "bob", "facebook")
    fetch_until(session, url, 200, deadline_s=1.5)
    assert fake_sites.facebook.requests_to("/")

    cli.ok("revoke", "bob", "facebook")
    fetch_until(session, url, 403, deadline_s=1.5)
