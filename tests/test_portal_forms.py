"""The pieces of the proxy's own forms that must not be bent: CSRF tokens and the address the
browser is sent back to."""

from __future__ import annotations

import pytest

from gatekeeper.addons.forms import safe_return_to
from gatekeeper.csrf import CsrfTokens

NOW = 1_800_000_000.0
SECRET = bytes(range(32))


def test_a_token_fits_only_its_purpose_employee_and_subject():
    tokens = CsrfTokens(SECRET)
    token = tokens.issue("request-access", "bob", "facebook", NOW)
    assert tokens.valid(token, "request-access", "bob", "facebook", NOW + 60)
    assert not tokens.valid(token, "acknowledge-terms", "bob", "facebook", NOW)
    assert not tokens.valid(token, "request-access", "carol", "facebook", NOW)
    assert not tokens.valid(token, "request-access", "bob", "x", NOW)
    assert not CsrfTokens(bytes(32)).valid(token, "request-access", "bob", "facebook", NOW)


def test_a_token_ages_out_and_cannot_come_from_the_future():
    tokens = CsrfTokens(SECRET, max_age=3600)
    token = tokens.issue("request-access", "bob", "facebook", NOW)
    assert tokens.valid(token, "request-access", "bob", "facebook", NOW + 3600)
    assert not tokens.valid(token, "request-access", "bob", "facebook", NOW + 3601)
    assert not tokens.valid(token, "request-access", "bob", "facebook", NOW - 61)
    # The time is part of the MAC: moving it forward breaks the token.
    issued, mac = token.split(".")
    assert not tokens.valid(f"{int(issued) + 3000}.{mac}", "request-access", "bob", "facebook",
                            NOW + 3601)


@pytest.mark.parametrize("token", ["", ".", "abc", "123", "123.", "-5.ab", "1e9.ab"])
def test_malformed_tokens_are_refused(token):
    assert not CsrfTokens(SECRET).valid(token, "request-access", "bob", "facebook", NOW)


@pytest.mark.parametrize(("value", "expected"), [
    ("/feed", "/feed"),
    ("/feed/?trk=nav&x=%2F%2Fevil", "/feed/?trk=nav&x=%2F%2Fevil"),
    ("/", "/"),
    ("", None),
    ("feed", None),
    ("https://evil.example/", None),
    ("//evil.example/", None),
    ("/\\evil.example", None),
    ("\\\\evil.example", None),
    ("/feed\r\nLocation: https://evil.example", None),
    ("/ spaced", None),
    ("/" + "a" * 3000, None),
])
def test_return_to_must_be_a_path_on_this_host(value, expected):
    assert safe_return_to(value) == expected
