"""Memory over reloads, through a real proxy with one keep-alive client connection (issue 13).

A finished flow kept its context, and so the policy it was decided by, until Python's next full
garbage collection (mitmproxy keeps finished streams in reference cycles), which comes seldom
in a proxy holding a large policy: 5 old policies were still alive after these 30 reloads, and
1,000 reloads of the benchmark's 10,000-employee file took RSS to 2.73x the first. This test
reloads a large file with the client asking between reloads as the benchmark does, then
counts the policies not freed yet and compares RSS.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path

import pytest
from support import configs
from support.live_policies import REPORT
from support.proxy import REPO
from support.waiting import eventually

EMPLOYEES = 5_000  # each with a device address and 5 grants
RELOADS = 30
ALICE = "  alice:\n    email: alice@clinic.example\n"
GRANTED = ("  - employee: alice\n    service: facebook\n"
           f"    approved_by: {configs.APPROVER}\n    approved_on: 2026-01-01\n")
SCRIPT = Path(__file__).parent / "support" / "live_policies.py"
TIMEOUT = 30

pytestmark = pytest.mark.e2e  # starts a real proxy process


def large_config(directory: Path) -> str:
    """The benchmark's generated office (bench/configs.py) with alice added; its text."""
    spec = importlib.util.spec_from_file_location("bench_configs", REPO / "bench" / "configs.py")
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    generated.write_config(directory, EMPLOYEES, 5)
    approvals = directory / "approvals.yaml"
    text = approvals.read_text().replace("employees:\n", "employees:\n" + ALICE)
    approvals.write_text(text)
    return text


def save_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def live_policies(proxy) -> int:
    report = proxy.state_dir / REPORT
    report.unlink(missing_ok=True)
    proxy.signal(signal.SIGUSR1)
    assert eventually(report.exists, timeout=TIMEOUT), "no report from the debug hook"
    return int(report.read_text())


def test_reloads_keep_one_policy_and_flat_rss_over_a_keep_alive_connection(
        gk, fake_sites, tmp_path: Path) -> None:
    config = tmp_path / "large"
    base = large_config(config)
    approvals = config / "approvals.yaml"
    proxy = gk(config, args=["--set", "proxyauth=any", "--set", f"scripts={SCRIPT}"])
    session = proxy.session("alice", "pw")  # one keep-alive connection for the whole loop
    url = fake_sites.facebook.url("/")
    assert session.get(url, timeout=TIMEOUT).status_code == 403
    first = 0.0
    for i in range(RELOADS):
        granted = i % 2 == 0
        save_atomically(approvals, base + GRANTED if granted else base)
        deadline = time.monotonic() + TIMEOUT
        while session.get(url, timeout=TIMEOUT).status_code != (200 if granted else 403):
            assert time.monotonic() < deadline, f"reload {i} not in force"
        if i == 0:
            first = rss_mib(proxy.process.pid)
    last = rss_mib(proxy.process.pid)
    # The policy in force, and at most the one the last request's flow still holds: not one
    # per reload waiting for a full garbage collection in finished flows.
    assert live_policies(proxy) <= 2
    assert last <= first * 1.05, (
        f"RSS {first:.0f} MiB after the first reload, {last:.0f} MiB after {RELOADS}")
