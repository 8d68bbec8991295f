"""What the access review and the activity report need from the proxy (blocked attempts,
audited actions and account creations, refused actions, last use of a grant), written to the
state database off the event loop; and the pruning of events older than the retention window.

On the request path an event costs an append to a bounded deque (or one dict store for grant
use, of which only the latest per (employee, service) matters); a daemon thread hands what has
gathered about once a second to the writer (in the proxy, the state worker's single thread) as
one transaction. If the database cannot keep up, the oldest events are dropped (said once per
episode in the log), never the proxy slowed down. The same thread prunes the events older than
the retention window when it starts and every `PRUNE_INTERVAL_SECONDS`.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable

from gatekeeper.logs import get_logger
from gatekeeper.statedb import RECORDED, AuditedAction, BlockedAttempt, Event, GrantUse

log = get_logger("gatekeeper.recorder")

FLUSH_INTERVAL_SECONDS = 1.0
PRUNE_INTERVAL_SECONDS = 6 * 3600.0
MAX_QUEUED = 10_000
Prune = Callable[[dt.datetime], object]  # deletes the events that are too old at that time


class Recorder:
    """The queue and its writer thread; also an addon, listed last, so that its `done` writes
    what every other addon recorded before the process exits."""

    def __init__(self, *, interval: float = FLUSH_INTERVAL_SECONDS,
                 max_queued: int = MAX_QUEUED, prune_interval: float = PRUNE_INTERVAL_SECONDS,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.interval = interval
        self.prune_interval = prune_interval
        self._clock = clock or _now
        self._prune: Prune | None = None
        self._next_prune = 0.0  # monotonic
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

    def audited(self, employee: str, service: str, action: str, target: str | None = None,
                outcome: str = RECORDED) -> None:
        self._append(AuditedAction(employee, service, action, _now(), target, outcome))

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

    def start(self, write: Callable[[list[Event]], object], prune: Prune | None = None) -> None:
        """Start the thread; `write(batch)` records a batch in one transaction (such as
        `StateDB.record_many`) and raises when it could not; `prune(now)`, when given, is
        called from the thread at once and every `prune_interval` seconds."""
        if self._thread is not None:
            return
        self._write = write
        self._prune = prune
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

    def prune_due(self) -> bool:
        """Prune now if the interval has passed since the last time (the thread's timer);
        True when it pruned. A failure is logged, and tried again at the next interval."""
        if self._prune is None or time.monotonic() < self._next_prune:
            return False
        self._next_prune = time.monotonic() + self.prune_interval
        try:
            self._prune(self._clock())
        except Exception as e:  # the database failed: keep recording, say so
            log.error("events_not_pruned", error=type(e).__name__)
        return True

    def _run(self) -> None:
        self.prune_due()
        while not self._stop.wait(self.interval):
            self.flush()
            self.prune_due()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
