"""What reading the SNI of TLS to an IP address costs a relayed (non-social) connection.

In transparent mode every connection targets an address, so gatekeeper's `allow_hosts`
pattern (which matches IP literals) sends every TLS connection to the `tls_clienthello` hook
of `UnnamedConnections`, which relays it undecrypted when the SNI names a non-governed host.
An explicit CONNECT to the same address with the same SNI takes exactly that path, so this
compares, in one proxy and one run:

- by name: `CONNECT bank.example` (decided by `allow_hosts` alone, no gatekeeper code);
- by address: `CONNECT <bank's address>` with SNI bank.example (the hook relays it).

Each connection is new (CONNECT, TLS handshake with the site's own certificate, one GET);
the proxy's CPU time per connection comes from /proc. Bounded: `--connections` per run.
Needs root (the proxy gets its own /etc/hosts). Run: sudo .venv/bin/python bench/unnamed_tls.py
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support import configs  # noqa: E402
from support.fakesite import FakeSite  # noqa: E402
from support.proxy import GatekeeperProcess  # noqa: E402
from support.tls import shared_ca  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def one_connection(port: int, target: str, site: FakeSite, context: ssl.SSLContext) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"CONNECT {target}:{site.https_port} HTTP/1.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        with context.wrap_socket(sock, server_hostname=site.host) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {site.host}\r\nConnection: close\r\n\r\n"
                        .encode())
            while tls.recv(65536):
                pass


def run(proxy: GatekeeperProcess, target: str, site: FakeSite, count: int,
        clients: int) -> tuple[float, float]:
    """(connections per second, proxy CPU ms per connection)."""
    context = ssl.create_default_context(cafile=str(shared_ca().cert_path))
    assert proxy.process is not None
    cpu, started = cpu_seconds(proxy.process.pid), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for done in pool.map(lambda _: one_connection(proxy.listen_port, target, site, context),
                             range(count)):
            assert done is None
    wall = time.perf_counter() - started
    return count / wall, (cpu_seconds(proxy.process.pid) - cpu) * 1000 / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeSite(["bank.example"]) as bank:
        proxy = GatekeeperProcess(configs.write_config(Path(tmp) / "config"),
                                  Path(tmp) / "state", hosts={"bank.example": bank.address},
                                  name="bench-unnamed-tls").start()
        try:
            scenarios = {"by name (allow_hosts)": bank.host,
                         "by address, SNI (hook)": bank.address}
            for target in scenarios.values():
                run(proxy, target, bank, 50, args.clients)  # warm-up
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in scenarios}
            for _ in range(args.repeat):
                for name, target in scenarios.items():
                    results[name].append(run(proxy, target, bank, args.connections,
                                           args.clients))
            print(f"{args.connections} new TLS connections per run, {args.clients} clients, "
                  f"median of {args.repeat} interleaved runs")
            print("| path | connections/s | proxy CPU ms/connection |\n|---|---:|---:|")
            for name, runs in results.items():
                rate = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                print(f"| {name} | {rate:.0f} | {cpu:.2f} |")
            relayed = proxy.metric("gatekeeper_unnamed_connections_total", outcome="passthrough")
            print(f"relayed by the hook: {relayed:.0f}")
        finally:
            proxy.stop()


if __name__ == "__main__":
    main()
