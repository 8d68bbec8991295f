"""No outage from a bad file: each loaded policy is kept in the state directory, and a
restart on a broken approvals.yaml enforces that copy, loudly, until the file is fixed.
Through real `gatekeeper serve` processes sharing one state directory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import configs
from support.proxy import GatekeeperProcess, can_unshare, port_open
from support.smtp import Inbox, running_inbox
from support.waiting import wait_until

from gatekeeper import snapshot
from gatekeeper.config.loader import load_policy

TIMEOUT = 10
AUTH_ANY = ["--set", "proxyauth=any"]


def test_save_writes_only_what_changed_and_only_what_was_loaded(tmp_path: Path) -> None:
    config = configs.write_config(tmp_path / "config")
    state = tmp_path / "state"
    policy = load_policy(config)
    assert snapshot.save(state, config, policy)
    saved = snapshot.snapshot_dir(state) / "approvals.yaml"
    assert saved.read_bytes() == (config / "approvals.yaml").read_bytes()
    assert saved.stat().st_mode & 0o777 == 0o600
    inode = saved.stat().st_ino
    assert snapshot.save(state, config, policy)
    assert saved.stat().st_ino == inode, "unchanged files are not rewritten"
    assert snapshot.load(state).sha256 == policy.sha256
    # The files changed after this policy was loaded: not saved (the next load saves them).
    (config / "approvals.yaml").write_text("approver: nobody\n")
    assert not snapshot.save(state, config, policy)
    assert snapshot.load(state).sha256 == policy.sha256
    assert not list(snapshot.snapshot_dir(state).glob(".*.tmp"))


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with running_inbox() as server:
        yield server


@pytest.fixture
def proxies(fake_sites) -> Iterator[list[GatekeeperProcess]]:
    if not can_unshare():
        pytest.skip("needs root and unshare(1) to give the proxy its own /etc/hosts")
    started: list[GatekeeperProcess] = []
    yield started
    for proxy in started:
        if proxy.running:
            proxy.stop(expect_status=None)
        else:
            proxy.kill()


def launch(started: list[GatekeeperProcess], fake_sites, config: Path, state: Path,
           *, wait: bool = True) -> GatekeeperProcess:
    proxy = GatekeeperProcess(config, state, args=AUTH_ANY, hosts=fake_sites.hosts(),
                              name=f"snapshot-{len(started)}")
    started.append(proxy)
    return proxy.start(wait=wait)


@pytest.mark.e2e
def test_restart_on_a_broken_file_enforces_the_last_good_policy_loudly(
    tmp_path: Path, fake_sites, proxies, inbox
) -> None:
    mails, smtp_port = inbox
    approvals = configs.approvals_doc()
    approvals["notify"] = {
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "from": "gk@clinic.example",
                 "to": [configs.APPROVER]},
        "it": ["helpdesk@clinic.example"],
    }
    config = configs.write_config(tmp_path / "config", approvals=approvals)
    state = tmp_path / "state"
    good = (config / "approvals.yaml").read_text()
    first = launch(proxies, fake_sites, config, state)
    saved = snapshot.snapshot_dir(state) / "approvals.yaml"
    wait_until(lambda: saved.exists() and saved.read_text() == good, "the snapshot saved")
    first.stop()

    broken = good.replace("mode: enforce", "mode: enforcee")
    (config / "approvals.yaml").write_text(broken)
    line = broken.splitlines().index("mode: enforcee") + 1
    proxy = launch(proxies, fake_sites, config, state, wait=False)
    wait_until(lambda: port_open(proxy.listen_port)
               and "enforcing the last good one" in proxy.readyz()[1],
               "the proxy listening on the saved policy", timeout=20)

    status, text = proxy.readyz()
    assert status == 503
    problem = f"{config / 'approvals.yaml'}:{line}: mode must be"
    assert problem in text and "enforcing the last good one" in text, text
    assert proxy.metric("gatekeeper_config_last_reload_successful") == 0
    logged = proxy.wait_for_log(lambda e: e.get("event") == "config_invalid_enforcing_snapshot")
    assert logged["level"] == "error" and problem in logged["problems"][0]

    # The saved policy enforces: alice's grant passes, bob is blocked before the upstream.
    linkedin = fake_sites.linkedin
    assert proxy.session("alice", "pw").get(linkedin.url("/"), timeout=TIMEOUT).status_code == 200
    assert proxy.session("bob", "pw").get(linkedin.url("/"), timeout=TIMEOUT).status_code == 403
    assert len(linkedin.requests) == 1

    # IT hears of it without Prometheus.
    wait_until(lambda: mails.messages, "the e-mail to IT", timeout=TIMEOUT)
    [mail] = mails.messages
    assert mails.recipients == [["helpdesk@clinic.example"]]
    assert mail["Subject"] == "gatekeeper started on the last good configuration"
    assert problem in mail.get_content()

    # Fixed: the live reloader switches to the files, ready again.
    (config / "approvals.yaml").write_text(good.replace("mode: enforce", "mode: report"))
    proxy.wait_for_metric("gatekeeper_config_last_reload_successful", 1, timeout=TIMEOUT)
    wait_until(lambda: proxy.readyz() == (200, "ready\n"), "ready on the fixed files")
    reply = proxy.session("bob", "pw").get(linkedin.url("/"), timeout=TIMEOUT)
    assert reply.status_code == 200  # report mode: the fixed file's policy is in force
    fixed = good.replace("mode: enforce", "mode: report")
    wait_until(lambda: saved.read_text() == fixed, "the fixed files saved")

    # A later broken edit: the running policy stays, IT is told at once, /readyz stays 200.
    (config / "approvals.yaml").write_text(broken)
    wait_until(lambda: len(mails.messages) == 2, "the e-mail about the failed reload",
               timeout=TIMEOUT)
    assert mails.messages[1]["Subject"] == "gatekeeper: the configuration does not load"
    assert problem in mails.messages[1].get_content()
    assert proxy.readyz() == (200, "ready\n")
    assert "report" in saved.read_text(), "a broken file is never saved"


@pytest.mark.e2e
def test_restart_on_a_broken_file_without_a_saved_copy_exits_2(
    tmp_path: Path, fake_sites, proxies
) -> None:
    config = configs.write_config(tmp_path / "config")
    approvals = config / "approvals.yaml"
    approvals.write_text(approvals.read_text().replace("mode: enforce", "mode: enforcee"))
    proxy = launch(proxies, fake_sites, config, tmp_path / "state", wait=False)
    assert proxy.wait_exit(timeout=20) == 2
    assert re.search(rf"{re.escape(str(approvals))}:\d+: mode must be", proxy.stderr)
    assert "is invalid; not started" in proxy.stderr
