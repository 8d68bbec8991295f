"""Proxy sign-in against an Apache htpasswd file (`--set proxyauth=@FILE`), off the loop.

A password hash (sha256-crypt, bcrypt) costs a fraction of a second of CPU, and passlib's C
backend (`crypt`) holds the GIL while it works: in a thread it would still stop mitmproxy's
event loop. So the hashes are checked in a small pool of worker processes at low priority.
The file is read once when the option is set, then re-read off the loop (a thread that looks
at its modification time) whenever it changes; a file that cannot be read keeps the accounts
last read. Passwords are never kept: the cache of `SignIns` holds keyed hashes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from passlib.apache import HtpasswdFile, htpasswd_context

from gatekeeper.logs import get_logger
from gatekeeper.sign_in import Account

log = get_logger("gatekeeper.htpasswd")
HASH_WORKERS = 1  # a process: hashing uses one core at most, the proxy has the rest
WORKER_NICENESS = 19  # hashing yields the CPU to the proxy and everything else
TIMEOUT_SECONDS = 10.0  # one check, including its wait for a free worker
CACHE_SECONDS = 300.0
POLL_SECONDS = 2.0


class HtpasswdVerifier:
    """The accounts of one htpasswd file: user name -> stored hash."""

    name = "htpasswd"
    unavailable_reason = "sign_in_busy"
    unavailable_text = (b"Too many sign-ins are being checked right now. "
                        b"Try again in a minute; if it persists, tell IT.\n")
    timeout_seconds = TIMEOUT_SECONDS
    cache_seconds = CACHE_SECONDS

    def __init__(self, path: Path) -> None:
        """Reads the file (ValueError, OSError when it cannot: the option is refused)."""
        self.path = path
        self._stamp = _stamp(path)
        self.hashes = read_hashes(path)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None

    def account(self, user: str) -> Account | None:
        stored = self.hashes.get(user)
        return Account(user, f"{user}\0{stored}") if stored is not None else None

    def check(self, account: Account, password: str) -> asyncio.Future[bool]:
        stored = account.subject.partition("\0")[2]
        return asyncio.get_running_loop().run_in_executor(self._workers(), verify, password,
                                                          stored)

    def _workers(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(HASH_WORKERS,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=os.nice, initargs=(WORKER_NICENESS,))
        return self._pool

    def start(self) -> None:
        """Start the workers now (not while someone signs in), and watch the file for changes
        (a daemon thread: stat and read never on the loop)."""
        pool = self._workers()
        stored = next(iter(self.hashes.values()), "")
        for _ in range(HASH_WORKERS):  # each busy one makes the pool start another
            pool.submit(verify, "", stored)  # passlib's first check loads its backend
        self._thread = threading.Thread(target=self._watch, name="gatekeeper-htpasswd",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """Blocking: re-read the file if it changed since the last read."""
        try:
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return False
            hashes = read_hashes(self.path)
        except (OSError, ValueError) as e:
            log.error("htpasswd_not_read", path=str(self.path), error=str(e),
                      keeping_users=len(self.hashes))
            return False
        self.hashes, self._stamp = hashes, stamp
        log.info("htpasswd_reloaded", path=str(self.path), users=len(hashes))
        return True


def read_hashes(path: Path) -> dict[str, str]:
    """User name -> stored hash, as passlib reads the file (as mitmproxy's `proxyauth` did)."""
    users = HtpasswdFile(str(path))
    return {user: _text(users.get_hash(user)) for user in users.users()}


def verify(password: str, stored: str) -> bool:
    """In a worker process: whether `password` matches the stored hash (UTF-8, as passlib)."""
    try:
        return bool(htpasswd_context.verify(password.encode(), stored.encode()))
    except ValueError:  # a hash passlib cannot read: nobody signs in with it
        return False


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size, st.st_ino


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
