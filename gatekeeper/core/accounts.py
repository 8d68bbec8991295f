"""Account identifiers: the one normal form used for comparing them, and a safe form for logs."""

from __future__ import annotations

import unicodedata


def normalize_identifier(value: str) -> str:
    """Trim, Unicode NFKC, case-fold: `ＡＬＩＣＥ@Clinic.example ` -> `alice@clinic.example`."""
    return unicodedata.normalize("NFKC", value).strip().casefold()


def mask_identifier(value: str) -> str:
    """What a log may show of an identifier: `alice@gmail.com` -> `a***@gmail.com`."""
    local, at, domain = value.partition("@")
    head = local[:1] if local else ""
    return f"{head}***{at}{domain}" if at else f"{head}***"
