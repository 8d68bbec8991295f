"""Network namespaces for gateway tests: client -- gateway -- internet, joined by veth pairs.

Every name carries a per-run tag, every address is in a TEST-NET range inside namespaces the
test made, and `topology()` removes it all (processes, namespaces and with them the veths,
`/etc/netns/<name>/` files) even when the test fails.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h: where a redirected connection was going
COMMAND_TIMEOUT_SECONDS = 30

# TEST-NET addresses, only ever assigned inside the namespaces made here.
LAN_NETWORK = "192.0.2.0/24"
CLIENT, EXEMPT_CLIENT, GATEWAY_LAN = "192.0.2.10", "192.0.2.20", "192.0.2.1"
UNKNOWN_CLIENT = "192.0.2.30"  # a LAN address no test lists anywhere
GATEWAY_WAN, INTERNET, INTERNET_OTHER = "198.51.100.1", "198.51.100.10", "198.51.100.11"
NETNS_ETC = Path("/etc/netns")  # `ip netns exec NAME` bind-mounts NETNS_ETC/NAME/* over /etc/*
T = TypeVar("T")

_counter = itertools.count()


def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"needs {' and '.join(missing)} (Debian iproute2, nftables)"
    return None


class Namespace:
    """One named network namespace; processes and sockets can be made inside it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.processes: list[subprocess.Popen[Any]] = []

    def command(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside the namespace, output captured as text."""
        return subprocess.run(
            self.command(args), input=stdin, capture_output=True, text=True,
            timeout=COMMAND_TIMEOUT_SECONDS, check=check,
        )

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a long-running process inside the namespace; it is stopped at cleanup."""
        process = subprocess.Popen(self.command(args), **kwargs)
        self.processes.append(process)
        return process

    def call(self, function: Callable[[], T]) -> T:
        """`function()` run by a thread that entered this namespace: the sockets it makes
        (listening ones included, with the connections they accept) live here."""
        made: dict[str, Any] = {}

        def enter_and_call() -> None:
            try:
                fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
                try:
                    if _libc().setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
                made["value"] = function()
            except Exception as e:
                made["error"] = e

        thread = threading.Thread(target=enter_and_call)
        thread.start()
        thread.join()
        if "error" in made:
            raise made["error"]
        return made["value"]

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """An IPv4 socket living in this namespace."""
        return self.call(lambda: socket.socket(socket.AF_INET, kind))

    def write_etc(self, filename: str, text: str) -> Path:
        """A file that replaces /etc/`filename` for processes started in this namespace
        (`ip netns exec` mounts it), such as a hosts file; removed with the topology."""
        path = NETNS_ETC / self.name / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o644)
        return path

    def stop_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@dataclass
class Topology:
    """client (192.0.2.10, .20) -- gateway (192.0.2.1 | 198.51.100.1) -- internet (.10)."""

    client: Namespace
    gateway: Namespace
    internet: Namespace
    lan_interface: str  # the gateway's LAN-side veth
    wan_interface: str
    namespaces: list[Namespace] = field(default_factory=list)


@contextmanager
def topology() -> Iterator[Topology]:
    """Build the three namespaces, forwarding on in the gateway; remove everything after."""
    tag = f"{os.getpid():x}{next(_counter)}"
    names = {role: f"gk-{tag}-{role}" for role in ("client", "gateway", "internet")}
    spaces = {role: Namespace(name) for role, name in names.items()}
    topo = Topology(
        client=spaces["client"], gateway=spaces["gateway"], internet=spaces["internet"],
        lan_interface=f"gkl{tag}", wan_interface=f"gkw{tag}", namespaces=[],
    )
    try:
        for space in spaces.values():
            _ip("netns", "add", space.name)
            topo.namespaces.append(space)
            space.run(["ip", "link", "set", "lo", "up"])
        _veth(topo.client, f"gkc{tag}", topo.gateway, topo.lan_interface)
        _veth(topo.internet, f"gki{tag}", topo.gateway, topo.wan_interface)
        for address in (CLIENT, EXEMPT_CLIENT, UNKNOWN_CLIENT):
            topo.client.run(["ip", "addr", "add", f"{address}/24", "dev", f"gkc{tag}"])
        topo.client.run(["ip", "route", "add", "default", "via", GATEWAY_LAN])
        topo.gateway.run(["ip", "addr", "add", f"{GATEWAY_LAN}/24", "dev", topo.lan_interface])
        topo.gateway.run(["ip", "addr", "add", f"{GATEWAY_WAN}/24", "dev", topo.wan_interface])
        for address in (INTERNET, INTERNET_OTHER):
            topo.internet.run(["ip", "addr", "add", f"{address}/24", "dev", f"gki{tag}"])
        topo.internet.run(["ip", "route", "add", "default", "via", GATEWAY_WAN])
        topo.gateway.run(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
        yield topo
    finally:
        for space in topo.namespaces:
            space.stop_processes()
        for space in topo.namespaces:
            _ip("netns", "del", space.name, check=False)
            shutil.rmtree(NETNS_ETC / space.name, ignore_errors=True)


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], capture_output=True, timeout=COMMAND_TIMEOUT_SECONDS, check=check)


