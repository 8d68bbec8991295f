"""Structural checks of the Dockerfile (no Docker engine here): the properties issue 6 asks for."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

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
