"""`gatekeeper employee add|remove|list` against a copy of the repository's approvals.yaml, in
process: byte-preserving edits, validated before they are written, refusals that change
nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from support.cli import run_main

from gatekeeper.config.loader import load_policy

REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"


class Employees:
    def __init__(self, config: Path, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.config, self.state, self.capsys = config, state, capsys
        self.approvals = config / "approvals.yaml"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_main(self.capsys, ["employee", args[0], "--config-dir", str(self.config),
                                      "--state-dir", str(self.state), *args[1:]])

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def refused(self, *args: str) -> str:
        before = self.approvals.read_bytes()
        done = self.run(*args)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert self.approvals.read_bytes() == before
        return done.stderr


@pytest.fixture
def staff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Employees:
    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "config"))
    return Employees(config, tmp_path / "state", capsys)


def test_add_appends_only_the_new_entry_and_it_loads(staff: Employees) -> None:
    before = staff.approvals.read_text()
    out = staff.ok("add", "erin", "--email", "erin@clinic.example",
                   "--address", "10.20.0.40", "10.20.1.0/28")
    assert out.startswith("added: employee erin <erin@clinic.example>")
    after = staff.approvals.read_text()
    entry = ("  erin:\n    email: erin@clinic.example\n"
             "    addresses: [10.20.0.40, 10.20.1.0/28]\n")
    anchor = "  dave:\n    email: dave@clinic.example\n"
    assert after == before.replace(anchor, anchor + entry)
    employee = load_policy(staff.config).employees["erin"]
    assert employee.email == "erin@clinic.example"
    assert [str(n) for n in employee.addresses] == ["10.20.0.40/32", "10.20.1.0/28"]


def test_add_without_employees_section_starts_one(staff: Employees) -> None:
    text = staff.approvals.read_text()
    start = text.index("employees:\n")
    end = text.index("\n# Grants:")
    grants_start = text.index("grants:\n")
    staff.approvals.write_text(text[:start] + text[end + 1:grants_start] + "grants: []\n")
    staff.ok("add", "erin", "--email", "erin@clinic.example")
    assert staff.approvals.read_text().endswith(
        "grants: []\nemployees:\n  erin:\n    email: erin@clinic.example\n")
    assert list(load_policy(staff.config).employees) == ["erin"]


@pytest.mark.parametrize(("args", "message"), [
    (("erin", "--email", "erin@gmail.com"), "is not in a company domain (clinic.example)"),
    (("alice", "--email", "alice2@clinic.example"), "employee 'alice' is already in"),
    (("erin", "--email", "erin@clinic.example", "--address", "10.20.0.15"),
     "address 10.20.0.15/32 overlaps 10.20.0.15/32 of employee 'alice'"),
    (("erin", "--email", "erin@clinic.example", "--address", "ten"),
     "'ten' is not an IP address or CIDR"),
    (("bad id!", "--email", "x@clinic.example"), "employee id 'bad id!' is not valid"),
])
def test_add_refuses_what_would_not_load(staff: Employees, args: tuple[str, ...],
                                         message: str) -> None:
    assert message in staff.refused("add", *args)


def test_remove_refuses_while_grants_are_held_and_force_removes_them_too(
    staff: Employees,
) -> None:
    error = staff.refused("remove", "alice")
    assert "holds grants for linkedin" in error and "--force" in error
    before = staff.approvals.read_text()
    out = staff.ok("remove", "alice", "--force")
    assert "and their grants for linkedin" in out
    after = staff.approvals.read_text()
    gone = [
        "  alice:\n    email: alice@clinic.example\n"
        "    addresses: [10.20.0.15]             # Alice's desk PC (reception)\n",
        "  - employee: alice\n    service: linkedin\n    approved_by: it.lead@clinic.example\n"
        "    approved_on: 2026-11-20\n"
        "    accounts: [alice@clinic.example]    # optional; the default is her `email`\n",
    ]
    expected = before
    for text in gone:
        assert text in expected
        expected = expected.replace(text, "")
    assert after == expected
    policy = load_policy(staff.config)
    assert "alice" not in policy.employees and ("alice", "linkedin") not in policy.grants


def test_remove_without_grants_and_of_an_unknown_employee(staff: Employees) -> None:
    out = staff.ok("remove", "dave")
    assert out.startswith("removed: employee dave <dave@clinic.example> from")
    assert "dave" not in staff.approvals.read_text().split("# Grants")[0].split("employees:")[1]
    assert "not under 'employees:'" in staff.refused("remove", "mallory")


def test_list_as_table_and_json(staff: Employees) -> None:
    table = staff.ok("list").splitlines()
    assert table[0].split() == ["EMPLOYEE", "EMAIL", "NAME", "ADDRESSES", "SOURCE", "GRANTS"]
    alice = next(line for line in table if line.startswith("alice "))
    assert alice.split() == ["alice", "alice@clinic.example", "10.20.0.15/32",
                             "approvals.yaml", "linkedin"]
    listed = json.loads(staff.ok("list", "--json"))
    assert [e["id"] for e in listed] == ["alice", "bob", "carol", "dave"]
    assert listed[1] == {"id": "bob", "email": "bob@clinic.example", "name": "",
                         "addresses": ["10.20.0.32/30"], "grants": ["facebook"],
                         "source": "approvals.yaml"}


def test_an_edit_made_meanwhile_is_not_overwritten(staff: Employees) -> None:
    from gatekeeper.approvals_edit import ConcurrentEditError, add_employee

    def hand_edit() -> None:  # someone saves the file in an editor between read and write
        staff.approvals.write_text(staff.approvals.read_text() + "# edited by hand\n")

    with pytest.raises(ConcurrentEditError):
        add_employee(staff.config, "erin", "erin@clinic.example", before_replace=hand_edit)
    assert staff.approvals.read_text().endswith("# edited by hand\n")
    assert "erin" not in load_policy(staff.config).employees
