"""Request bodies gatekeeper reads: sized from their headers, decoded and parsed with a cap.

A few hundred compressed bytes can expand to gigabytes, so every decoder here streams with a
limit on its OUTPUT and stops one byte past it: a body that would grow beyond the limit is
refused (`BodyTooLargeError`), never held in memory. Bodies that cannot be decoded, or that
could be read two ways (an unknown or truncated coding, data after the end of the compressed
stream), are refused too (`UnreadableBodyError`), so what gatekeeper checks is what the
upstream would read.

No mitmproxy here: the addons hand in bytes and header values.
"""

from __future__ import annotations

import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import brotlicffi
import zstandard

# A refused request whose announced body is at most this long is read to its end, so that
# the client gets the proxy's answer (mitmproxy 11 answers only after the whole request);
# a longer one, or one of unknown length, ends the connection unread.
DRAIN_LIMIT = 1024 * 1024
BROTLI_STEP = 16 * 1024  # compressed bytes handed to the brotli decoder per call
# zstd's one-shot decoder has no output limit: fed 32 compressed bytes at a time it emits at
# most eight 128 KiB blocks per call (an RLE block is 4 bytes), about 1 MiB past the limit.
ZSTD_STEP = 32
ZSTD_MAX_WINDOW = 8 * 1024 * 1024  # RFC 9659: HTTP zstd windows stay within 8 MiB
MAX_FORM_FIELDS = 100
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodyError(ValueError):
    """A body gatekeeper refuses to read."""


class BodyTooLargeError(BodyError):
    """The body, or what it decodes to, is larger than the limit."""


class UnreadableBodyError(BodyError):
    """The body cannot be decoded, or could be decoded in more than one way."""


# --- sizes --------------------------------------------------------------------------------


class Headers(Protocol):
    """Request headers as mitmproxy holds them: every value of a name, any case."""

    def get_all(self, name: str) -> list[str]: ...


def declared_length(method: str, headers: Headers, http_version: str) -> int | None:
    """How many body bytes the request announces; None when it does not say (chunked, or
    HTTP/2 and 3 without Content-Length, where a body may follow) or says two things."""
    if headers.get_all("transfer-encoding"):
        return None
    content_lengths = headers.get_all("content-length")
    if len(content_lengths) > 1:
        return None
    if content_lengths:
        value = content_lengths[0].strip()
        return int(value) if value.isascii() and value.isdigit() else None
    if http_version.upper().startswith("HTTP/1") or method.upper() not in BODY_METHODS:
        return 0  # HTTP/1 without either header has no body
    return None


def drainable(length: int | None) -> bool:
    """Whether a refused request's body is small enough to read to its end for an answer."""
    return length is not None and length <= DRAIN_LIMIT


# --- content codings ----------------------------------------------------------------------


def content_codings(header_values: Iterable[str]) -> list[str]:
    """The codings of one or more Content-Encoding values, lower case, in the order they
    were applied; `identity` is left out."""
    codings = [c.strip().lower() for value in header_values for c in value.split(",")]
    return [c for c in codings if c and c != "identity"]


def decode_body(raw: bytes, content_encoding: str | Iterable[str], limit: int) -> bytes:
    """`raw` with its content codings undone (gzip, deflate, br, zstd, stacked). Raises
    BodyTooLargeError when it is, or would decode to, more than `limit` bytes, and
    UnreadableBodyError when a coding is unknown or does not decode cleanly."""
    values = [content_encoding] if isinstance(content_encoding, str) else content_encoding
    data = raw
    if len(data) > limit:
        raise BodyTooLargeError("body larger than the limit")
    for coding in reversed(content_codings(values)):
        decoder = DECODERS.get(coding)
        if decoder is None:
            raise UnreadableBodyError(f"unsupported content coding {coding!r}")
        if not data:
            continue  # an empty body is empty in every coding (as mitmproxy reads it)
        try:
            data = decoder(data, limit)
        except (zlib.error, brotlicffi.error, zstandard.ZstdError) as e:
            raise UnreadableBodyError(f"cannot decode {coding}: {e}") from e
    return data


def _inflate(data: bytes, limit: int, wbits: int, *, members: bool) -> bytes:
    """zlib, raw deflate or gzip; with `members`, every gzip member in turn (as gzip readers
    do), so that nothing after the first member goes unread."""
    out = bytearray()
    while True:
        decoder = zlib.decompressobj(wbits)
        out += decoder.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            raise BodyTooLargeError("body larger than the limit")
        if not decoder.eof:
            raise UnreadableBodyError("truncated compressed body")
        data = decoder.unused_data
        if not data:
            return bytes(out)
        if not members:
            raise UnreadableBodyError("data after the end of the compressed body")


def _gzip(data: bytes, limit: int) -> bytes:
    return _inflate(data, limit, 16 + zlib.MAX_WBITS, members=True)


def _deflate(data: bytes, limit: int) -> bytes:
    """`deflate` is zlib-wrapped by the standard and raw by some clients: both are read."""
    try:
        return _inflate(data, limit, zlib.MAX_WBITS, members=False)
    except zlib.error:
        return _inflate(data, limit, -zlib.MAX_WBITS, members=False)


def _brotli(data: bytes, limit: int) -> bytes:
    """brotlicffi's `output_buffer_limit` bounds each call's output (Brotli<=1.1, which
    mitmproxy pins, cannot)."""
    decoder = brotlicffi.Decompressor()
    out = bytearray()
    for start in range(0, len(data), BROTLI_STEP):
        out += decoder.process(data[start:start + BROTLI_STEP],
                               output_buffer_limit=limit + 1 - len(out))
        while len(out) <= limit and not decoder.can_accept_more_data():
            out += decoder.process(b"", output_buffer_limit=limit + 1 - len(out))
        if len(out) > limit:
            raise BodyTooLargeError("body larger than the limit")
    if not decoder.is_finished():
        raise UnreadableBodyError("truncated compressed body")
    return bytes(out)


def _zstd(data: bytes, limit: int) -> bytes:
    """Every frame in turn (as mitmproxy reads them), fed in small steps (see ZSTD_STEP)."""
    context = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    out = bytearray()
    while data:
        decoder = context.decompressobj()
        position = 0
        while not decoder.eof and position < len(data):
            out += decoder.decompress(data[position:position + ZSTD_STEP])
            position += ZSTD_STEP
            if len(out) > limit:
                raise BodyTooLargeError("body larger than the limit")
        if not decoder.eof:
            raise UnreadableBodyError("truncated compressed body")
        data = decoder.unused_data + data[position:]
    return bytes(out)


DECODERS: Mapping[str, Callable[[bytes, int], bytes]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "deflateraw": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}


# --- the proxy's own forms ----------------------------------------------------------------


def read_urlencoded_form(body: bytes, limit: int) -> dict[str, str]:
    """The fields of a small UTF-8 `application/x-www-form-urlencoded` body, each name once.
    Percent-decoding only shrinks, so `limit` on the raw body bounds the decoded one too.
    Raises BodyTooLargeError, or UnreadableBodyError for a body that is not such a form
    (bad UTF-8, too many fields, a repeated name, which servers read differently)."""
    if len(body) > limit:
        raise BodyTooLargeError("form larger than the limit")
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
            encoding="utf-8", errors="strict", max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError as e:  # UnicodeDecodeError is one
        raise UnreadableBodyError(f"not a form: {e}") from e
    form = dict(pairs)
    if len(form) != len(pairs):
        raise UnreadableBodyError("a field appears twice")
    return form