def _veth(left: Namespace, left_name: str, right: Namespace, right_name: str) -> None:
    _ip("link", "add", left_name, "netns", left.name, "type", "veth",
        "peer", "name", right_name, "netns", right.name)
    left.run(["ip", "link", "set", left_name, "up"])
    right.run(["ip", "link", "set", right_name, "up"])




def original_destination(conn: socket.socket) -> str:
    """`host:port` a connection was addressed to before nftables redirected it."""
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack_from("!H", raw, 2)[0]
    return f"{socket.inet_ntoa(raw[4:8])}:{port}"


def _greeting(name: str, conn: socket.socket) -> bytes:
    """`name host:port` where host:port is where the client was going (redirects included)."""
    try:
        target = original_destination(conn)
    except OSError:  # no NAT entry: the connection came here directly
        host, port = conn.getsockname()[:2]
        target = f"{host}:{port}"
    return f"{name} {target}\n".encode()


class Listeners:
    """TCP greeters and UDP echoers inside one namespace, recording every peer that arrives."""

    def __init__(
        self, ns: Namespace, host: str, tcp_ports: Sequence[int], udp_ports: Sequence[int],
        name: str,
    ) -> None:
        self.name = name
        self.tcp: dict[int, list[str]] = {port: [] for port in tcp_ports}
        self.udp: dict[int, list[str]] = {port: [] for port in udp_ports}
        self._stop = threading.Event()
        self._threads = []
        for port in tcp_ports:
            server = ns.socket(socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((host, port))
            server.listen(16)
            self._threads.append(threading.Thread(target=self._greet, args=(server, port)))
        for port in udp_ports:
            server = ns.socket(socket.SOCK_DGRAM)
            server.bind((host, port))
            self._threads.append(threading.Thread(target=self._echo, args=(server, port)))
        for thread in self._threads:
            thread.start()

    def _greet(self, server: socket.socket, port: int) -> None:
        with server:
            server.settimeout(0.1)
            while not self._stop.is_set():
                try:
                    conn, peer = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    self.tcp[port].append(peer[0])
                    conn.sendall(_greeting(self.name, conn))

    def _echo(self, server: socket.socket, port: int) -> None:
        with server:
            server.settimeout(0.1)
            while not self._stop.is_set():
                try:
                    _, peer = server.recvfrom(2048)
                except TimeoutError:
                    continue
                self.udp[port].append(peer[0])
                server.sendto(f"{self.name} udp {port}\n".encode(), peer)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


def tcp_greeting(
    ns: Namespace, host: str, port: int, *, source: str | None = None, timeout: float = 3.0
) -> str:
    """Connect from `ns` and return the first line the server sends; raises OSError."""
    with ns.socket(socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        if source:
            conn.bind((source, 0))
        conn.connect((host, port))
        return conn.makefile("r").readline().strip()


def udp_exchange(ns: Namespace, host: str, port: int, *, timeout: float = 3.0) -> str:
    """Send one datagram from `ns` and return the reply; an ICMP reject raises
    ConnectionRefusedError, silence TimeoutError."""
    with ns.socket(socket.SOCK_DGRAM) as conn:
        conn.settimeout(timeout)
        conn.connect((host, port))
        conn.send(b"ping")
        return conn.recv(2048).decode().strip()

