"""One place for the paths: every command reads the installed environment file, so the
commands `gatekeeper requests` prints work as printed from any directory."""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gatekeeper.cli.common import env_file_settings, setting
from gatekeeper.statedb import StateDB

BIN = Path(sys.executable).parent
REPO_CONFIG = Path(__file__).resolve().parent.parent / "config"


def installed(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """Config and state in temp dirs, named only by an env file; the environment of a shell
    on the gateway (`gatekeeper` on PATH, no GATEKEEPER_* variables)."""
    config = Path(shutil.copytree(REPO_CONFIG, tmp_path / "etc"))
    state = tmp_path / "var-lib"
    env_file = tmp_path / "gatekeeper.env"
    env_file.write_text(
        "# written by the install steps\n"
        f"GATEKEEPER_CONFIG_DIR={config}\n"
        f'GATEKEEPER_STATE_DIR="{state}"\n'
        "GATEKEEPER_OPTS=--set proxyauth=@/etc/gatekeeper/users.htpasswd\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
    env["GATEKEEPER_ENV_FILE"] = str(env_file)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return config, state, env


def test_approve_works_as_printed_by_requests_from_another_directory(tmp_path: Path) -> None:
    config, state, env = installed(tmp_path)
    with StateDB(state) as db:
        request, _ = db.submit_request("dave", "instagram", "Post opening hours",
                                       dt.datetime.now(dt.UTC))
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()

    def shell(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(shlex.split(command), cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=60, check=False)

    listed = shell("gatekeeper requests")
    assert listed.returncode == 0, listed.stderr
    printed = re.search(r"gatekeeper approve \w+", listed.stdout)
    assert printed, listed.stdout
    assert printed.group(0) == f"gatekeeper approve {request.id}"

    approved = shell(printed.group(0))
    assert approved.returncode == 0, approved.stderr
    assert "dave may use instagram" in approved.stdout
    assert "employee: dave\n    service: instagram" in (config / "approvals.yaml").read_text()
    with StateDB(state) as db:
        assert db.get_request(request.id).status == "approved"
    assert not (elsewhere / "state").exists() and not (elsewhere / "config").exists()


def test_environment_variable_wins_over_the_file_and_the_flag_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "gatekeeper.env"
    env_file.write_text("GATEKEEPER_STATE_DIR='/from/file'\n# GATEKEEPER_CONFIG_DIR=/x\n")
    monkeypatch.setenv("GATEKEEPER_ENV_FILE", str(env_file))
    monkeypatch.delenv("GATEKEEPER_STATE_DIR", raising=False)
    monkeypatch.delenv("GATEKEEPER_CONFIG_DIR", raising=False)
    assert env_file_settings() == {"GATEKEEPER_STATE_DIR": "/from/file"}
    assert setting("GATEKEEPER_STATE_DIR", "state") == "/from/file"
    assert setting("GATEKEEPER_CONFIG_DIR", "config") == "config"  # a comment is not a setting
    monkeypatch.setenv("GATEKEEPER_STATE_DIR", "/from/env")
    assert setting("GATEKEEPER_STATE_DIR", "state") == "/from/env"

    from gatekeeper.cli import build_parser

    args = build_parser().parse_args(["requests"])
    assert args.state_dir == Path("/from/env")
    args = build_parser().parse_args(["requests", "--state-dir", "/from/flag"])
    assert args.state_dir == Path("/from/flag")


def test_without_an_env_file_the_defaults_stay_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEKEEPER_ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.delenv("GATEKEEPER_STATE_DIR", raising=False)
    monkeypatch.delenv("GATEKEEPER_CONFIG_DIR", raising=False)
    from gatekeeper.cli import build_parser

    args = build_parser().parse_args(["explain", "-", "https://x.example/"])
    assert (args.config_dir, args.state_dir) == (Path("config"), Path("state"))


def test_a_state_directory_this_user_cannot_read_is_said_so() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the command as another user")
    with tempfile.TemporaryDirectory() as base:  # not under pytest's 0700 tmp root
        root = Path(base)
        root.chmod(0o755)
        config, state, env = installed(root)
        StateDB(state).close()
        state.chmod(0o700)
        for path in (root / "gatekeeper.env", *config.iterdir()):
            path.chmod(0o644)
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "gatekeeper", "requests"], cwd="/", env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert f"{state} cannot be read as this user: run the command as root (sudo)" in done.stderr
