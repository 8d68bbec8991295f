"""`gatekeeper ca`: the CA is made where the proxy looks for it, private, and the one it uses."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from support.cli import run_main
from support.tls import pem_sha256


def run_ca(capsys: pytest.CaptureFixture[str], state_dir: Path) -> tuple[str, str]:
    result = run_main(capsys, ["ca", "--state-dir", str(state_dir)])
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(r"certificate: (\S+)(  \(created now\))?\nsha256: ([0-9A-F:]{95})\n",
                         result.stdout)
    assert match, result.stdout
    return match[1], match[3]


@pytest.mark.e2e
def test_ca_is_created_once_private_and_used_by_the_proxy(gk, tmp_path: Path, config_dir: Path,
                                                        capsys: pytest.CaptureFixture[str]):
    state = tmp_path / "state-1"  # the state directory the gk fixture gives its first proxy
    path, fingerprint = run_ca(capsys, state)
    assert path == str(state / "ca" / "mitmproxy-ca-cert.pem")
    assert fingerprint.replace(":", "").lower() == pem_sha256(Path(path))
    for key in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
        assert stat.S_IMODE((state / "ca" / key).stat().st_mode) == 0o600, key
    assert stat.S_IMODE((state / "ca").stat().st_mode) == 0o700
    assert run_ca(capsys, state) == (path, fingerprint), "a second run keeps the CA"

    proxy = gk(config_dir, hosts={})
    assert proxy.ca_cert == Path(path) and run_ca(capsys, state)[1] == fingerprint
    # The proxy signs with that CA: a client trusting only it reaches the block page.
    reply = proxy.session().get("https://www.facebook.com/", timeout=10)
    assert reply.status_code == 403 and reply.headers["X-Gatekeeper-Reason"]
