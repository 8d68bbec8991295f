"""Which upstream addresses the proxy refuses to connect to: the gateway itself and its kin.

A proxy on the office gateway would otherwise hand the LAN everything that listens on the
gateway's loopback (the metrics listener, an admin API, a database), on its other addresses,
and on link-local or cloud metadata addresses. `DestinationRules.check` classifies one address
and port; an allow list (`gatekeeper_allowed_destinations`) opens exceptions. The proxy's own
listening ports stay refused even when an allow entry covers their address, unless an entry
names that exact port: allowing `127.0.0.0/8` for a local upstream never opens /metrics.

Pure: whether an address belongs to this machine is asked through a callable the adapter gives.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Collection
from dataclasses import dataclass

from gatekeeper.core.hosts import IPAddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud instance metadata services: AWS, GCP, Azure, Oracle (v4), AWS (v6), Alibaba.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")  # 0.0.0.0 connects to the machine itself


class Refusal(enum.StrEnum):
    """Why a destination is refused (the `reason` label of the refusal counter)."""

    LOOPBACK = "loopback"
    GATEWAY_ADDRESS = "gateway_address"  # one of the gateway's own interface addresses
    GATEWAY_PORT = "gateway_port"  # one of the proxy's own listeners, even when allow-listed
    UNSPECIFIED = "unspecified"
    LINK_LOCAL = "link_local"
    METADATA = "metadata"
    RESOLVE_TIMEOUT = "resolve_timeout"  # the name did not resolve in time: nothing checked
    INTERNAL_ERROR = "internal_error"


# Kinds that reach a socket on the gateway itself, where the proxy's own ports listen.
_ITSELF = frozenset({Refusal.LOOPBACK, Refusal.UNSPECIFIED, Refusal.GATEWAY_ADDRESS})


@dataclass(frozen=True, slots=True)
class AllowedDestination:
    """One allow-list entry: a network and, optionally, one port."""

    network: IPNetwork
    port: int | None = None

    def covers(self, ip: IPAddress, port: int) -> bool:
        return ip in self.network and (self.port is None or self.port == port)

    def names_exactly(self, ip: IPAddress, port: int) -> bool:
        return self.port == port and ip in self.network

    @classmethod
    def parse(cls, text: str) -> AllowedDestination:
        """`ADDRESS[/PREFIX][:PORT]`, an IPv6 network in brackets when a port follows:
        `127.0.0.0/8`, `10.1.2.3:5432`, `[::1]:8443`, `fd00::/8`. Raises ValueError."""
        entry = text.strip()
        port: int | None = None
        if entry.startswith("["):
            network_text, _, rest = entry[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"not an address with a port: {text!r}")
                port = _port(rest[1:], text)
        elif entry.count(":") == 1:
            network_text, _, port_text = entry.partition(":")
            port = _port(port_text, text)
        else:
            network_text = entry
        try:
            network = ipaddress.ip_network(network_text, strict=False)
        except ValueError:
            raise ValueError(f"not an IP network: {text!r}") from None
        return cls(network, port)


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"not a port in {entry!r}")
    return int(text)


def unmapped(ip: IPAddress) -> IPAddress:
    """`::ffff:127.0.0.1` is 127.0.0.1 on the wire: judge it as such."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def kind_of(ip: IPAddress, is_local: Callable[[IPAddress], bool]) -> Refusal | None:
    """The refused kind of address `ip` is, or None for an ordinary (remote) address."""
    ip = unmapped(ip)
    if ip in METADATA_ADDRESSES:
        return Refusal.METADATA
    if ip.is_loopback:
        return Refusal.LOOPBACK
    if ip.is_unspecified or ip in THIS_NETWORK:
        return Refusal.UNSPECIFIED
    if ip.is_link_local:
        return Refusal.LINK_LOCAL
    if is_local(ip):
        return Refusal.GATEWAY_ADDRESS
    return None


@dataclass(frozen=True, slots=True)
class DestinationRules:
    """The refusal rules with the configured allow list."""

    allowed: tuple[AllowedDestination, ...] = ()

    def check(self, ip: IPAddress, port: int, *, is_local: Callable[[IPAddress], bool],
              own_ports: Callable[[], Collection[int]]) -> Refusal | None:
        """Why the proxy must not connect to `ip:port`, or None when it may.

        `own_ports` is only called for an address of the gateway itself, so the common case
        (a remote address) costs a few comparisons.
        """
        ip = unmapped(ip)
        kind = kind_of(ip, is_local)
        if kind is None:
            return None
        if kind in _ITSELF and port in own_ports():
            if any(rule.names_exactly(ip, port) for rule in self.allowed):
                return None
            return Refusal.GATEWAY_PORT
        if any(rule.covers(ip, port) for rule in self.allowed):
            return None
        return kind
