"""A raw HTTP/1.1 client through the proxy, for requests `requests` will not send: two
Content-Type headers, a 100 MB announced body, a chunked body that never ends. Also the
proxy's peak memory (VmHWM), for the tests that a body cannot fill it."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
from collections.abc import Iterable
from pathlib import Path

import h2.config
import h2.connection
import h2.events

Headers = list[tuple[str, str]]


def tunnel(proxy, host: str, port: int, *, user: str = "alice", password: str = "pw",
           timeout: float = 10.0, alpn: str = "http/1.1") -> ssl.SSLSocket:
    """A TLS connection to `host:port` inside a CONNECT tunnel through `proxy` (Basic proxy
    auth as `user`), trusting the proxy's CA, offering `alpn`."""
    sock = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=timeout)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 f"Proxy-Authorization: Basic {auth}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    assert head.startswith(b"HTTP/1.1 200"), head
    context = ssl.create_default_context(cafile=str(proxy.ca_cert))
    context.set_alpn_protocols([alpn])
    return context.wrap_socket(sock, server_hostname=host)


def send_head(sock: socket.socket, method: str, path: str, host: str, headers: Headers) -> None:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers)]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def request(sock: socket.socket, method: str, path: str, host: str, headers: Headers,
            body: bytes = b"") -> http.client.HTTPResponse:
    """One request with a fixed body (Content-Length added unless given); its response."""
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        headers = [*headers, ("Content-Length", str(len(body)))]
    send_head(sock, method, path, host, headers)
    sock.sendall(body)
    return response(sock)


def response(sock: socket.socket) -> http.client.HTTPResponse:
    reply = http.client.HTTPResponse(sock)
    reply.begin()
    reply.read()
    return reply


def send_until_closed(sock: socket.socket, chunks: Iterable[bytes]) -> int:
    """Send `chunks` until they run out or the proxy closes the connection; bytes sent."""
    sent = 0
    try:
        for chunk in chunks:
            sock.sendall(chunk)
            sent += len(chunk)
    except (ConnectionError, ssl.SSLError, TimeoutError):
        pass
    return sent


def closed_without_answer(sock: socket.socket) -> bool:
    """True when the proxy ended the connection without a response."""
    try:
        return sock.recv(1) == b""
    except (ConnectionError, ssl.SSLError):
        return True


def h2_post(sock: ssl.SSLSocket, host: str, path: str, headers: Headers,
            body: bytes) -> int | None:
    """One HTTP/2 POST on a TLS socket that negotiated h2; the response status, or None when
    the proxy reset the stream or closed the connection without one."""
    assert sock.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    pseudo = [(":method", "POST"), (":path", path), (":authority", host), (":scheme", "https")]
    conn.send_headers(1, [*pseudo, *((k.lower(), v) for k, v in headers)])
    conn.send_data(1, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    status = None
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            return status
        if not data:
            return status
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset |
                            h2.events.ConnectionTerminated):
                return status
        sock.sendall(conn.data_to_send())


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    assert "gatekeeper" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    kib = next(int(line.split()[1]) for line in status.splitlines()
               if line.startswith("VmHWM:"))
    return kib / 1024
