"""The benchmark in smoke mode: every case of the report yields a number (no timing asserted)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.proxy import can_unshare

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not can_unshare() or not shutil.which("nginx") or not shutil.which("hey"),
    reason="the benchmark needs root, nginx and hey",
)

OURS = r"\d+ rps, p99 \d+ ms, CPU [\d.]+ ms/req"
RATIO = r"[\d.]+x rps, p99 [\d.]+x, CPU/req [\d.]+x"
ROWS = [
    rf"\| HTTPS social, allowed \(intercepted\) \| {OURS} \[200x100\] \| mitmdump {OURS} "
    rf"\[200x100\] \| {RATIO} \| {RATIO} \|",  # the ratio of the picks, then round by round
    rf"\| HTTP social, allowed \(intercepted\) \| {OURS} \[200x100\] \| mitmdump {OURS}",
    rf"\| HTTPS social, blocked \(403 by proxy\) \| {OURS} \[403x100\] \| "
    rf"mitmdump block_list {OURS} \[403x100\]",
    rf"\| HTTPS non-social \(passthrough\) \| {OURS} \[200x100\] \| mitmdump ignore_hosts {OURS}",
    r"\| start to listening \| [\d.]+ s \(CPU [\d.]+ s\) \| mitmdump [\d.]+ s \(CPU [\d.]+ s\) "
    r"\| [\d.]+x \(CPU [\d.]+x\)",
    r"\| idle RSS \| \d+ MiB \| mitmdump \d+ MiB \| [\d.]+x",
    r"\| reload \(save -> new decision\), 100 employees .* \| \d+ ms median",
    r"\| reload \(save -> new decision\), 200 employees .* \| \d+ ms median",
    r"\| RSS over reloads, 200 employees \| \d+ MiB after 4 reloads \| \d+ MiB after the first",
    r"\| governed, allowed \| \d+ \|",
]


def test_benchmark_smoke_run_reports_every_case(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)],
                   check=True, capture_output=True, timeout=300)
    report = out.read_text()
    for row in ROWS:
        assert re.search(row, report), (row, report)
