"""The systemd units: `systemd-analyze verify` is clean and the exposure stays at 2.5 or less."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
SERVICE, FIREWALL = "gatekeeper.service", "gatekeeper-firewall.service"
REVIEW, REVIEW_TIMER = "gatekeeper-review.service", "gatekeeper-review.timer"
ENV_FILE = "-/etc/gatekeeper/gatekeeper.env"
INSTALLED_DIRS = "GATEKEEPER_CONFIG_DIR=/etc/gatekeeper GATEKEEPER_STATE_DIR=/var/lib/gatekeeper"
INSTALLED_BINARY = "/opt/gatekeeper/venv/bin/gatekeeper"
MAX_EXPOSURE = 2.5

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (Debian systemd)"
)


def directives(unit: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file (continuation lines joined), values by key."""
    text = (UNITS / unit).read_text().replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(" ".join(value.split()))
    return found


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_service_runs_as_its_own_user_with_notify_reload_and_restart():
    unit = directives(SERVICE)
    assert unit["Type"] == ["notify"]
    assert unit["User"] == ["gatekeeper"] and "DynamicUser" not in unit
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["StateDirectory"] == ["gatekeeper"]
    assert unit["ConfigurationDirectory"] == ["gatekeeper"]
    assert unit["UMask"] == ["0077"], "the CA key and state must not be readable by others"
    assert unit["CapabilityBoundingSet"] == [""] and unit["AmbientCapabilities"] == [""]
    (start,) = unit["ExecStart"]
    assert start.startswith(f"{INSTALLED_BINARY} serve ")
    # The directories come from the env file every command reads (the unit's defaults first).
    assert "--config-dir" not in start and "--state-dir" not in start
    assert unit["Environment"] == [INSTALLED_DIRS]
    assert unit["EnvironmentFile"] == [ENV_FILE]
    # pyOpenSSL's ALPN callback needs write+execute memory: TLS interception breaks without it.
    assert "MemoryDenyWriteExecute" not in unit


def test_firewall_unit_applies_before_the_network_and_removes_the_table_on_stop():
    unit = directives(FIREWALL)
    assert unit["Type"] == ["oneshot"] and unit["RemainAfterExit"] == ["yes"]
    assert unit["ExecStart"] == [f"{INSTALLED_BINARY} firewall apply"]
    assert unit["Environment"] == ["GATEKEEPER_CONFIG_DIR=/etc/gatekeeper"]
    assert unit["EnvironmentFile"] == [ENV_FILE]
    assert unit["ExecStop"] == ["/usr/sbin/nft delete table inet gatekeeper"]
    before = unit["Before"][0].split()
    assert "network-pre.target" in before and SERVICE in before
    assert FIREWALL in directives(SERVICE)["Wants"][0].split()


def test_review_timer_starts_the_review_e_mail_monthly_as_the_service_user():
    timer = directives(REVIEW_TIMER)
    assert timer["OnCalendar"] == ["*-*-01 08:00:00"] and timer["Persistent"] == ["true"]
    assert timer["Unit"] == [REVIEW] and timer["WantedBy"] == ["timers.target"]
    unit = directives(REVIEW)
    assert unit["Type"] == ["oneshot"] and unit["User"] == ["gatekeeper"]
    assert unit["ExecStart"] == [f"{INSTALLED_BINARY} review --notify"]
    assert unit["Environment"] == [INSTALLED_DIRS] and unit["EnvironmentFile"] == [ENV_FILE]


@needs_analyze
def test_calendar_of_the_review_timer_is_monthly():
    result = analyze("calendar", "--iterations=2", "*-*-01 08:00:00")
    assert result.returncode == 0, result.stderr
    days = re.findall(r"\d{4}-\d{2}-(\d{2}) 08:00:00", result.stdout)
    assert days[:2] == ["01", "01"], result.stdout


@needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path: Path):
    # verify insists that ExecStart exists: point the copies at a stand-in executable.
    binary = tmp_path / "gatekeeper"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    copies = []
    for unit in (SERVICE, FIREWALL, REVIEW, REVIEW_TIMER):
        copy = tmp_path / unit
        copy.write_text((UNITS / unit).read_text().replace(INSTALLED_BINARY, str(binary)))
        copies.append(str(copy))
    result = analyze("verify", *copies)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"warnings: {result.stderr}"


@needs_analyze
@pytest.mark.parametrize("unit", [SERVICE, FIREWALL, REVIEW])
def test_security_exposure_is_at_most_2_5(unit: str):
    result = analyze("security", "--offline=true", str(UNITS / unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
