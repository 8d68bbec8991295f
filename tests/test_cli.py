"""The `gatekeeper` command as installed: the console script and `python -m gatekeeper` run the
same commands (real processes: a few smoke tests; the commands themselves are tested in process
through `gatekeeper.cli.main(argv)`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import run_main

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"
GATEKEEPER = Path(sys.executable).parent / "gatekeeper"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_console_script_and_python_m_check_the_configuration_alike(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = run(str(GATEKEEPER), "check", "--config-dir", str(CONFIG))
    module = run(sys.executable, "-m", "gatekeeper", "check", "--config-dir", str(CONFIG))
    in_process = run_main(capsys, ["check", "--config-dir", str(CONFIG)])
    assert script.returncode == module.returncode == in_process.returncode == 0, script.stderr
    assert script.stdout == module.stdout == in_process.stdout
    assert script.stdout.startswith(f"{CONFIG}: OK: ")


def test_usage_errors_exit_2_from_the_console_script() -> None:
    done = run(str(GATEKEEPER), "no-such-command")
    assert done.returncode == 2 and "invalid choice: 'no-such-command'" in done.stderr


def test_serve_imports_no_other_command() -> None:
    """`gatekeeper serve` parses its own arguments only, so the proxy starts without importing
    the approver's and the gateway's commands."""
    program = (
        "import sys\n"
        "from gatekeeper.cli import main\n"
        "try:\n"
        "    main(['serve', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('gatekeeper.cli.')))\n"
    )
    done = run(sys.executable, "-c", program)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.strip().splitlines()[-1]
    assert loaded == "['gatekeeper.cli.common', 'gatekeeper.cli.serve']"


@pytest.mark.parametrize("command", [
    "serve", "check", "explain", "requests", "approve", "deny", "grant", "revoke",
    "acknowledgements", "review", "employee", "firewall", "pac", "ca",
])
def test_every_documented_command_has_help(capsys: pytest.CaptureFixture[str],
                                           command: str) -> None:
    done = run_main(capsys, [command, "--help"])
    assert done.returncode == 0 and done.stdout.startswith(f"usage: gatekeeper {command} ")
    assert command in run_main(capsys, ["--help"]).stdout


def test_check_reports_a_broken_gateway_yaml_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = Path(shutil.copytree(CONFIG, tmp_path / "config"))
    gateway = config / "gateway.yaml"
    gateway.write_text(gateway.read_text().replace("mode: explicit", "mode: explicitt"))
    line = gateway.read_text().splitlines().index("mode: explicitt") + 1
    done = run_main(capsys, ["check", "--config-dir", str(config)])
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"{gateway}:{line}: mode must be ")
