"""The proxy's one way to its state database: one thread, deadlines, and the database's health.

mitmproxy serves every connection of the office on one event loop, and SQLite waits on the
thread that calls it (for another process's write lock, for the disk). So no hook calls the
database: every operation is a job for this worker's single thread, run in order (review-event
batches, session bindings, access requests, Terms-of-Use acceptances), so the proxy has exactly
one writer. A hook awaits its job with `run`, which pauses only that flow and gives up after
`DEADLINE_SECONDS`; the job stops waiting at the same deadline and never commits after it
(gatekeeper.state.database.deadline), so "could not be recorded" is what happened.

Every failure is a `StateOperationError` of a fixed kind (`KINDS`), logged and counted in
`gatekeeper_state_errors_total{operation,kind}`. Damage (SQLite's "malformed" or "not a
database", or a committed row that a fresh connection cannot read back) also makes the database
unhealthy: `gatekeeper_state_healthy` 0, `/readyz` 503 naming the problem, and no more writes
(writing into a damaged file can only make it worse) until an integrity check (`PRAGMA
quick_check`: at start, then every `CHECK_INTERVAL_SECONDS`) finds the file sound again.
"""

from __future__ import annotations

import asyncio
import errno
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from gatekeeper.logs import get_logger
from gatekeeper.metrics import Metrics
from gatekeeper.state.database import StateDB, deadline, integrity_problems
from gatekeeper.state.errors import StateCorruptError, StateError, StateTimeoutError

log = get_logger("gatekeeper.state")

DEADLINE_SECONDS = 1.5  # how long a flow waits for its state operation at most
GRACE_SECONDS = 0.5  # the job ends its own waits at the deadline; this covers a commit under way
CHECK_INTERVAL_SECONDS = 300.0
CALL_TIMEOUT_SECONDS = 30.0  # for threads and start/stop: longer than SQLite's busy timeout
MAX_QUEUED = 1000
REPEAT_LOG_SECONDS = 60.0

KINDS = ("timeout", "locked", "readonly", "full", "io", "corrupt", "error")
# SQLite's (extended) error names, by prefix, and the kind each one is.
_SQLITE_KINDS = (
    ("SQLITE_BUSY", "locked"),
    ("SQLITE_LOCKED", "locked"),
    ("SQLITE_READONLY", "readonly"),
    ("SQLITE_PERM", "readonly"),
    ("SQLITE_FULL", "full"),
    ("SQLITE_IOERR", "io"),
    ("SQLITE_CANTOPEN", "io"),
    ("SQLITE_CORRUPT", "corrupt"),
    ("SQLITE_NOTADB", "corrupt"),
)
_OS_KINDS = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EROFS: "readonly",
             errno.EACCES: "readonly", errno.EPERM: "readonly"}

T = TypeVar("T")
Job = Callable[[StateDB], T]


class StateOperationError(Exception):
    """A state operation that did not happen (or cannot be vouched for): `kind` is one of
    `KINDS`, `detail` SQLite's or the system's message."""

    def __init__(self, operation: str, kind: str, detail: str) -> None:
        super().__init__(f"{operation}: {kind}: {detail}")
        self.operation = operation
        self.kind = kind
        self.detail = detail


