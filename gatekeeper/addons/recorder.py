"""What the access review needs from the proxy (blocked attempts, audited actions, last use of
a grant), written to the state database off the event loop.

On the request path an event costs an append to a bounded deque (or one dict store for grant
use, of which only the latest per (employee, service) matters); a daemon thread hands what has
gathered about once a second to the writer (in the proxy, the state worker's single thread) as
one transaction. If the database cannot keep up, the oldest events are dropped (said once per
episode in the log), never the proxy slowed down.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
from collections.abc import Callable

from gatekeeper.logs import get_logger
from gatekeeper.statedb import AuditedAction, BlockedAttempt, Event, GrantUse

log = get_logger("gatekeeper.recorder")

FLUSH_INTERVAL_SECONDS = 1.0
MAX_QUEUED = 10_000


class Recorder:
    """The queue and its writer thread; also an addon, listed last, so that its `done` writes
    what every other addon recorded before the process exits."""

    def __init__(self, *, interval: float = FLUSH_INTERVAL_SECONDS,
                 max_queued: int = MAX_QUEUED) -> None:
        self.interval = interval
        self._events: collections.deque[Event] = collections.deque(maxlen=max_queued)
        self._usage: dict[tuple[str, str], dt.datetime] = {}
        self._dropped = 0
        self._write: Callable[[list[Event]], object] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()  # the thread and a final flush never interleave

    # --- the hot path (event loop) ----------------------------------------------------------

    def blocked(self, employee: str | None, service: str, reason: str) -> None:
        self._append(BlockedAttempt(employee, service, reason, _now()))

    def audited(self, employee: str, service: str, action: str) -> None:
        self._append(AuditedAction(employee, service, action, _now()))

    def used(self, employee: str, service: str) -> None:
        self._usage[(employee, service)] = _now()

    def _append(self, event: Event) -> None:
        events = self._events
        if len(events) == events.maxlen:  # the deque drops the oldest on append
            if self._dropped == 0:
                log.warning("review_events_dropped", hint="the state database is too slow")
            self._dropped += 1
        events.append(event)

    # --- the writer -------------------------------------------------------------------------

    def start(self, write: Callable[[list[Event]], object]) -> None:
        """Start the thread; `write(batch)` records a batch in one transaction (such as
        `StateDB.record_many`) and raises when it could not."""
        if self._thread is not None:
            return
        self._write = write
        self._thread = threading.Thread(target=self._run, name="gatekeeper-recorder",
                                        daemon=True)
        self._thread.start()

    def done(self) -> None:
        """Stop the thread and write what is left (mitmproxy's shutdown hook)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        self.flush()

    def flush(self) -> int:
        """Write the events gathered so far in one transaction; returns how many."""
        with self._flush_lock:
            batch = self._take()
            if not batch or self._write is None:
                return 0
            try:
                self._write(batch)
            except Exception as e:  # the database failed: keep running, say so
                log.error("review_events_lost", count=len(batch), error=type(e).__name__)
                return 0
            return len(batch)

    def _take(self) -> list[Event]:
        events = self._events
        batch: list[Event] = []
        while events:  # popleft is atomic: the event loop may append meanwhile
            batch.append(events.popleft())
        usage, self._usage = self._usage, {}  # swap: the event loop writes to the new dict
        # list() copies in one step (under the GIL), so a late write cannot break the loop.
        batch.extend(GrantUse(e, s, at) for (e, s), at in list(usage.items()))
        if self._dropped:
            log.warning("review_events_dropped_total", count=self._dropped)
            self._dropped = 0
        return batch

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
