"""Live reload with real files and real watchdog: every way a file gets saved, every way an
edit can be broken. Waits on conditions, never on fixed sleeps."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import configs
from support.waiting import eventually

from gatekeeper.core.model import Policy
from gatekeeper.metrics import Metrics
from gatekeeper.reload import PolicyHolder, PolicyReloader

SERVICES = configs.to_yaml({"services": {
    "facebook": {"name": "Facebook", "domains": ["facebook.com"]},
    "linkedin": {"name": "LinkedIn", "domains": ["linkedin.com"]},
}})


def _approvals(*grants: dict) -> str:
    doc = configs.approvals_doc()
    doc["employees"] = {"alice": configs.employee("alice")}
    doc["grants"] = list(grants)
    return configs.to_yaml(doc)


ALICE_LINKEDIN = configs.grant("alice", "linkedin", approved_on=dt.date(2026, 11, 20))
APPROVALS = _approvals(ALICE_LINKEDIN)
# The same file granting facebook too: the change every save pattern must deliver.
APPROVALS_MORE = _approvals(
    ALICE_LINKEDIN, configs.grant("alice", "facebook", approved_on=dt.date(2026, 11, 21)))

ENFORCED_WITHIN = 1.0  # seconds from the save to the new policy in force (issue contract)


class Watched:
    """A reloader on a real directory, with the metric values the tests assert on."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.holder = PolicyHolder()
        self.metrics = Metrics()
        self.changes: list[Policy] = []
        self.reloader = PolicyReloader(
            config_dir, self.holder, self.metrics, on_change=self.changes.append
        )

    def reloads(self, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "gatekeeper_config_reloads_total", {"result": result}
        )
        return value or 0.0

    def gauge(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name)

    def granted(self) -> set[tuple[str, str]]:
        assert self.holder.policy is not None
        return set(self.holder.policy.grants)

    def wait_granted(self, expected: set[tuple[str, str]]) -> bool:
        return eventually(lambda: self.granted() == expected, ENFORCED_WITHIN)


BEFORE = {("alice", "linkedin")}
AFTER = {("alice", "linkedin"), ("alice", "facebook")}


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Watched]:
    (tmp_path / "services.yaml").write_text(SERVICES)
    (tmp_path / "approvals.yaml").write_text(APPROVALS)
    w = Watched(tmp_path)
    w.reloader.load_initial()
    w.reloader.start()
    yield w
    w.reloader.stop()


