"""The Dockerfile: structural checks of the properties issue 6 asks for, and (e2e, as root with
buildah, podman and debootstrap) the real image built and its approver's commands run."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from support import container

from gatekeeper.statedb import StateDB

ROOT = Path(__file__).resolve().parent.parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    text = "\n".join(lines).replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def values(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def test_base_image_is_the_python_the_tests_run_on():
    (base,) = values("FROM")
    assert base.startswith(f"python:{sys.version_info.major}.{sys.version_info.minor}-slim")


def test_runs_as_a_non_root_user():
    users = values("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    keywords = [kw for kw, _ in instructions()]
    last_run = max(i for i, kw in enumerate(keywords) if kw == "RUN")
    assert keywords.index("USER") > last_run, "no command may switch back to root after USER"


def test_config_and_state_are_volumes_and_ports_exposed():
    volumes = [v for line in values("VOLUME") for v in json.loads(line)]
    assert {"/etc/gatekeeper", "/var/lib/gatekeeper"} <= set(volumes)
    assert values("EXPOSE") == ["8080 8081 8082 9464"]


def test_healthcheck_asks_healthz_with_the_standard_library():
    (check,) = values("HEALTHCHECK")
    assert "urllib.request" in check and "http://127.0.0.1:9464/healthz" in check
    assert "curl" not in check and "wget" not in check


def test_serve_listens_on_all_container_addresses():
    command = json.loads(values("CMD")[-1])
    assert json.loads(values("ENTRYPOINT")[-1]) == ["gatekeeper"]
    assert command[0] == "serve"
    assert command[command.index("--listen-host") + 1] == "0.0.0.0"
    assert command[command.index("--metrics-host") + 1] == "0.0.0.0"


@pytest.mark.parametrize("secret", ["*.pem", "*.key", "*.p12", "*.htpasswd"])
def test_no_secrets_reach_the_build_context(secret: str):
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert f"**/{secret}" in ignored
    assert not any(re.search(r"\b(ARG|ENV)\b.*(PASSWORD|SECRET|TOKEN)", f"{kw} {rest}", re.I)
                   for kw, rest in instructions())


def test_the_approver_s_commands_need_no_directory_flags():
    """`docker exec CTR gatekeeper approve ID` works as printed: the image names the paths."""
    env = " ".join(values("ENV"))
    assert "GATEKEEPER_CONFIG_DIR=/etc/gatekeeper" in env
    assert "GATEKEEPER_STATE_DIR=/var/lib/gatekeeper" in env
    command = json.loads(values("CMD")[-1])
    assert "--config-dir" not in command and "--state-dir" not in command
    copies = [rest for rest in values("COPY") if "/etc/gatekeeper" in rest]
    assert copies and all(rest.startswith("--chown=10001:10001 ") for rest in copies), (
        "the config volume must start writable by the image's user")


@pytest.mark.e2e
def test_image_checks_and_approves_against_a_writable_config_volume(tmp_path: Path):
    """The real Dockerfile built with buildah on a debootstrapped stand-in base image; the
    image's own `gatekeeper` run as its user, the way `docker exec` runs it."""
    if os.geteuid() != 0:
        pytest.skip("building images with buildah needs root")
    if container.missing_tools():
        pytest.skip(f"needs {', '.join(container.missing_tools())} (make system-deps)")
    container.build("localhost/gatekeeper:test", tmp_path)

    config = Path(shutil.copytree(ROOT / "config", tmp_path / "config",
                                  ignore=shutil.ignore_patterns("grafana", "prometheus")))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    for path in (config, *config.iterdir(), state):
        os.chown(path, 10001, 10001)
    with StateDB(state) as db:  # as the proxy would after a request from the block page
        request, _ = db.submit_request("dave", "instagram", "Post opening hours",
                                       dt.datetime.now(dt.UTC))
    ctr = container.Container("localhost/gatekeeper:test",
                              {config: "/etc/gatekeeper", state: "/var/lib/gatekeeper"})
    try:
        checked = ctr.run("gatekeeper", "check")
        assert checked.stdout.startswith("/etc/gatekeeper: OK: "), checked.stdout
        listed = ctr.run("gatekeeper", "requests").stdout
        printed = re.search(r"gatekeeper approve \w+", listed)
        assert printed and printed.group(0) == f"gatekeeper approve {request.id}", listed
        approved = ctr.run(*shlex.split(printed.group(0)))
        assert "dave may use instagram" in approved.stdout
        employees = ctr.run("gatekeeper", "employee", "list", "--json").stdout
        assert '"grants": [\n      "instagram"' in employees
        broken = ctr.run("sh", "-c", "sed -i 's/^mode: enforce/mode: enforcee/' "
                         "/etc/gatekeeper/approvals.yaml && gatekeeper check", check=False)
        assert broken.returncode == 1 and "approvals.yaml:" in broken.stderr
    finally:
        ctr.remove()
    text = (config / "approvals.yaml").read_text()
    assert "  - employee: dave\n    service: instagram\n" in text
    assert (config / "approvals.yaml").stat().st_uid == 10001
    with StateDB(state) as db:
        assert db.get_request(request.id).status == "approved"
