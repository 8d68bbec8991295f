"""IP literals in every spelling a resolver accepts are recognized as addresses, names are not."""

from __future__ import annotations

import ipaddress

import pytest

from gatekeeper.core.hosts import ip_literal


@pytest.mark.parametrize(("host", "address"), [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("::1", "::1"),
    ("fe80::1%eth0", "fe80::1"),
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
])
def test_ip_literals_in_loose_forms(host: str, address: str) -> None:
    assert ip_literal(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", [
    "", "www.facebook.com", "bad.cafe", "1.2.3.4.5", "999999999999", "0x", "face:book",
])
def test_names_are_not_ip_literals(host: str) -> None:
    assert ip_literal(host) is None
