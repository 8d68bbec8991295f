"""Live reload: watch the config directory, rebuild the policy, swap it in atomically.

Every way a file gets saved must work: written in place, written to a temp file and renamed
(most editors), deleted and re-created, a Kubernetes ConfigMap `..data` symlink swap. So the
reloader watches the *directory* with watchdog, treats any event there as "maybe changed",
debounces bursts, and compares the bytes of the files with the last attempt before loading.
An event that says a save is complete (a config file closed after writing, or renamed into
place) cuts the debounce short to a 10 ms quiet spell: that is the moment the new policy is
wanted.
A slow poll runs the same check as a safety net for missed events (network file systems,
overflowing inotify queues).

A load that fails changes nothing: the last good policy keeps enforcing, the error is logged
with `path:line`, and the failure is counted.

With a state directory, every policy that loads is saved there (gatekeeper.snapshot) from the
reloader's thread, and a start on files that do not load enforces that saved copy instead of
exiting: logged as an error with `path:line`, `gatekeeper_config_last_reload_successful 0`,
`problems` (shown on /readyz) says why, until the files load again.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from gatekeeper import snapshot
from gatekeeper.config.incremental import LoadCache
from gatekeeper.config.loader import APPROVALS_FILE, SERVICES_FILE, config_files, load_policy
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.model import Policy
from gatekeeper.logs import get_logger
from gatekeeper.metrics import Metrics

log = get_logger("gatekeeper.reload")


class PolicyHolder:
    """The policy in force. Readers take `holder.policy` once per request; the reloader
    replaces the reference in one assignment, so nobody ever sees half a policy."""

    __slots__ = ("policy",)

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy


class PolicyReloader:
    """Keeps `holder.policy` in step with the files in `config_dir`."""

    def __init__(
        self,
        config_dir: Path,
        holder: PolicyHolder,
        metrics: Metrics,
        on_change: Callable[[Policy], None] = lambda policy: None,
        *,
        state_dir: Path | None = None,
        on_failure: Callable[[list[str]], None] = lambda problems: None,
        debounce: float = 0.15,
        settle: float = 0.01,
        poll_interval: float = 2.0,
    ) -> None:
        self.config_dir = config_dir
        self.holder = holder
        self.metrics = metrics
        self.on_change = on_change
        self.state_dir = state_dir  # where the last good configuration is kept (None: nowhere)
        self.on_failure = on_failure  # the problems of a failed reload (not of the first load)
        # Set while the policy in force is the saved copy: why the files did not load.
        self.problems: list[str] = []
        self._unsaved: Policy | None = None  # loaded, not yet saved to the state directory
        self.debounce = debounce
        self.settle = settle
        self.poll_interval = poll_interval
        self._last_attempt: str | None = None
        self._cache = LoadCache.shared(config_dir)  # a reload parses only what changed
        self._wake = threading.Event()
        self._force = False
        self._settled = False  # a save is known to be complete: a short quiet spell will do
        self._stopping = False
        self._lock = threading.Lock()  # one load at a time (worker, SIGHUP, tests)
        self._observer: Observer | None = None
        self._worker: threading.Thread | None = None

    def load_initial(self) -> Policy:
        """Load at start-up. Files that do not load raise `ConfigError` (the caller decides
        whether to exit), unless the state directory holds a last good configuration: that is
        installed instead, with `problems` saying why."""
        with self._lock:
            self._last_attempt = self._fingerprint()
            try:
                policy = load_policy(self.config_dir, cache=self._cache)
            except ConfigError as e:
                self._failed()
                saved = self._saved_policy()
                if saved is None:
                    raise
                self._enforce_saved(saved, [str(p) for p in e.problems])
                return saved
            self._install(policy)
            return policy

    def _saved_policy(self) -> Policy | None:
        if self.state_dir is None or not snapshot.exists(self.state_dir):
            return None
        try:
            return snapshot.load(self.state_dir)
        except (ConfigError, OSError) as e:
            log.error("config_snapshot_unusable", snapshot=str(snapshot.snapshot_dir(
                self.state_dir)), error=str(e))
            return None

    def _enforce_saved(self, policy: Policy, problems: list[str]) -> None:
        """Enforce the last good configuration: loud, and not counted as a good load."""
        assert self.state_dir is not None
        self.problems = [
            f"the configuration in {self.config_dir} does not load; enforcing the last good "
            f"one, saved in {snapshot.snapshot_dir(self.state_dir)}:",
            *problems,
        ]
        log.error("config_invalid_enforcing_snapshot", problems=problems,
                  snapshot=str(snapshot.snapshot_dir(self.state_dir)), sha256=policy.sha256)
        self._use(policy)

    def start(self, *, watch: bool = True) -> None:
        """Start the poll and (unless `watch` is false) the watcher; both end in `check`."""
        self._worker = threading.Thread(target=self._run, name="gatekeeper-reload", daemon=True)
        self._worker.start()
        if not watch:
            return
        handler = _AnyEvent(self.trigger)
        observer = Observer()
        observer.schedule(handler, str(self.config_dir), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._worker is not None:
            self._worker.join(timeout=5)

    def trigger(self, force: bool = False, *, settled: bool = False) -> None:
        """Ask for a check soon (`force`: load even if the bytes look unchanged, as SIGHUP;
        `settled`: the save is complete, check after a short quiet spell)."""
        self._force = self._force or force
        self._settled = self._settled or settled
        self._wake.set()

    def check(self, force: bool = False) -> bool | None:
        """Load now if the files changed. True: new policy; False: failed; None: unchanged."""
        with self._lock:
            fingerprint = self._fingerprint()
            if fingerprint == self._last_attempt and not force:
                return None
            self._last_attempt = fingerprint
            try:
                policy = load_policy(self.config_dir, cache=self._cache)
            except ConfigError as e:
                self._failed()
                problems = [str(p) for p in e.problems]
                log.error(
                    "config_reload_failed",
                    problems=problems,
                    keeping_policy=self.holder.policy.sha256 if self.holder.policy else None,
                )
                if self.problems:
                    self.problems[1:] = problems  # still on the saved copy: the new reasons
                self.on_failure(problems)
                return False
            except Exception:  # a bug must not stop the reloader; the old policy stays
                self._failed()
                log.exception("config_reload_failed", problems=["internal error"])
                self.on_failure(["internal error (see the log)"])
                return False
            self._install(policy)
            log.info("config_reloaded", sha256=policy.sha256, services=len(policy.services),
                     employees=len(policy.employees), grants=len(policy.grants))
            return True

    def _failed(self) -> None:
        self.metrics.config_reloads.labels("failure").inc()
        self.metrics.config_load_ok.set(0)

    def _install(self, policy: Policy) -> None:
        self.problems = []
        self.metrics.config_reloads.labels("success").inc()
        self.metrics.config_load_ok.set(1)
        self.metrics.config_loaded_at.set(time.time())
        self._unsaved = policy if self.state_dir is not None else None
        self._use(policy)
        if threading.current_thread() is self._worker:
            self._save()  # after the swap: the new policy never waits for the disk

    def _use(self, policy: Policy) -> None:
        self.holder.policy = policy
        self.metrics.set_policy(policy.sha256)
        self.on_change(policy)

    def _save(self) -> None:
        """Keep the policy just loaded as the last good configuration (off the event loop)."""
        policy, self._unsaved = self._unsaved, None
        if policy is None or self.state_dir is None:
            return
        try:
            snapshot.save(self.state_dir, self.config_dir, policy)
        except OSError as e:
            log.error("config_snapshot_not_saved", state_dir=str(self.state_dir), error=str(e))

    def _run(self) -> None:
        while not self._stopping:
            with self._lock:  # a load made on another thread (start-up, a direct check)
                self._save()
            woken = self._wake.wait(self.poll_interval)
            if self._stopping:
                return
            if woken:
                # Debounce: wait until the burst of events is over (bounded wait); once a
                # save is known complete, a short quiet spell is enough.
                deadline = time.monotonic() + 5 * self.debounce
                while time.monotonic() < deadline and not self._stopping:
                    self._wake.clear()
                    if not self._wake.wait(self.settle if self._settled else self.debounce):
                        break
            force, self._force = self._force, False
            self._settled = False
            self._wake.clear()
            self.check(force=force)

    def _fingerprint(self) -> str:
        """A digest of the files' bytes (following symlinks), or of why they are unreadable."""
        digest = hashlib.sha256()
        for path in config_files(self.config_dir):
            try:
                digest.update(path.read_bytes())
            except OSError as e:
                digest.update(f"unreadable:{e.errno}".encode())
            digest.update(b"\0")
        return digest.hexdigest()


# Our own reads of the files raise these; reacting to them would wake the reloader forever.
_READS = frozenset({"opened", "closed_no_write"})
# A config file (or Kubernetes' `..data` link) closed after writing or renamed into place.
_COMPLETE = frozenset({"closed", "moved"})
_CONFIG_NAMES = frozenset({SERVICES_FILE, APPROVALS_FILE, "..data"})


class _AnyEvent(FileSystemEventHandler):
    """Any change in the directory may be a save; the byte comparison filters the noise."""

    def __init__(self, wake: Callable[..., None]) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _READS:
            return
        path = event.dest_path if event.event_type == "moved" else event.src_path
        name = os.path.basename(os.fsdecode(path))
        self._wake(settled=event.event_type in _COMPLETE and name in _CONFIG_NAMES)
