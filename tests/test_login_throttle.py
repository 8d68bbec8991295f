"""Slowing proxy password guessing (gatekeeper.core.login_throttle), with a fake clock."""

from __future__ import annotations

import base64

from gatekeeper.core.login_throttle import LoginThrottle, ThrottleSettings

SETTINGS = ThrottleSettings(free_failures=3, window=60, first_delay=1, max_delay=4,
                            max_waiting=2, max_clients=3)


def test_delays_start_after_the_free_failures_and_double_up_to_the_cap() -> None:
    throttle = LoginThrottle(SETTINGS)
    delays = []
    for i in range(7):
        delay = throttle.failed("10.0.0.9", "alice", now=i)
        delays.append(delay)
        if delay:
            throttle.done_waiting("10.0.0.9")
    assert delays == [0, 0, 0, 1, 2, 4, 4]
    assert throttle.failed("10.0.0.8", "alice", now=7) == 0  # another address: unaffected


def test_failures_are_forgotten_after_the_window() -> None:
    throttle = LoginThrottle(SETTINGS)
    for i in range(4):
        throttle.failed("10.0.0.9", "alice", now=i)
    assert throttle.failed("10.0.0.9", "alice", now=200) == 0
    assert throttle.failures("10.0.0.9") == 1


def test_too_many_waiting_answers_are_dropped_whatever_the_outcome() -> None:
    throttle = LoginThrottle(SETTINGS)
    for i in range(3):
        throttle.failed("10.0.0.9", "alice", now=i)
    assert throttle.failed("10.0.0.9", "alice", now=3) == 1
    assert throttle.failed("10.0.0.9", "alice", now=3) == 2
    assert throttle.failed("10.0.0.9", "alice", now=3) is None  # two are waiting already
    assert throttle.succeeded("10.0.0.9", "alice") is None  # a right guess is not told apart
    throttle.done_waiting("10.0.0.9")  # (a dropped success forgives nothing)
    assert throttle.failed("10.0.0.9", "alice", now=4) == 4


def test_a_right_password_waits_like_a_wrong_one_then_forgives_that_user_only() -> None:
    throttle = LoginThrottle(SETTINGS)
    for i in range(4):
        throttle.failed("10.0.0.9", "alice", now=i)
    throttle.done_waiting("10.0.0.9")
    # bob signs in as himself between guesses at alice's password: nothing forgiven, no wait
    assert throttle.succeeded("10.0.0.9", "bob") == 0
    assert throttle.failures("10.0.0.9") == 4
    assert throttle.succeeded("10.0.0.9", "alice") == 1
    assert throttle.failures("10.0.0.9") == 4  # not until the answer has waited
    throttle.done_waiting("10.0.0.9")
    throttle.forgive("10.0.0.9", "alice")
    assert throttle.failures("10.0.0.9") == 0
    assert throttle.failed("10.0.0.9", "alice", now=5) == 0


def test_the_table_is_bounded() -> None:
    throttle = LoginThrottle(SETTINGS)
    for n in range(10):
        throttle.failed(f"10.0.0.{n}", "x", now=n)
    assert len(throttle) == 3
    assert throttle.failures("10.0.0.9") == 1 and throttle.failures("10.0.0.0") == 0


def test_many_user_names_cannot_hide_failures() -> None:
    throttle = LoginThrottle(ThrottleSettings(free_failures=100))
    for n in range(50):
        throttle.failed("10.0.0.9", f"user{n}", now=0)
    for n in range(50):
        throttle.succeeded("10.0.0.9", f"user{n}")
    assert throttle.failures("10.0.0.9") > 0  # names beyond the remembered ones stay counted


def test_only_the_user_part_of_the_header_is_kept() -> None:
    from gatekeeper.addons.proxy_login_guard import user_of

    def header(raw: bytes) -> str:
        return "Basic " + base64.b64encode(raw).decode()

    assert user_of(header(b"alice:s3cret")) == "alice"
    assert user_of(header(b"ev\nil:s3cret")) == "ev?il"  # no forged log lines
    assert user_of(header(b"x" * 500 + b":pw")) == "x" * 64
    assert user_of("Bearer abc") is None


def test_the_delay_before_a_check_is_the_current_one_and_records_nothing() -> None:
    throttle = LoginThrottle(SETTINGS)
    assert throttle.delay("10.0.0.9", now=0) == 0
    for i in range(4):
        throttle.failed("10.0.0.9", "alice", now=i)
    assert throttle.delay("10.0.0.9", now=5) == 1
    assert throttle.delay("10.0.0.9", now=5) == 1  # asking again changes nothing
    assert throttle.failures("10.0.0.9") == 4
    assert throttle.delay("10.0.0.9", now=200) == 0  # past the window
    assert throttle.delay("10.0.0.8", now=5) == 0
