"""gatekeeper.bodies: bounded decoding of every content coding, the announced body length,
the proxy's own form parser; gatekeeper.core.paths: how paths are compared."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest
import zstandard

from gatekeeper.bodies import (
    DRAIN_LIMIT,
    BodyTooLargeError,
    UnreadableBodyError,
    declared_length,
    decode_body,
    drainable,
    read_urlencoded_form,
)
from gatekeeper.core.paths import canonical_path, path_key

PLAIN = b"session_key=alice%40clinic.example&session_password=pw"
LIMIT = 1024


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "deflateraw": raw_deflate,
    "br": brotli.compress,
    "zstd": zstd,
}


@pytest.mark.parametrize(("encoding", "encoded"), [
    ("", PLAIN),
    ("identity", PLAIN),
    ("gzip", gzip.compress(PLAIN)),
    ("x-gzip", gzip.compress(PLAIN)),
    ("GZIP", gzip.compress(PLAIN)),
    ("deflate", zlib.compress(PLAIN)),
    ("deflate", raw_deflate(PLAIN)),
    ("deflateraw", raw_deflate(PLAIN)),
    ("br", brotli.compress(PLAIN)),
    ("zstd", zstd(PLAIN)),
    ("gzip, br", brotli.compress(gzip.compress(PLAIN))),
    ("zstd,deflate , gzip", gzip.compress(zlib.compress(zstd(PLAIN)))),
    ("identity, gzip, identity", gzip.compress(PLAIN)),
])
def test_each_coding_and_stacked_codings_decode(encoding: str, encoded: bytes) -> None:
    assert decode_body(encoded, encoding, LIMIT) == PLAIN


def test_repeated_header_values_stack_in_order() -> None:
    assert decode_body(brotli.compress(gzip.compress(PLAIN)), ["gzip", "br"], LIMIT) == PLAIN


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_the_limit_is_exact(coding: str) -> None:
    encode = ENCODERS[coding]
    assert decode_body(encode(b"a" * LIMIT), coding, LIMIT) == b"a" * LIMIT
    with pytest.raises(BodyTooLargeError):
        decode_body(encode(b"a" * (LIMIT + 1)), coding, LIMIT)


def test_a_raw_body_over_the_limit_is_too_large() -> None:
    assert decode_body(b"a" * LIMIT, "", LIMIT) == b"a" * LIMIT
    with pytest.raises(BodyTooLargeError):
        decode_body(b"a" * (LIMIT + 1), "", LIMIT)


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_a_bomb_stops_at_the_limit(coding: str) -> None:
    with pytest.raises(BodyTooLargeError):
        decode_body(ENCODERS[coding](b"\0" * (64 << 20)), coding, 1 << 20)


def test_a_stacked_bomb_stops_at_the_limit() -> None:
    inner = gzip.compress(b"\0" * (64 << 20))  # 64 KB: the outer layer is within the limit
    with pytest.raises(BodyTooLargeError):
        decode_body(brotli.compress(inner), "gzip, br", 1 << 20)


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_truncated_input_is_unreadable(coding: str) -> None:
    encoded = ENCODERS[coding](PLAIN * 20)
    with pytest.raises(UnreadableBodyError):
        decode_body(encoded[: len(encoded) // 2], coding, LIMIT)


@pytest.mark.parametrize("coding", ["deflate", "deflateraw", "br", "zstd", "gzip"])
def test_data_after_the_compressed_body_is_unreadable(coding: str) -> None:
    with pytest.raises(UnreadableBodyError):
        decode_body(ENCODERS[coding](PLAIN) + b"&session_key=me%40gmail.com", coding, LIMIT)


def test_every_gzip_member_and_zstd_frame_is_read() -> None:
    """As gzip and zstd readers do: nothing after the first one goes unchecked."""
    first, second = PLAIN[:20], PLAIN[20:]
    assert decode_body(gzip.compress(first) + gzip.compress(second), "gzip", LIMIT) == PLAIN
    assert decode_body(zstd(first) + zstd(second), "zstd", LIMIT) == PLAIN
    with pytest.raises(BodyTooLargeError):  # the limit counts every member
        decode_body(gzip.compress(b"a" * 600) + gzip.compress(b"a" * 600), "gzip", LIMIT)


@pytest.mark.parametrize(("encoding", "encoded"), [
    ("gzip", b"\x1f\x8b not gzip at all"),
    ("br", b"\xff\xff not brotli"),
    ("zstd", b"\x28\xb5\x2f\xfd garbage"),
    ("compress", PLAIN),
    ("utf-8", PLAIN),  # a codec name, not a content coding
    ("gzip, base64", PLAIN),
])
def test_unknown_or_corrupt_codings_are_unreadable(encoding: str, encoded: bytes) -> None:
    with pytest.raises(UnreadableBodyError):
        decode_body(encoded, encoding, LIMIT)


def test_an_empty_body_is_empty_in_every_coding() -> None:
    assert decode_body(b"", "gzip, br, zstd", LIMIT) == b""


class Headers(dict):
    def get_all(self, name: str) -> list[str]:
        return self.get(name, [])


@pytest.mark.parametrize(("method", "headers", "version", "length"), [
    ("POST", {"content-length": ["12"]}, "HTTP/1.1", 12),
    ("POST", {"content-length": [" 12 "]}, "HTTP/2.0", 12),
    ("POST", {}, "HTTP/1.1", 0),
    ("GET", {}, "HTTP/2.0", 0),
    ("POST", {}, "HTTP/2.0", None),  # a body may follow without a length
    ("POST", {"transfer-encoding": ["chunked"]}, "HTTP/1.1", None),
    ("POST", {"transfer-encoding": ["chunked"], "content-length": ["3"]}, "HTTP/1.1", None),
    ("POST", {"content-length": ["3", "3"]}, "HTTP/1.1", None),
    ("POST", {"content-length": ["-1"]}, "HTTP/1.1", None),
    ("POST", {"content-length": ["１２"]}, "HTTP/1.1", None),  # full-width digits
])
def test_declared_length(method: str, headers: dict, version: str, length: int | None) -> None:
    assert declared_length(method, Headers(headers), version) == length


def test_only_small_announced_bodies_are_drained() -> None:
    assert drainable(0) and drainable(DRAIN_LIMIT)
    assert not drainable(DRAIN_LIMIT + 1) and not drainable(None)


def test_the_portal_form_parser() -> None:
    assert read_urlencoded_form(b"csrf=1.ab&justification=caf%C3%A9+ok&return_to=",
                                100) == {"csrf": "1.ab", "justification": "café ok",
                                         "return_to": ""}
    assert read_urlencoded_form(b"", 100) == {}
    with pytest.raises(BodyTooLargeError):
        read_urlencoded_form(b"a=" + b"b" * 100, 100)
    for odd in (b"csrf=a&csrf=b", b"a=%ff", b"a=b&&c", b"a=b&" * 101, b"\xff=1"):
        with pytest.raises(UnreadableBodyError):
            read_urlencoded_form(odd, 1000)


@pytest.mark.parametrize(("path", "canonical"), [
    ("/", "/"),
    ("", "/"),
    ("/a/b", "/a/b"),
    ("//a//b/", "/a/b/"),
    ("/./a/./b", "/a/b"),
    ("/x/../a/b", "/a/b"),
    ("/../../a", "/a"),
    ("/a/b/..", "/a/"),
    ("/a;x/b;jsessionid=1", "/a/b"),
    ("/%61/%2E%2E/b", "/b"),
    ("/a%2Fb", "/a/b"),
    ("/a%252Fb", "/a/b"),
    ("/a\\b", "/a/b"),
    ("/A/B", "/A/B"),
])
def test_canonical_path(path: str, canonical: str) -> None:
    assert canonical_path(path) == canonical


def test_path_key_ignores_case_and_a_trailing_slash() -> None:
    assert path_key("/.Well-Known//gatekeeper/Request-Access/") == (
        "/.well-known/gatekeeper/request-access")
    assert path_key("/") == "/"
