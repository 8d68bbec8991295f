"""Bombs: a few hundred compressed bytes that expand to hundreds of MiB, sent where the
proxy reads a body (a checked login, the request-access form). Each must be refused, and the
proxy's peak memory (VmHWM) must stay within 64 MiB of what it was after a warm-up."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable

import brotli
import pytest
import zstandard
from support import configs
from support.rawhttp import peak_rss_mib

pytestmark = pytest.mark.e2e  # starts a real proxy process

TIMEOUT = 30
LOGIN = "/checkpoint/lg/login-submit"
REQUEST_ACCESS = "/.well-known/gatekeeper/request-access"
FORM = "application/x-www-form-urlencoded"
BOMB_MIB = 256  # what each bomb expands to
WARM_MIB = 2  # the warm-up's small bombs: every decoder runs once before the baseline
HEADROOM_MIB = 64
LINKEDIN = {
    "name": "LinkedIn",
    "domains": ["linkedin.com", "licdn.com"],
    "logins": [{"path": "^/checkpoint/lg/login-submit", "fields": ["session_key"]}],
}
PREFIX = b"session_key=alice%40clinic.example&pad="


def _streamed(compress: Callable[[bytes], bytes], finish: Callable[[], bytes],
              mib: int) -> bytes:
    zeros = b"0" * (1 << 20)
    return compress(PREFIX) + b"".join(compress(zeros) for _ in range(mib)) + finish()


def gzip_bomb(mib: int, wbits: int = 31) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return _streamed(compressor.compress, compressor.flush, mib)


def brotli_bomb(mib: int) -> bytes:
    compressor = brotli.Compressor(quality=5)
    return _streamed(compressor.process, compressor.finish, mib)


def zstd_bomb(mib: int) -> bytes:
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    return _streamed(compressor.compress, compressor.flush, mib)


BOMBS: dict[str, tuple[str, Callable[[int], bytes]]] = {
    "gzip": ("gzip", gzip_bomb),
    "deflate": ("deflate", functools.partial(gzip_bomb, wbits=15)),
    "raw deflate": ("deflate", functools.partial(gzip_bomb, wbits=-15)),
    "brotli": ("br", brotli_bomb),
    "zstd": ("zstd", zstd_bomb),
    # brotli applied over gzip: the inner bomb is a few hundred KB, the outer one 1 KB
    "stacked gzip then brotli": ("gzip, br", lambda mib: brotli.compress(gzip_bomb(mib))),
}


@functools.cache
def bomb(kind: str, mib: int) -> bytes:
    return BOMBS[kind][1](mib)


@pytest.fixture
def proxy(gk, tmp_path):
    config = configs.write_config(tmp_path / "bombs",
                                  services=configs.services_doc(linkedin=LINKEDIN))
    return gk(config, args=["--set", "proxyauth=any"])


def _post_login(session, site, kind: str, mib: int):
    return session.post(site.url(LOGIN), data=bomb(kind, mib), timeout=TIMEOUT,
                        headers={"Content-Type": FORM, "Content-Encoding": BOMBS[kind][0]})


def _post_form(session, site, kind: str, mib: int):
    return session.post(site.url(REQUEST_ACCESS), data=bomb(kind, mib), timeout=TIMEOUT,
                        headers={"Content-Type": FORM, "Content-Encoding": BOMBS[kind][0],
                                 "Accept": "text/html"})


def _baseline(proxy, warm_up: Callable[[], None]) -> float:
    warm_up()
    return peak_rss_mib(proxy.process.pid)


@pytest.mark.parametrize("kind", list(BOMBS))
def test_login_bomb_is_unverifiable_and_memory_stays_flat(proxy, fake_sites, kind):
    linkedin = fake_sites.linkedin
    alice = proxy.session("alice", "pw")

    def warm_up() -> None:
        company = alice.post(linkedin.url(LOGIN), data={"session_key": "alice@clinic.example"},
                             timeout=TIMEOUT)
        assert company.status_code == 200
        for other in BOMBS:
            assert _post_login(alice, linkedin, other, WARM_MIB).status_code == 403

    idle = _baseline(proxy, warm_up)
    reply = _post_login(alice, linkedin, kind, BOMB_MIB)
    assert reply.status_code == 403
    assert reply.headers["X-Gatekeeper-Reason"] == "unverifiable_login"
    assert len(linkedin.requests_to(LOGIN)) == 1  # the warm-up's company login only
    peak = peak_rss_mib(proxy.process.pid)
    assert peak - idle <= HEADROOM_MIB, f"peak {peak:.0f} MiB, idle {idle:.0f} MiB"
    assert proxy.metric("gatekeeper_logins_total", service="linkedin",
                        result="unverifiable") == len(BOMBS) + 1


@pytest.mark.parametrize("kind", list(BOMBS))
def test_request_access_bomb_is_refused_and_memory_stays_flat(proxy, fake_sites, kind):
    facebook = fake_sites.facebook
    bob = proxy.session("bob", "pw")

    def warm_up() -> None:
        for other in BOMBS:
            assert _post_form(bob, facebook, other, WARM_MIB).status_code in (413, 415)

    idle = _baseline(proxy, warm_up)
    reply = _post_form(bob, facebook, kind, BOMB_MIB)
    assert reply.status_code in (413, 415)
    assert reply.headers["X-Gatekeeper-Portal"] in ("invalid_form", "body_too_large")
    peak = peak_rss_mib(proxy.process.pid)
    assert peak - idle <= HEADROOM_MIB, f"peak {peak:.0f} MiB, idle {idle:.0f} MiB"
    assert facebook.connections == 0


def test_login_json_structure_bomb_stays_within_memory(proxy, fake_sites):
    """No compression: 1 MiB of `[{},{},...]` (the login limit) parses into 350,000 Python
    objects. The parser's output is bounded by the body limit: about 32 MiB."""
    linkedin = fake_sites.linkedin
    alice = proxy.session("alice", "pw")
    body = (b"[" + b"{}," * 349_000 + b'{"session_key": "alice@clinic.example"}]')
    assert len(body) <= 1 << 20

    def warm_up() -> None:
        small = b"[" + b"{}," * 1000 + b'{"session_key": "alice@clinic.example"}]'
        assert alice.post(linkedin.url(LOGIN), data=small, timeout=TIMEOUT,
                          headers={"Content-Type": "application/json"}).status_code == 200

    idle = _baseline(proxy, warm_up)
    reply = alice.post(linkedin.url(LOGIN), data=body, timeout=TIMEOUT,
                       headers={"Content-Type": "application/json"})
    assert reply.status_code == 200  # a company login, however odd its shape
    peak = peak_rss_mib(proxy.process.pid)
    assert peak - idle <= HEADROOM_MIB, f"peak {peak:.0f} MiB, idle {idle:.0f} MiB"