def fault_kind(error: BaseException) -> str | None:
    """The kind of a state failure; None when `error` is not one (a bug, a ValueError...)."""
    if isinstance(error, StateTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(error, StateCorruptError):
        return "corrupt"
    if isinstance(error, sqlite3.Error):
        name = getattr(error, "sqlite_errorname", "") or ""
        return next((kind for prefix, kind in _SQLITE_KINDS if name.startswith(prefix)), "error")
    if isinstance(error, OSError):
        return _OS_KINDS.get(error.errno or 0, "io")
    if isinstance(error, StateError):  # wraps the sqlite3 error that caused it, if any
        cause = error.__cause__
        return fault_kind(cause) if cause is not None else "error"
    return None


class StateWorker:
    """The single thread that runs the proxy's state jobs, and the database's health.

    `db` is None when the file could not even be opened because it is damaged; `problem` then
    says so, and every job fails as `corrupt`.
    """

    def __init__(self, db: StateDB | None, path: Path, metrics: Metrics, *,
                 problem: str | None = None, check_interval: float = CHECK_INTERVAL_SECONDS,
                 max_queued: int = MAX_QUEUED) -> None:
        self.db = db
        self.path = Path(path)
        self.metrics = metrics
        self.check_interval = check_interval
        self._jobs: queue.Queue[tuple[Future[Any], str, Job[Any], float | None, bool]] = (
            queue.Queue(max_queued)
        )
        self._thread: threading.Thread | None = None
        self._said: dict[str, tuple[str, float]] = {}  # operation -> last fault logged, when
        self._said_lock = threading.Lock()  # faults are reported from several threads
        self._problem: str | None = None
        self._set_problem(problem)

    # --- health -----------------------------------------------------------------------------

    @property
    def problem(self) -> str | None:
        """What is wrong with the database, in a sentence; None while nothing is known."""
        return self._problem

    def problems(self) -> list[str]:
        """For `/readyz`: the problem, if there is one."""
        problem = self._problem
        return [problem] if problem else []

    def check(self) -> None:
        """Run the integrity check now, on the calling thread, and record what it finds."""
        try:
            findings = integrity_problems(self.path)
        except (sqlite3.Error, OSError) as e:  # locked or unreadable: no finding either way
            self._report(StateOperationError("integrity_check", fault_kind(e) or "error", str(e)))
            return
        if self.db is None:
            return  # it could not be opened at start: only a restart opens it again
        self._set_problem("; ".join(findings) if findings else None)

    def _set_problem(self, detail: str | None) -> None:
        problem = f"state database {self.path} is damaged: {detail}" if detail else None
        if problem != self._problem:
            if problem:
                log.error("state_damaged", db=str(self.path), problem=detail,
                          hint="nothing can be recorded: stop gatekeeper, restore the state "
                               "directory from a backup (or `sqlite3 gatekeeper.db .recover`), "
                               "start it again")
            else:
                log.info("state_sound_again", db=str(self.path))
        self._problem = problem
        self.metrics.state_healthy.set(0 if problem else 1)

    # --- running jobs -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread (a daemon: the recorder's final flush, queued after every other
        job at shutdown, is the last one that matters)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gatekeeper-state",
                                            daemon=True)
            self._thread.start()

    async def run(self, operation: str, job: Job[T], *,
                  timeout: float = DEADLINE_SECONDS) -> T:
        """Run `job(db)` on the worker without blocking the event loop, within `timeout`.

        Raises StateOperationError (logged and counted) when it failed or did not finish in
        time, and whatever else the job raised (a ValueError of its own) unchanged.
        """
        at = time.monotonic() + timeout
        future = self._submit(operation, job, at)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout + GRACE_SECONDS)
        except TimeoutError:
            fault = StateOperationError(operation, "timeout", f"no answer within {timeout:g} s")
        except StateOperationError as e:
            fault = e
        self._report(fault)
        raise fault

    def submit(self, operation: str, job: Job[Any]) -> None:
        """Run `job(db)` in the background; a failure is logged and counted."""
        self._submit(operation, job, None).add_done_callback(self._background_done)

    def call(self, operation: str, job: Job[T], *, reading: bool = False,
             timeout: float = CALL_TIMEOUT_SECONDS) -> T:
        """Run `job(db)` and wait for it, at most `timeout`: from another thread, or at start
        and stop, when the proxy serves nobody. `reading` jobs run even on a damaged database
        (they change nothing)."""
        future = self._submit(operation, job, None, reading)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            fault = StateOperationError(operation, "timeout", f"no answer within {timeout:g} s")
        except StateOperationError as e:
            fault = e
        self._report(fault)
        raise fault

    def _submit(self, operation: str, job: Job[Any], at: float | None,
                reading: bool = False) -> Future[Any]:
        future: Future[Any] = Future()
        if self._thread is None:
            future.set_exception(
                StateOperationError(operation, "error", "the state worker is not running"))
            return future
        try:
            self._jobs.put_nowait((future, operation, job, at, reading))
        except queue.Full:
            future.set_exception(StateOperationError(operation, "timeout",
                                            "too many state operations are waiting"))
        return future

    def _run(self) -> None:
        next_check = time.monotonic() + self.check_interval
        while True:
            try:
                item = self._jobs.get(timeout=max(0.0, next_check - time.monotonic()))
            except queue.Empty:
                self.check()
                next_check = time.monotonic() + self.check_interval
                continue
            future, operation, job, at, reading = item
            if not future.set_running_or_notify_cancel():
                continue  # its flow stopped waiting before it started
            try:
                future.set_result(self._execute(operation, job, at, reading))
            except BaseException as e:  # handed to whoever waits, never lost
                future.set_exception(e)

    def _execute(self, operation: str, job: Job[T], at: float | None, reading: bool) -> T:
        """Run one job on this thread: state failures become StateOperationError, damage is
        recorded."""
        if self.db is None or (self._problem is not None and not reading):
            raise StateOperationError(operation, "corrupt", self._problem or "not open")
        try:
            if at is None:
                return job(self.db)
            with deadline(at):
                return job(self.db)
        except Exception as e:
            kind = fault_kind(e)
            if kind is None:
                raise
            if kind == "corrupt":
                self._set_problem(str(e))
            raise StateOperationError(operation, kind, str(e)) from e

    def _background_done(self, future: Future[Any]) -> None:
        error = future.exception()
        if isinstance(error, StateOperationError):
            self._report(error)
        elif error is not None:
            log.error("state_job_failed", error=type(error).__name__)

    def _report(self, fault: StateOperationError) -> None:
        """Count every failure; log it unless the same one of the same operation was logged
        less than `REPEAT_LOG_SECONDS` ago (a damaged database fails every flush)."""
        self.metrics.state_errors.labels(fault.operation, fault.kind).inc()
        now = time.monotonic()
        with self._said_lock:
            said = self._said.get(fault.operation)
            if said is not None and said[0] == str(fault) and now - said[1] < REPEAT_LOG_SECONDS:
                return
            self._said[fault.operation] = (str(fault), now)
        level = log.warning if fault.kind in ("timeout", "locked") else log.error
        level("state_fault", operation=fault.operation, kind=fault.kind, error=fault.detail)
