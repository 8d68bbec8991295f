"""Proxy sign-in machinery in-process: the htpasswd verifier (real hashes, real worker
processes) and `SignIns` (deadline, shared checks, the cache of successes)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest
from passlib.apache import HtpasswdFile

from gatekeeper.htpasswd import HtpasswdVerifier, verify
from gatekeeper.sign_in import Account, SignInResult, SignIns, SignInUnavailableError

PASSWORD = "correct horse 7f3a"


def write_users(path: Path, users: dict[str, str], scheme: str = "sha256_crypt") -> Path:
    htpasswd = HtpasswdFile(str(path), new=True, default_scheme=scheme)
    for user, password in users.items():
        htpasswd.set_password(user, password)
    htpasswd.save()
    return path


class FakeVerifier:
    """Counts checks; each check takes `delay` seconds on the loop's clock."""

    name = "fake"
    unavailable_reason = "fake_unavailable"
    unavailable_text = b"fake\n"

    def __init__(self, passwords: dict[str, str], delay: float = 0.0, timeout: float = 5.0,
                 cache_seconds: float = 60.0) -> None:
        self.passwords = passwords
        self.delay = delay
        self.timeout_seconds = timeout
        self.cache_seconds = cache_seconds
        self.checks = 0
        self.down = False

    def account(self, user: str) -> Account | None:
        if self.down:
            raise SignInUnavailableError("down")
        stored = self.passwords.get(user)  # the "stored hash": a change is another subject
        return Account(user, f"{user}\0{hashlib.sha256(stored.encode()).hexdigest()}") \
            if stored is not None else None

    def check(self, account: Account, password: str) -> asyncio.Future[bool]:
        self.checks += 1
        return asyncio.ensure_future(self._check(account, password))

    async def _check(self, account: Account, password: str) -> bool:
        await asyncio.sleep(self.delay)
        return self.passwords[account.employee] == password


def run(coro):
    return asyncio.run(coro)


def test_a_success_is_cached_and_a_wrong_password_is_checked_every_time() -> None:
    verifier = FakeVerifier({"alice": PASSWORD})
    counted: list[SignInResult] = []
    sign_ins = SignIns(verifier, counted.append)

    async def scenario() -> list[tuple[SignInResult, str | None]]:
        return [await sign_ins.sign_in(user, password) for user, password in [
            ("alice", PASSWORD), ("alice", PASSWORD), ("alice", "wrong"), ("alice", "wrong"),
            ("alice", PASSWORD), ("mallory", PASSWORD), ("alice", ""),
        ]]

    results = run(scenario())
    assert results == [
        (SignInResult.SUCCESS, "alice"), (SignInResult.CACHED, "alice"),
        (SignInResult.REJECTED, None), (SignInResult.REJECTED, None),
        (SignInResult.SUCCESS, "alice"),  # a wrong password dropped the cached success
        (SignInResult.REJECTED, None), (SignInResult.REJECTED, None),
    ]
    assert verifier.checks == 4  # unknown users and empty passwords cost no check
    assert counted == [result for result, _ in results]


def test_the_cache_holds_no_password_and_expires() -> None:
    verifier = FakeVerifier({"alice": PASSWORD}, cache_seconds=0.05)
    sign_ins = SignIns(verifier)

    async def scenario() -> list[SignInResult]:
        first, _ = await sign_ins.sign_in("alice", PASSWORD)
        second, _ = await sign_ins.sign_in("alice", PASSWORD)
        await asyncio.sleep(0.1)
        third, _ = await sign_ins.sign_in("alice", PASSWORD)
        return [first, second, third]

    assert run(scenario()) == [SignInResult.SUCCESS, SignInResult.CACHED, SignInResult.SUCCESS]
    assert PASSWORD.encode() not in repr(sign_ins._cache).encode()
    assert all(PASSWORD.encode() not in digest for digest, _ in sign_ins._cache.values())


