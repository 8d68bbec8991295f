"""The workers benchmark (bench/workers.py, `make bench`) in smoke mode: it yields numbers for
one and two workers (no timing asserted: the machine is shared)."""

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

NUMBERS = r"\d+ \| \d+ ms \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+ \| \d+ \|"
ROWS = [
    rf"\| 1 worker \[200x100\] \| {NUMBERS}",
    rf"\| 2 workers \[200x100\] \| {NUMBERS}",
    r"\| 2 workers / 1 worker \| [\d.]+x \(round by round [\d.]+x; target >= 1.7x\) \| [\d.]+x "
    r"\| .* \| [\d.]+x \| "
    r"[\d.]+x \|",
]


def test_workers_benchmark_smoke_run_reports_one_and_two_workers(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--cases",
                    "workers", "--out", str(out)], check=True, capture_output=True, timeout=300)
    report = out.read_text()
    for row in ROWS:
        assert re.search(row, report), (row, report)
