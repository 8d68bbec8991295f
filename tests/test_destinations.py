"""The destination rules (gatekeeper.core.destinations): which addresses the proxy refuses."""

from __future__ import annotations

import ipaddress

import pytest

from gatekeeper.core.destinations import AllowedDestination, DestinationRules, Refusal

OWN_PORTS = {8080, 9464}
GATEWAY = ipaddress.ip_address("192.168.10.1")


def check(rules: DestinationRules, address: str, port: int = 80) -> Refusal | None:
    def own_ports() -> set[int]:
        return OWN_PORTS

    return rules.check(ipaddress.ip_address(address), port,
                       is_local=lambda ip: ip == GATEWAY, own_ports=own_ports)


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", Refusal.LOOPBACK),
    ("127.9.8.7", Refusal.LOOPBACK),
    ("::1", Refusal.LOOPBACK),
    ("::ffff:127.0.0.1", Refusal.LOOPBACK),
    ("0.0.0.0", Refusal.UNSPECIFIED),
    ("0.1.2.3", Refusal.UNSPECIFIED),
    ("::", Refusal.UNSPECIFIED),
    ("169.254.1.1", Refusal.LINK_LOCAL),
    ("fe80::1", Refusal.LINK_LOCAL),
    ("169.254.169.254", Refusal.METADATA),
    ("::ffff:169.254.169.254", Refusal.METADATA),
    ("fd00:ec2::254", Refusal.METADATA),
    ("192.168.10.1", Refusal.GATEWAY_ADDRESS),
    ("93.184.216.34", None),
    ("192.168.10.2", None),
    ("2001:db8::1", None),
])
def test_kinds_of_address(address, reason) -> None:
    assert check(DestinationRules(), address) == reason


def test_own_ports_are_refused_on_the_gateway_only() -> None:
    assert check(DestinationRules(), "127.0.0.1", 9464) is Refusal.GATEWAY_PORT
    assert check(DestinationRules(), "192.168.10.1", 8080) is Refusal.GATEWAY_PORT
    assert check(DestinationRules(), "93.184.216.34", 8080) is None


def test_an_allowed_network_opens_everything_but_the_own_ports() -> None:
    rules = DestinationRules((AllowedDestination.parse("127.0.0.0/8"),))
    assert check(rules, "127.0.0.5", 443) is None
    assert check(rules, "127.0.0.1", 9464) is Refusal.GATEWAY_PORT
    assert check(rules, "::1", 443) is Refusal.LOOPBACK  # another network
    assert check(rules, "169.254.169.254") is Refusal.METADATA


def test_only_an_exact_port_entry_opens_an_own_port() -> None:
    rules = DestinationRules((AllowedDestination.parse("127.0.0.1:9464"),))
    assert check(rules, "127.0.0.1", 9464) is None
    assert check(rules, "127.0.0.1", 9465) is Refusal.LOOPBACK
    assert check(rules, "::ffff:127.0.0.1", 9464) is None


@pytest.mark.parametrize(("text", "network", "port"), [
    ("127.0.0.0/8", "127.0.0.0/8", None),
    ("10.1.2.3:5432", "10.1.2.3/32", 5432),
    ("[::1]:8443", "::1/128", 8443),
    ("fd00::/8", "fd00::/8", None),
    ("[fd00::/8]", "fd00::/8", None),
    (" 10.0.0.0/8 ", "10.0.0.0/8", None),
])
def test_allow_list_entries(text, network, port) -> None:
    entry = AllowedDestination.parse(text)
    assert entry.network == ipaddress.ip_network(network) and entry.port == port


@pytest.mark.parametrize("text", ["", "localhost", "127.0.0.1:0", "127.0.0.1:65536",
                                  "127.0.0.1:x", "[::1]8443", "300.1.1.1", "::1:8443x"])
def test_bad_allow_list_entries(text) -> None:
    with pytest.raises(ValueError):
        AllowedDestination.parse(text)
