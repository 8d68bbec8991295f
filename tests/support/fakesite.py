"""Fake upstream web sites: real HTTPS (and optionally plain HTTP) servers on loopback.

Each site gets its own loopback address (127.77.x.y) and free ports, a certificate from the
test CA for its host names, counts accepted TCP connections and records every request, so a
test can prove what reached the upstream and what did not.
"""

from __future__ import annotations

import itertools
import os
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support.tls import issue, pem_sha256

Headers = list[tuple[str, str]]
Reply = tuple[int, Headers, bytes | str]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the upstream received it."""

    scheme: str  # "https" or "http"
    method: str
    path: str  # with the query string
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def host(self) -> str:
        """The Host header without the port."""
        return (self.header("host") or "").rsplit(":", 1)[0]


Handler = Callable[[RecordedRequest], Reply]

# 127.X.P.Y: P from the process id, so parallel test runs on one machine rarely share one.
_addresses = (
    f"127.{77 + n // 250}.{os.getpid() % 250 + 1}.{n % 250 + 1}" for n in itertools.count()
)
_address_lock = threading.Lock()


def next_loopback_address() -> str:
    """A loopback address no other FakeSite in this process uses."""
    with _address_lock:
        return next(_addresses)


def default_reply(request: RecordedRequest) -> Reply:
    return 200, [("Content-Type", "text/html; charset=utf-8")], f"hello from {request.host}"


class FakeSite:
    """An HTTPS server for `hostnames` (optionally plain HTTP too) in background threads.

    `connections` counts accepted TCP connections (both schemes), `requests` lists every
    request, `cert_sha256` is the fingerprint of the certificate it presents. Use as a
    context manager or call `start()` / `stop()`.
    """

    def __init__(self, hostnames: list[str], *, plain_http: bool = False,
                 address: str | None = None, https_port: int = 0) -> None:
        self.hostnames = list(hostnames)
        self.address = address or next_loopback_address()
        self.cert_path, self.key_path = issue(self.hostnames)
        self.cert_sha256 = pem_sha256(self.cert_path)
        self.requests: list[RecordedRequest] = []
        self.routes: dict[tuple[str, str], Handler] = {}
        self._connections = 0
        self._lock = threading.Lock()
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.cert_path, self.key_path)
        tls.set_alpn_protocols(["http/1.1"])
        self._servers = [self._server("https", tls, https_port)]
        if plain_http:
            self._servers.append(self._server("http", None))
        self._threads: list[threading.Thread] = []

    # --- what tests use ---------------------------------------------------------------------

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def https_port(self) -> int:
        return self._servers[0].server_address[1]

    @property
    def http_port(self) -> int:
        if len(self._servers) < 2:
            raise RuntimeError("this FakeSite has no plain HTTP listener (plain_http=True)")
        return self._servers[1].server_address[1]

    @property
    def host(self) -> str:
        """The first host name: the one `url` uses by default."""
        return self.hostnames[0]

    def url(self, path: str = "/", *, scheme: str = "https", host: str | None = None) -> str:
        port = self.https_port if scheme == "https" else self.http_port
        return f"{scheme}://{host or self.host}:{port}{path}"

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Answer `method path` (path without the query) with `handler(request)`."""
        self.routes[(method.upper(), path)] = handler

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests whose path (without the query) is `path`."""
        with self._lock:
            return [r for r in self.requests if r.path.split("?", 1)[0] == path]

    def start(self) -> FakeSite:
        for server in self._servers:
            # A short poll interval: stop() (shutdown) waits for one poll per listener.
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True,
                                      name=f"fakesite-{self.host}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals --------------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> Handler:
        with self._lock:
            self.requests.append(request)
        key = (request.method, request.path.split("?", 1)[0])
        return self.routes.get(key, default_reply)

    def _count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _server(self, scheme: str, tls: ssl.SSLContext | None,
                port: int = 0) -> ThreadingHTTPServer:
        site = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, object]:
                sock, peer = super().get_request()
                site._count_connection()
                if tls is not None:  # handshake later, in the connection's own thread
                    sock = tls.wrap_socket(sock, server_side=True,
                                           do_handshake_on_connect=False)
                return sock, peer

        return Server((self.address, port), _handler_class(site, scheme))


def _handler_class(site: FakeSite, scheme: str) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 15  # idle keep-alive connections end, so threads do not pile up

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except (ssl.SSLError, ConnectionError, TimeoutError):
                self.close_connection = True

        def _serve(self) -> None:
            request = RecordedRequest(
                scheme=scheme,
                method=self.command,
                path=self.path,
                headers=list(self.headers.items()),
                body=self._read_body(),
            )
            status, headers, body = site._record(request)(request)
            payload = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _read_chunked(self) -> bytes:
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return RequestHandler
