"""Errors of the state database: every one a `StateError`."""

from __future__ import annotations


class StateError(Exception):
    """The state database cannot be used, or an operation on it is refused."""


class StateTimeoutError(StateError):
    """The operation's deadline passed before it could finish; nothing was changed."""


class StateCorruptError(StateError):
    """The database file does not hold what was just committed to it (it was damaged or
    replaced under the running process)."""


class UnknownRequestError(StateError):
    """No access request has this id."""


class RequestDecidedError(StateError):
    """The access request was already approved, denied or withdrawn."""
