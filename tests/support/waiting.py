"""Waiting on a condition instead of sleeping: poll until true or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll `condition()` until it returns a true value, or the deadline passes; returns the
    last value (so `assert eventually(...)` and `assert not eventually(...)` both read well)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_until(condition: Callable[[], object], what: str = "condition",
               timeout: float = 10.0) -> None:
    """Like `eventually`, failing the test with `what` when the deadline passes."""
    assert eventually(condition, timeout), f"waited {timeout}s for {what}"