def save_in_place(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def save_rename(path: Path, text: str) -> None:
    """vim, emacs and most editors: write a temp file beside it, rename over the original."""
    tmp = path.with_name(f".{path.name}.swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_delete_recreate(path: Path, text: str) -> None:
    path.unlink()
    path.write_text(text)


@pytest.mark.parametrize("save", [save_in_place, save_rename, save_delete_recreate])
def test_every_save_pattern_is_picked_up(watched: Watched, save) -> None:
    assert watched.granted() == BEFORE
    save(watched.config_dir / "approvals.yaml", APPROVALS_MORE)
    assert watched.wait_granted(AFTER), "new policy not in force within 1 s"
    assert watched.reloads("success") == 2
    assert watched.reloads("failure") == 0
    assert watched.metrics.registry.get_sample_value(
        "gatekeeper_policy_info", {"sha256": watched.holder.policy.sha256}
    ) == 1


def test_configmap_symlink_swap(tmp_path: Path) -> None:
    """Kubernetes mounts ConfigMaps as files -> ..data/file, and swaps the ..data symlink."""
    first = tmp_path / "..2026_11_28_01"
    first.mkdir()
    (first / "services.yaml").write_text(SERVICES)
    (first / "approvals.yaml").write_text(APPROVALS)
    (tmp_path / "..data").symlink_to(first.name)
    for name in ("services.yaml", "approvals.yaml"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    w = Watched(tmp_path)
    w.reloader.load_initial()
    w.reloader.start()
    try:
        second = tmp_path / "..2026_11_28_02"
        second.mkdir()
        (second / "services.yaml").write_text(SERVICES)
        (second / "approvals.yaml").write_text(APPROVALS_MORE)
        (tmp_path / "..data_tmp").symlink_to(second.name)
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        assert w.wait_granted(AFTER)
    finally:
        w.reloader.stop()


BROKEN_EDITS = {
    "syntax": "approver: [unclosed\n",
    "schema": APPROVALS.replace("employee: alice", "employee: mallory"),
    "empty": "",
    "half_written": APPROVALS_MORE[: len(APPROVALS_MORE) // 2 + 7],
}


@pytest.mark.parametrize("broken", BROKEN_EDITS.values(), ids=BROKEN_EDITS.keys())
def test_broken_edit_keeps_last_good_policy(watched: Watched, broken: str) -> None:
    good = watched.holder.policy
    save_in_place(watched.config_dir / "approvals.yaml", broken)
    assert eventually(lambda: watched.reloads("failure") >= 1, ENFORCED_WITHIN)
    assert watched.holder.policy is good
    assert watched.gauge("gatekeeper_config_last_reload_successful") == 0
    # then fixing the file is picked up as usual
    save_rename(watched.config_dir / "approvals.yaml", APPROVALS_MORE)
    assert watched.wait_granted(AFTER)
    assert watched.gauge("gatekeeper_config_last_reload_successful") == 1


def test_deleted_file_keeps_last_good_policy(watched: Watched) -> None:
    good = watched.holder.policy
    (watched.config_dir / "services.yaml").unlink()
    assert eventually(lambda: watched.reloads("failure") == 1, ENFORCED_WITHIN)
    assert watched.holder.policy is good
    (watched.config_dir / "services.yaml").write_text(SERVICES)
    assert eventually(lambda: watched.reloads("success") == 2, ENFORCED_WITHIN)


@pytest.mark.parametrize("save", [save_in_place, save_rename])
def test_completed_save_skips_the_debounce(tmp_path: Path, save) -> None:
    """A config file closed after writing, or renamed into place, is loaded after a short
    quiet spell: with a one-minute debounce the change still lands within the contract."""
    (tmp_path / "services.yaml").write_text(SERVICES)
    (tmp_path / "approvals.yaml").write_text(APPROVALS)
    w = Watched(tmp_path)
    w.reloader.debounce = 60.0
    w.reloader.load_initial()
    w.reloader.start()
    try:
        save(tmp_path / "approvals.yaml", APPROVALS_MORE)
        assert w.wait_granted(AFTER)
    finally:
        w.reloader.stop()


def test_burst_of_writes_is_debounced(watched: Watched) -> None:
    path = watched.config_dir / "approvals.yaml"
    for _ in range(20):
        save_in_place(path, APPROVALS)
    save_in_place(path, APPROVALS_MORE)
    assert watched.wait_granted(AFTER)
    # a burst of identical saves then one change: far fewer loads than saves
    assert watched.reloads("success") <= 3


def test_untouched_files_cause_no_reload(watched: Watched) -> None:
    (watched.config_dir / "notes.txt").write_text("unrelated file in the directory")
    (watched.config_dir / "approvals.yaml").read_text()
    # wait on the one thing a spurious reload would do: nothing may change
    assert not eventually(lambda: watched.reloads("success") > 1, 0.6)
    assert watched.changes == [watched.holder.policy]


def test_poll_catches_a_missed_event(tmp_path: Path) -> None:
    """With the watcher missing events (simulated by not starting it), the poll reloads."""
    (tmp_path / "services.yaml").write_text(SERVICES)
    (tmp_path / "approvals.yaml").write_text(APPROVALS)
    w = Watched(tmp_path)
    w.reloader.poll_interval = 0.2
    w.reloader.load_initial()
    w.reloader.start(watch=False)
    try:
        save_in_place(tmp_path / "approvals.yaml", APPROVALS_MORE)
        assert w.wait_granted(AFTER)
    finally:
        w.reloader.stop()


def test_forced_reload_counts_even_if_unchanged(watched: Watched) -> None:
    watched.reloader.trigger(force=True)
    assert eventually(lambda: watched.reloads("success") == 2, ENFORCED_WITHIN)
