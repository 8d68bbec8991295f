"""`gatekeeper ARGS...` in process: `gatekeeper.cli.main(argv)` with pytest's `capsys` capturing
its output, returned as a `CompletedProcess` like a run of the console script (about a
millisecond instead of a second)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from gatekeeper.cli import main


def run_main(capsys: pytest.CaptureFixture[str], argv: Sequence[str]
             ) -> subprocess.CompletedProcess[str]:
    capsys.readouterr()  # drop what the test printed before
    try:
        status = main(list(argv))
    except SystemExit as e:  # argparse: usage errors (2), --help and --version (0)
        status = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(argv), status, out, err)
