"""The office directory inside the running proxy: the employee list in force, its refresh, and
proxy sign-in checks.

The live policy is always `compose(files' policy, last good list)`, rebuilt under one lock
whenever either side changes: the reloader installs the files' policy into `inbox`, the
refresh thread installs a new list. A failed refresh changes nothing (the last good list stays,
`gatekeeper_directory_up` drops to 0). Directory I/O runs in threads: the refresh in its own,
sign-in binds in a small pool of their own, so a slow directory never holds up mitmproxy's
event loop, nor the default executor mitmproxy resolves host names in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType

from gatekeeper.core.directory import DirectoryList, compose
from gatekeeper.core.identifiers import normalize_user
from gatekeeper.core.model import Policy
from gatekeeper.directory.client import DirectoryUnavailableError, check_password, fetch_people
from gatekeeper.directory.settings import DirectorySettings
from gatekeeper.directory.store import load_list, save_list
from gatekeeper.logs import get_logger
from gatekeeper.metrics import Metrics
from gatekeeper.reload import PolicyHolder
from gatekeeper.sign_in import Account, SignIns, SignInUnavailableError

log = get_logger("gatekeeper.directory")
SIGN_IN_WORKERS = 4


class LiveDirectory:
    """One per proxy process, when gateway.yaml has a `directory:` section."""

    def __init__(self, settings: DirectorySettings, holder: PolicyHolder,
                 metrics: Callable[[], Metrics], state_dir: Path) -> None:
        self.settings = settings
        self.holder = holder  # the live policy every request reads
        self.metrics = metrics  # read when used: Lifecycle may replace the Metrics object
        self.state_dir = state_dir
        self.inbox = FilePolicyInbox(self)
        self.list: DirectoryList | None = load_list(state_dir)  # the last good list
        self.attempted = threading.Event()  # set once the first refresh has finished
        self.failing_since: float | None = None
        self._file_policy: Policy | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.verifier = DirectoryVerifier(self)
        self.sign_ins = SignIns(
            self.verifier, lambda result: self.metrics().directory_sign_ins.labels(result).inc())

    # --- the employee list ------------------------------------------------------------------

    @property
    def file_policy(self) -> Policy | None:
        """The policy of the files, before the directory's employees are added."""
        return self._file_policy

    def install_file_policy(self, policy: Policy) -> None:
        with self._lock:
            self._file_policy = policy
            self._apply()

    def _apply(self) -> None:
        """Install compose(files, list) as the live policy (the lock is held)."""
        if self._file_policy is None:
            return
        directory = self.list or DirectoryList(MappingProxyType({}), self.settings.realms, 0.0)
        composition = compose(self._file_policy, directory)
        self.holder.policy = composition.policy
        added = len(composition.policy.employees) - len(self._file_policy.employees)
        self.metrics().directory_employees.set(added)
        for person_id, why in composition.skipped:
            log.debug("directory_account_skipped", account=person_id, why=why)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gatekeeper-directory",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=1)  # a daemon thread; a read under way is bounded anyway
        self.verifier.stop()

    def refresh_soon(self) -> None:
        """Read the list again now (SIGHUP), not at the next scheduled time."""
        self._wake.set()

    def refresh(self) -> bool:
        """Read the list (blocking; the refresh thread and `gatekeeper check --online`)."""
        metrics = self.metrics()
        started = time.monotonic()
        try:
            directory = fetch_people(self.settings)
        except DirectoryUnavailableError as e:
            metrics.directory_refreshes.labels("failure").inc()
            metrics.directory_up.set(0)
            self.failing_since = self.failing_since or time.time()
            kept = self.list
            log.error("directory_refresh_failed", error=str(e), url=self.settings.url,
                      keeping_employees=len(kept.people) if kept else 0,
                      list_from=_iso(kept.fetched_at) if kept else None)
            return False
        with self._lock:
            self.list = directory
            self._apply()
        self.failing_since = None
        metrics.directory_refreshes.labels("success").inc()
        metrics.directory_up.set(1)
        metrics.directory_last_success.set(directory.fetched_at)
        log.info("directory_refreshed", accounts=len(directory.people),
                 seconds=round(time.monotonic() - started, 3))
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            save_list(self.state_dir, directory)
        except OSError as e:
            log.warning("directory_list_not_saved", error=str(e))
        return True

    def _run(self) -> None:
        while not self._stopping:
            self.refresh()
            self.attempted.set()
            self._wake.wait(self.settings.refresh_seconds)
            self._wake.clear()

    def status(self) -> str:
        """One line for /readyz."""
        directory = self.list
        count = len(directory.people) if directory else 0
        if self.failing_since is None:
            return f"directory: ok, {count} accounts read at {_iso(directory.fetched_at)}" \
                if directory else "directory: not read yet"
        kept = f"keeping the list of {_iso(directory.fetched_at)} ({count} accounts)" \
            if directory else "no list: only approvals.yaml's employees are known"
        return f"directory: not answering since {_iso(self.failing_since)}; {kept}"


class DirectoryVerifier:
    """Proxy sign-in by a bind as the employee's directory entry, in a small pool of threads
    (LDAP I/O releases the GIL), so a slow directory never holds up the loop."""

    name = "directory"
    unavailable_reason = "directory_unavailable"
    unavailable_text = (b"The office directory is not answering, so your sign-in cannot be "
                        b"checked. Try again in a minute; if it persists, tell IT.\n")

    def __init__(self, live: LiveDirectory) -> None:
        self.live = live
        self.timeout_seconds = live.settings.timeout_seconds
        self.cache_seconds = live.settings.sign_in_cache_seconds
        self._pool = ThreadPoolExecutor(SIGN_IN_WORKERS, thread_name_prefix="gatekeeper-sign-in")

    def account(self, user: str) -> Account | None:
        """An employee of the live policy who is in the directory's list (by its DN)."""
        policy = self.live.holder.policy
        directory = self.live.list
        if policy is None or directory is None:
            raise SignInUnavailableError("no directory list read yet")
        key = normalize_user(user, policy.realms)
        employee = policy.user_ids.get(key)
        person = directory.people.get(key)
        return Account(employee, person.dn) if employee and person else None

    def check(self, account: Account, password: str) -> asyncio.Future[bool]:
        return asyncio.get_running_loop().run_in_executor(
            self._pool, check_password, self.live.settings, account.subject, password)

    def stop(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class FilePolicyInbox(PolicyHolder):
    """Where the reloader installs the policy of the files (`Runtime.file_policy`): each one
    is composed with the directory's list before it goes live."""

    __slots__ = ("_live",)

    def __init__(self, live: LiveDirectory) -> None:
        self._live = live

    @property  # type: ignore[override]
    def policy(self) -> Policy | None:
        return self._live.file_policy

    @policy.setter
    def policy(self, policy: Policy | None) -> None:
        if policy is not None:
            self._live.install_file_policy(policy)


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")
