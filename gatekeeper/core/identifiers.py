"""Account identifiers: the one normal form used for comparing them, and a safe form for logs."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable


def normalize_identifier(value: str) -> str:
    """Trim, Unicode NFKC, case-fold: `ＡＬＩＣＥ@Clinic.example ` -> `alice@clinic.example`."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


def mask_identifier(value: str) -> str:
    """What a log may show of an identifier: `alice@gmail.com` -> `a***@gmail.com`."""
    local, at, domain = value.partition("@")
    head = local[:1] if local else ""
    return f"{head}***{at}{domain}" if at else f"{head}***"


def normalize_user(name: str, realms: Iterable[str]) -> str:
    """The key a proxy sign-in name is looked up by: `CLINIC\\Dave`, `Dave@clinic.example`
    and `dave` are one person when `clinic` and `clinic.example` are realms of the office
    (case-folded); another domain or realm is kept, so it matches nobody."""
    name = normalize_identifier(name)
    if "\\" in name:
        domain, _, rest = name.partition("\\")
        if domain in realms:
            name = rest
    elif "@" in name:
        local, _, realm = name.rpartition("@")
        if realm in realms:
            name = local
    return name
