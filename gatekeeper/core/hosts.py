"""Host names: normalization and domain matching.

A catalog domain covers itself and every subdomain, never a substring: `facebook.com` matches
`www.facebook.com` but not `evilfacebook.com` or `facebook.com.evil.net`. Matching walks the
labels of the host from the right, one dict lookup per label.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from types import MappingProxyType

_PORT = re.compile(r":\d*\Z")
# A host name as it may appear in a catalog: letters, digits, hyphens, dots (IDNA encoded later).
_LABEL = re.compile(r"\A(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


def normalize_host(host: str) -> str:
    """Lower-case, strip a port and a trailing dot, IDNA-encode to punycode.

    Returns "" for something that is not a host name (the caller treats it as not governed,
    which is safe because such a name cannot reach a catalog domain either).
    """
    host = host.strip()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[1:end].lower() if end > 0 else ""
    if host.count(":") == 1:
        host = _PORT.sub("", host)
    host = host.rstrip(".").lower()
    if not host or host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return ""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Every spelling the C resolver (inet_aton) accepts for IPv4: one to four parts, each decimal,
# octal (leading 0) or hexadecimal (0x). `2130706433`, `0x7f.1` and `0177.0.0.1` are 127.0.0.1.
_LOOSE_IPV4 = re.compile(r"\A(?:(?:0x[0-9a-f]*|[0-9]+)\.){0,3}(?:0x[0-9a-f]*|[0-9]+)\Z")


def ip_literal(host: str) -> IPAddress | None:
    """The address a host names when it is an IP literal in any form a resolver accepts.

    `host` is a *normalized* host (`normalize_host`): no port, no brackets. Loose IPv4 forms
    count because getaddrinfo turns them into an address without asking DNS, so a proxy that
    treated them as names would reach an address it never looked at. IPv6 zone ids are dropped.
    """
    if not host:
        return None
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
    if not _LOOSE_IPV4.match(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


# The same forms as text inside `allow_hosts_pattern`: a loose IPv4 literal, or anything made
# of hex digits, dots and at least two colons (every IPv6 literal has two; a name has none),
# optionally bracketed, with a zone id. Matching a little more than `ip_literal` is safe: it
# only sends a connection to gatekeeper's check instead of relaying it unseen.
_IP_LITERAL_PATTERN = (
    r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}"
    r"|\[?[0-9a-f.]*:[0-9a-f.]*:[0-9a-f:.]*(?:%[^\]]*)?\]?"
)


def validate_domain(domain: str) -> str:
    """The normalized form of a catalog domain; raises ValueError when it is not one."""
    normalized = normalize_host(domain)
    labels = normalized.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"not a domain name: {domain!r}")
    return normalized


MEMO_SIZE = 4096  # distinct raw host names remembered per policy


class DomainIndex:
    """Maps host names to the service whose domain covers them."""

    __slots__ = ("_memo", "_owners")

    def __init__(self, owners: Mapping[str, str]) -> None:
        # normalized domain -> service id
        self._owners = MappingProxyType(dict(owners))
        # raw host as a flow carries it -> service id or None. An office asks for the same few
        # hosts over and over, so most requests cost one dict lookup; bounded by clearing.
        self._memo: dict[str, str | None] = {}

    def lookup(self, raw_host: str) -> str | None:
        """The service id for a host as it appears in a request (any case, port, dot, IDN)."""
        memo = self._memo
        try:
            return memo[raw_host]
        except KeyError:
            pass
        found = self.service_for(normalize_host(raw_host))
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[raw_host] = found
        return found

    def service_for(self, host: str) -> str | None:
        """The service id for a *normalized* host, or None when no catalog domain covers it."""
        owners = self._owners
        found = owners.get(host)
        if found is not None:
            return found
        dot = host.find(".")
        while dot != -1:
            found = owners.get(host[dot + 1 :])
            if found is not None:
                return found
            dot = host.find(".", dot + 1)
        return None

    def domains(self) -> Iterable[str]:
        return self._owners.keys()

    def allow_hosts_pattern(self) -> str:
        """One regular expression for mitmproxy's `allow_hosts` option.

        mitmproxy matches it (case-insensitively, with `re.search`) against `host:port` strings
        for the connect target, the TLS SNI and the HTTP Host header; everything that does not
        match is relayed without interception. A trailing dot is allowed.

        Besides the catalog's domains it matches IP literals in every form `ip_literal` knows:
        a connection that names only an address cannot be relayed on trust, since it may carry
        a governed Host header. Such a connection reaches gatekeeper's `UnnamedConnections`,
        which passes it through after all if its TLS names a non-governed host.
        """
        if not self._owners:
            return r"\A(?!)"  # matches nothing: nothing is intercepted
        alternatives = "|".join(re.escape(d) for d in sorted(self._owners, key=len, reverse=True))
        return rf"\A(?:(?:[^:/]*\.)?(?:{alternatives})|{_IP_LITERAL_PATTERN})\.?(?::\d+)?\Z"
