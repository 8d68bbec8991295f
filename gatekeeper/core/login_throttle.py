"""Slowing down proxy password guessing, per client address.

A few wrong passwords are a typo; after `free_failures` within `window` seconds every further
answer from that address (wrong or right, so a correct guess is not told apart by its speed)
waits `first_delay`, doubling with each failure up to `max_delay`. Only the waiting request is
held; other addresses are not affected. At most `max_waiting` answers of one address wait at
once: beyond that the request is dropped unanswered, so opening more connections does not buy
more guesses. A correct password forgives the failures of that user name only (an employee
who signs in as themself between guesses at a colleague's password stays slowed down). The
table keeps at most `max_clients` addresses (the least recently seen is forgotten first).
Pure: the caller passes the clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

DROP = None  # returned instead of a delay: answer nothing, close the request


OTHER_USERS = "\0"  # failures of user names beyond MAX_USERS: never forgiven by a success
MAX_USERS = 16  # user names remembered per address


@dataclass(slots=True)
class _Client:
    failures: int = 0
    last: float = 0.0
    waiting: int = 0
    by_user: dict[str, int] = field(default_factory=dict)

    def add(self, user: str) -> None:
        if user not in self.by_user and len(self.by_user) >= MAX_USERS:
            user = OTHER_USERS
        self.by_user[user] = self.by_user.get(user, 0) + 1
        self.failures += 1


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    free_failures: int = 5
    window: float = 600.0
    first_delay: float = 0.25
    max_delay: float = 10.0
    max_waiting: int = 32
    max_clients: int = 4096


class LoginThrottle:
    """Failure counts per client address and the delay each answer must wait."""

    def __init__(self, settings: ThrottleSettings | None = None) -> None:
        self.settings = settings or ThrottleSettings()
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def failed(self, client: str, user: str, now: float) -> float | None:
        """Record a wrong password for `user` from `client`; the seconds its 407 must wait,
        or DROP."""
        entry = self._clients.get(client)
        if entry is None or now - entry.last > self.settings.window:
            entry = _Client()
            self._clients[client] = entry
            self._forget_oldest()
        self._clients.move_to_end(client)
        entry.add(user)
        entry.last = now
        return self._hold(entry)

    def failures(self, client: str) -> int:
        entry = self._clients.get(client)
        return entry.failures if entry else 0

    def delay(self, client: str, now: float) -> float:
        """The seconds an answer to `client` waits now, without recording anything (the proxy
        holds a throttled address's next password check back by this much)."""
        entry = self._clients.get(client)
        if entry is None or now - entry.last > self.settings.window:
            return 0.0
        return self._delay(entry.failures)

    def succeeded(self, client: str, user: str) -> float | None:
        """A correct password for `user` from `client`. If that user name had failures here
        this may be a guess that hit: it waits like a failure would (seconds, or DROP), and the
        caller calls `forgive` once the answer is sent. Otherwise 0: nothing changes."""
        entry = self._clients.get(client)
        if entry is None or user not in entry.by_user:
            return 0.0
        delay = self._hold(entry)
        if delay == 0:
            self.forgive(client, user)
        return delay

    def forgive(self, client: str, user: str) -> None:
        """Forget the failures of `user` at `client` (after a correct password was answered;
        a dropped one forgives nothing, or the next guesses would be fast again and tell)."""
        entry = self._clients.get(client)
        if entry is None:
            return
        entry.failures -= entry.by_user.pop(user, 0)
        if entry.failures <= 0 and entry.waiting == 0:
            del self._clients[client]

    def done_waiting(self, client: str) -> None:
        """A held answer of `client` was sent (call once per non-zero delay)."""
        entry = self._clients.get(client)
        if entry is not None and entry.waiting > 0:
            entry.waiting -= 1

    def _hold(self, entry: _Client) -> float | None:
        delay = self._delay(entry.failures)
        if delay <= 0:
            return 0.0
        if entry.waiting >= self.settings.max_waiting:
            return DROP
        entry.waiting += 1
        return delay

    def _delay(self, failures: int) -> float:
        s = self.settings
        excess = failures - s.free_failures
        if excess <= 0:
            return 0.0
        return min(s.first_delay * 2 ** min(excess - 1, 32), s.max_delay)

    def _forget_oldest(self) -> None:
        while len(self._clients) > self.settings.max_clients:
            self._clients.popitem(last=False)
