"""Editing approvals.yaml: every untouched byte stays, the result loads, the write is atomic
and a concurrent edit is refused."""

from __future__ import annotations

import datetime as dt
import difflib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper import approvals_edit
from gatekeeper.approvals_edit import (
    ConcurrentEditError,
    EditError,
    InvalidResultError,
    grant,
    revoke,
)
from gatekeeper.config.loader import load_policy
from gatekeeper.config.yamlsrc import ConfigError

TODAY = dt.date(2025, 6, 1)
REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"

SERVICES = """\
services:
  facebook: {name: Facebook, domains: [facebook.com]}
  linkedin: {name: LinkedIn, domains: [linkedin.com]}
  x: {name: X, domains: [x.com, twitter.com]}
  instagram: {name: Instagram, domains: [instagram.com]}
"""

BOB_FLOW = (
    "-   {employee: bob, service: linkedin, approved_by: it.lead@clinic.example, "
    "approved_on: 2024-02-01, expires: 2099-01-01}"
)
# Comments everywhere, odd indentation, flow and block styles, quoting, trailing spaces.
APPROVALS = """\
# Approvals for the clinic.<TRAILING>
#   (hand-edited; keep the odd formatting)

approver:   "it.lead@clinic.example"     # the one approver
company_domains: [ clinic.example ,other.example ]
mode: enforce

employees:
    alice:                # four-space indent
        email: alice@clinic.example
    bob: {email: bob@clinic.example, addresses: [10.0.0.2]}
    carol:
      email: 'carol@clinic.example'
    "dave":
      email: dave@clinic.example   # no grant yet

grants:
# a comment at column 0 inside the list
-   employee: alice       # dash at column 0, three spaces after it
    service: facebook
    approved_by: it.lead@clinic.example
    approved_on: '2024-01-10'
    accounts:
    - alice@clinic.example
    - ALICE@other.example     # her second company domain

<BOB_FLOW>

    # Carol: the clinic's X account
-   employee: carol
    service: x
    approved_by: it.lead@clinic.example
    approved_on: 2024-03-01   # trailing comment
    expires: 2099-12-31
# --- end of grants ---
""".replace("<TRAILING>", "   ").replace("<BOB_FLOW>", BOB_FLOW)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "services.yaml").write_text(SERVICES)
    (directory / "approvals.yaml").write_text(APPROVALS)
    load_policy(directory)  # the fixture itself is valid
    return directory


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines; every other line is byte-identical and in the same order."""
    removed: list[str] = []
    added: list[str] = []
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op != "equal":
            removed += old[i1:i2]
            added += new[j1:j2]
    return removed, added


def text(config: Path) -> str:
    return (config / "approvals.yaml").read_text()


# --- grant ----------------------------------------------------------------------------------


def test_new_grant_is_appended_in_the_style_of_the_last_one(config: Path) -> None:
    result = grant(
        config, "dave", "facebook", expires=dt.date(2025, 12, 31),
        accounts=["dave@clinic.example"], today=TODAY,
    )
    assert result.action == "added"
    removed, added = changed_lines(APPROVALS, text(config))
    assert removed == []
    assert "".join(added) == (
        "-   employee: dave\n"
        "    service: facebook\n"
        "    approved_by: it.lead@clinic.example\n"
        "    approved_on: 2025-06-01\n"
        "    expires: 2025-12-31\n"
        "    accounts: [dave@clinic.example]\n"
    )
    # right after carol's grant, before the comment that closes the list
    tail = "expires: 2099-12-31\n" + "".join(added) + "# --- end of grants ---\n"
    assert text(config).endswith(tail)
    granted = load_policy(config).grants[("dave", "facebook")]
    assert granted == result.grant
    assert (granted.approved_by, granted.approved_on, granted.expires) == (
        "it.lead@clinic.example", TODAY, dt.date(2025, 12, 31)
    )


def test_existing_grant_is_updated_in_place(config: Path) -> None:
    result = grant(config, "alice", "facebook", expires=dt.date(2026, 1, 1), today=TODAY)
    assert result.action == "updated"
    removed, added = changed_lines(APPROVALS, text(config))
    assert removed == ["    approved_on: '2024-01-10'\n"]
    assert added == ["    approved_on: '2025-06-01'\n", "    expires: 2026-01-01\n"]
    assert text(config).count("employee: alice") == 1
    policy = load_policy(config)
    assert policy.grants[("alice", "facebook")].accounts == {
        "alice@clinic.example", "alice@other.example"
    }  # accounts not given: kept


def test_renewal_without_expiry_removes_it_and_replaces_accounts(config: Path) -> None:
    grant(config, "carol", "x", accounts=["carol@clinic.example", "carol@other.example"],
          today=TODAY)
    removed, added = changed_lines(APPROVALS, text(config))
    assert removed == [
        "    approved_on: 2024-03-01   # trailing comment\n",
        "    expires: 2099-12-31\n",
    ]
    assert added == [
        "    approved_on: 2025-06-01   # trailing comment\n",
        "    accounts: [carol@clinic.example, carol@other.example]\n",
    ]
    assert load_policy(config).grants[("carol", "x")].expires is None


def test_block_accounts_list_is_replaced_in_its_own_style(config: Path) -> None:
    grant(config, "alice", "facebook", accounts=["alice@clinic.example"], today=TODAY)
    removed, added = changed_lines(APPROVALS, text(config))
    assert removed == [
        "    approved_on: '2024-01-10'\n",
        "    - alice@clinic.example\n",
        "    - ALICE@other.example     # her second company domain\n",
    ]
    assert added == [
        "    approved_on: '2025-06-01'\n",
        "    - alice@clinic.example     # her second company domain\n",
    ]


def test_flow_style_grant_is_edited_in_flow_style(config: Path) -> None:
    grant(config, "bob", "linkedin", accounts=["bob@clinic.example"], today=TODAY)
    removed, added = changed_lines(APPROVALS, text(config))
    assert [line.strip() for line in removed] == [
        "-   {employee: bob, service: linkedin, approved_by: it.lead@clinic.example, "
        "approved_on: 2024-02-01, expires: 2099-01-01}"
    ]
    assert [line.strip() for line in added] == [
        "-   {employee: bob, service: linkedin, approved_by: it.lead@clinic.example, "
        "approved_on: 2025-06-01, accounts: [bob@clinic.example]}"
    ]
    assert load_policy(config).grants[("bob", "linkedin")].expires is None


def test_grants_key_is_created_when_missing(config: Path) -> None:
    head = APPROVALS.split("grants:")[0].rstrip("\n")  # no final newline either
    (config / "approvals.yaml").write_text(head)
    grant(config, "bob", "x", today=TODAY)
    assert text(config) == head + (
        "\ngrants:\n"
        "  - employee: bob\n"
        "    service: x\n"
        "    approved_by: it.lead@clinic.example\n"
        "    approved_on: 2025-06-01\n"
    )
    assert load_policy(config).grants[("bob", "x")].accounts == {"bob@clinic.example"}


@pytest.mark.parametrize("empty", ["grants:", "grants: []", "grants: ~"])
def test_empty_grants_get_their_first_item(config: Path, empty: str) -> None:
    head = APPROVALS.split("grants:")[0]
    (config / "approvals.yaml").write_text(f"{head}{empty}   # none yet\n# tail comment\n")
    grant(config, "bob", "x", today=TODAY)
    assert text(config) == (
        f"{head}grants:   # none yet\n"
        "  - employee: bob\n"
        "    service: x\n"
        "    approved_by: it.lead@clinic.example\n"
        "    approved_on: 2025-06-01\n"
        "# tail comment\n"
    )


def test_values_that_yaml_would_misread_are_quoted(config: Path) -> None:
    approvals = APPROVALS.replace(
        '    "dave":', '    "007":\n      email: bond@clinic.example\n    "dave":'
    )
    (config / "approvals.yaml").write_text(approvals)
    grant(config, "007", "x", today=TODAY)
    _, added = changed_lines(approvals, text(config))
    assert added[0] == '-   employee: "007"\n'
    assert ("007", "x") in load_policy(config).grants


def test_crlf_file_keeps_its_line_endings(config: Path) -> None:
    (config / "approvals.yaml").write_bytes(APPROVALS.replace("\n", "\r\n").encode())
    grant(config, "dave", "x", today=TODAY)
    revoke(config, "alice", "facebook")
    data = (config / "approvals.yaml").read_bytes()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"-   employee: dave\r\n    service: x\r\n" in data
    assert set(load_policy(config).grants) == {("bob", "linkedin"), ("carol", "x"), ("dave", "x")}


# --- revoke ---------------------------------------------------------------------------------


def test_revoke_removes_only_the_grant(config: Path) -> None:
    result = revoke(config, "carol", "x")
    assert (result.action, result.grant) == ("revoked", None)
    removed, added = changed_lines(APPROVALS, text(config))
    assert added == []
    assert removed == [
        "-   employee: carol\n",
        "    service: x\n",
        "    approved_by: it.lead@clinic.example\n",
        "    approved_on: 2024-03-01   # trailing comment\n",
        "    expires: 2099-12-31\n",
    ]
    assert set(load_policy(config).grants) == {("alice", "facebook"), ("bob", "linkedin")}


def test_revoke_flow_item_and_the_last_one(config: Path) -> None:
    revoke(config, "bob", "linkedin")
    removed, added = changed_lines(APPROVALS, text(config))
    assert added == [] and len(removed) == 1 and "employee: bob" in removed[0]
    revoke(config, "alice", "facebook")
    revoke(config, "carol", "x")
    assert load_policy(config).grants == {}
    assert "# a comment at column 0 inside the list\n" in text(config)
    assert text(config).endswith("# --- end of grants ---\n")


def test_revoke_in_a_flow_list(config: Path) -> None:
    head = APPROVALS.split("grants:")[0]
    flow = (
        "grants: [{employee: bob, service: x, approved_by: it.lead@clinic.example, "
        "approved_on: 2024-01-01},\n  {employee: carol, service: x, "
        "approved_by: it.lead@clinic.example, approved_on: 2024-01-01}]  # two\n"
    )
    (config / "approvals.yaml").write_text(head + flow)
    grant(config, "dave", "x", today=TODAY)
    assert text(config).endswith(
        "approved_on: 2024-01-01}, {employee: dave, service: x, "
        "approved_by: it.lead@clinic.example, approved_on: 2025-06-01}]  # two\n"
    )
    revoke(config, "carol", "x")
    revoke(config, "bob", "x")
    assert text(config) == head + (
        "grants: [{employee: dave, service: x, approved_by: it.lead@clinic.example, "
        "approved_on: 2025-06-01}]  # two\n"
    )


# --- refusals leave the file alone ----------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: grant(c, "mallory", "x", today=TODAY), "unknown employee 'mallory'"),
        (lambda c: grant(c, "dave", "myspace", today=TODAY), "unknown service 'myspace'"),
        (lambda c: grant(c, "dave", "x", expires=TODAY, today=TODAY), "not in the future"),
        (
            lambda c: grant(c, "dave", "x", expires=dt.date(2020, 1, 1), today=TODAY),
            "not in the future",
        ),
        (lambda c: grant(c, "dave", "x", accounts=[" "], today=TODAY), "non-empty"),
        (lambda c: revoke(c, "dave", "x"), "no grant for employee 'dave' and service 'x'"),
    ],
)
def test_refused_edits_do_not_touch_the_file(config: Path, call, message: str) -> None:
    before = os.stat(config / "approvals.yaml")
    with pytest.raises(EditError, match=message):
        call(config)
    after = os.stat(config / "approvals.yaml")
    assert text(config) == APPROVALS
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(os.listdir(config)) == ["approvals.yaml", "services.yaml"]


def test_invalid_result_is_refused(config: Path) -> None:
    with pytest.raises(InvalidResultError) as refused:
        grant(config, "dave", "x", accounts=["dave@gmail.com"], today=TODAY)
    assert any("not in a company domain" in p.message for p in refused.value.problems)
    assert "approvals.yaml:" in str(refused.value)
    with pytest.raises(InvalidResultError, match="already belongs to employee 'alice'"):
        grant(config, "dave", "x", accounts=["alice@clinic.example"], today=TODAY)
    assert text(config) == APPROVALS
    assert sorted(os.listdir(config)) == ["approvals.yaml", "services.yaml"]


def test_an_invalid_file_is_not_edited(config: Path) -> None:
    broken = APPROVALS.replace("service: facebook", "service: facebok")
    (config / "approvals.yaml").write_text(broken)
    with pytest.raises(ConfigError, match="unknown service 'facebok'"):
        grant(config, "dave", "x", today=TODAY)
    assert text(config) == broken


# --- the write ------------------------------------------------------------------------------


def test_concurrent_edit_is_refused(config: Path) -> None:
    path = config / "approvals.yaml"

    def someone_saves() -> None:
        with path.open("a") as f:
            f.write("# added in an editor meanwhile\n")

    with pytest.raises(ConcurrentEditError, match="changed by someone else"):
        grant(config, "dave", "x", today=TODAY, before_replace=someone_saves)
    assert text(config) == APPROVALS + "# added in an editor meanwhile\n"
    assert sorted(os.listdir(config)) == ["approvals.yaml", "services.yaml"]


def test_editor_style_atomic_save_is_refused_even_with_same_bytes(config: Path) -> None:
    path = config / "approvals.yaml"

    def editor_saves() -> None:  # same content, new file renamed over the old one
        (config / ".approvals.yaml.swp").write_text(APPROVALS)
        os.replace(config / ".approvals.yaml.swp", path)

    with pytest.raises(ConcurrentEditError):
        revoke(config, "carol", "x", before_replace=editor_saves)
    assert text(config) == APPROVALS


def test_write_is_atomic_and_keeps_mode_and_owner(config: Path) -> None:
    path = config / "approvals.yaml"
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, 1234, 5678)
    before = os.stat(path)
    grant(config, "dave", "x", today=TODAY)
    after = os.stat(path)
    assert after.st_ino != before.st_ino  # a new file renamed into place
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert sorted(os.listdir(config)) == ["approvals.yaml", "services.yaml"]


def test_symlinked_file_is_edited_at_its_target(config: Path, tmp_path: Path) -> None:
    real = tmp_path / "data"
    real.mkdir()
    (config / "approvals.yaml").rename(real / "approvals.yaml")
    (config / "approvals.yaml").symlink_to(real / "approvals.yaml")
    result = grant(config, "dave", "x", today=TODAY)
    assert (config / "approvals.yaml").is_symlink()
    assert result.path == real / "approvals.yaml"
    assert ("dave", "x") in load_policy(config).grants


EDITOR = """
import datetime as dt, sys
from pathlib import Path
from gatekeeper.approvals_edit import grant
grant(Path(sys.argv[1]), sys.argv[2], "instagram", today=dt.date(2025, 6, 1))
"""


def test_two_gatekeeper_edits_at_once_both_land(config: Path) -> None:
    """gatekeeper commands lock the file: the second waits and edits the first's result."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", EDITOR, str(config), employee], stderr=subprocess.PIPE
        )
        for employee in ("alice", "bob", "carol", "dave")
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr.decode()
    grants = load_policy(config).grants
    assert {e for e, s in grants if s == "instagram"} == {"alice", "bob", "carol", "dave"}
    removed, _ = changed_lines(APPROVALS, text(config))
    assert removed == []


def test_lock_held_elsewhere_times_out(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    monkeypatch.setattr(approvals_edit, "LOCK_WAIT_SECONDS", 0.3)
    with (config / "approvals.yaml").open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(EditError, match="being edited by another gatekeeper command"):
            grant(config, "dave", "x", today=TODAY)
    assert text(config) == APPROVALS


@pytest.mark.skipif(not (REPO_CONFIG / "approvals.yaml").exists(), reason="no example config")
def test_shipped_example_keeps_every_untouched_byte(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO_CONFIG, config)
    original = text(config)
    policy = load_policy(config)
    employee = next(e for e in sorted(policy.employees)
                    if not any(g[0] == e for g in policy.grants))
    service = sorted(policy.services)[0]
    grant(config, employee, service, today=TODAY)
    removed, added = changed_lines(original, text(config))
    assert removed == [] and len(added) == 4 and f"employee: {employee}" in added[0]
    revoke(config, employee, service)
    assert text(config) == original