def test_a_changed_stored_password_invalidates_the_cached_success() -> None:
    verifier = FakeVerifier({"alice": PASSWORD})
    sign_ins = SignIns(verifier)

    async def scenario() -> list[SignInResult]:
        first, _ = await sign_ins.sign_in("alice", PASSWORD)
        verifier.passwords["alice"] = "new password"  # the file changed: another subject
        old, _ = await sign_ins.sign_in("alice", PASSWORD)
        new, _ = await sign_ins.sign_in("alice", "new password")
        return [first, old, new]

    assert run(scenario()) == [SignInResult.SUCCESS, SignInResult.REJECTED,
                               SignInResult.SUCCESS]


def test_identical_attempts_share_one_check_and_a_slow_check_is_cut_off() -> None:
    verifier = FakeVerifier({"alice": PASSWORD}, delay=0.2, timeout=1.0)
    sign_ins = SignIns(verifier)

    async def together() -> list[tuple[SignInResult, str | None]]:
        return await asyncio.gather(*(sign_ins.sign_in("alice", "wrong") for _ in range(5)))

    assert run(together()) == [(SignInResult.REJECTED, None)] * 5
    assert verifier.checks == 1

    verifier.delay, verifier.timeout_seconds = 5.0, 0.1
    started = time.monotonic()
    assert run(sign_ins.sign_in("alice", PASSWORD)) == (SignInResult.UNAVAILABLE, None)
    assert time.monotonic() - started < 1.0
    verifier.down = True
    assert run(sign_ins.sign_in("alice", PASSWORD)) == (SignInResult.UNAVAILABLE, None)


def test_an_uncached_check_waits_for_its_gate_and_a_cached_one_does_not() -> None:
    verifier = FakeVerifier({"alice": PASSWORD})
    sign_ins = SignIns(verifier)
    entered: list[str] = []

    class Gate:
        async def __aenter__(self) -> None:
            entered.append("in")

        async def __aexit__(self, *exc: object) -> None:
            entered.append("out")

    async def scenario() -> None:
        await sign_ins.sign_in("alice", PASSWORD, Gate())
        await sign_ins.sign_in("alice", PASSWORD, Gate())

    run(scenario())
    assert entered == ["in", "out"]


@pytest.mark.parametrize("scheme", ["sha256_crypt", "bcrypt"])
def test_htpasswd_checks_real_hashes_without_stopping_the_loop(tmp_path: Path,
                                                               scheme: str) -> None:
    users = write_users(tmp_path / "users.htpasswd", {"alice": PASSWORD, "bob": "bob pw"},
                        scheme)
    verifier = HtpasswdVerifier(users)
    sign_ins = SignIns(verifier)
    assert verifier.account("mallory") is None
    started = time.monotonic()
    assert verify(PASSWORD, HtpasswdFile(str(users)).get_hash("alice").decode())
    one_hash = time.monotonic() - started  # what the loop would stop for, were it checked there

    async def scenario() -> tuple[list[tuple[SignInResult, str | None]], float]:
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        verifier.start()
        tick = asyncio.create_task(ticker())
        results = await asyncio.gather(
            sign_ins.sign_in("alice", PASSWORD), sign_ins.sign_in("alice", "wrong"),
            sign_ins.sign_in("bob", "bob pw"), sign_ins.sign_in("bob", "wrong 2"))
        stop.set()
        await tick
        return results, max(gaps)

    try:
        results, worst_gap = run(scenario())
    finally:
        verifier.stop()
    assert results == [(SignInResult.SUCCESS, "alice"), (SignInResult.REJECTED, None),
                       (SignInResult.SUCCESS, "bob"), (SignInResult.REJECTED, None)]
    assert worst_gap < one_hash / 2, f"the loop stopped for {worst_gap:.3f} s ({one_hash:.3f})"


def test_htpasswd_reloads_a_changed_file_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = write_users(tmp_path / "users.htpasswd", {"alice": PASSWORD})
    verifier = HtpasswdVerifier(path)
    old = verifier.account("alice")
    assert verifier.reload_if_changed() is False

    write_users(path, {"alice": "changed 1", "dave": "dave pw"})
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert verifier.reload_if_changed() is True
    assert verifier.account("dave") is not None
    assert verifier.account("alice") != old

    path.write_text("not a htpasswd line\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert verifier.reload_if_changed() is False
    path.unlink()
    assert verifier.reload_if_changed() is False
    assert verifier.account("dave") is not None  # the last good accounts stay
