"""Benchmarks: gatekeeper against plain mitmdump, measured in the same run on this machine.

    sudo .venv/bin/python bench/run.py [--requests N] [--repeat R] [--reloads N] [--out FILE]
    sudo .venv/bin/python bench/run.py --smoke      # a few seconds: checks it yields numbers

Needs root (a private mount namespace maps the fake host names in /etc/hosts for the
proxies), Debian's `nginx` (the upstream, TLS and plain HTTP on loopback) and `hey` (the load
generator). Every load is bounded by a request count; everything listens on 127.0.0.1 only.

What is measured (every proxy is started first and left idle while another is loaded, and
the runs are interleaved round by round, so a noisy neighbour slows all of them alike; each
figure is the median of --repeat runs, or with --pick best the best of them):
- throughput: requests/s and p99 latency (hey, keep-alive clients) for HTTPS and plain HTTP
  to a social site with a grant (intercepted, decided, forwarded) against plain mitmdump
  forwarding the same; a blocked social request (403 by the proxy) against mitmdump's
  `block_list`; HTTPS to a non-social site (relayed undecrypted) against mitmdump's
  `ignore_hosts`.
- start to listening: from starting the process to its proxy port accepting connections
  (wall clock, and the CPU time the process used until then).
- idle memory (RSS) of each proxy.
- reload: from an atomic save of approvals.yaml (a grant appended or removed, as
  `gatekeeper-approve` does) to the first request decided by the new policy, at 100
  employees and at 10,000 employees (each with a device address, 5 grants each: 50,000),
  and the RSS after the first and after --reloads reloads of the large file.
- the pure decision function alone (no proxy), in nanoseconds per call.
- `serve --workers 2` against `--workers 1` (bench/workers.py, case `workers`).
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import http.client
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from configs import approvals as generated_approvals  # bench/configs.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
UPSTREAM = "127.0.0.1"
SOCIAL = "www.facebook.com"
OTHER = "bank.example"

# gatekeeper requires mitmproxy's lazy strategy (a blocked request opens no upstream
# connection); the controls run mitmdump with it too.
LAZY = ("--set", "connection_strategy=lazy")

BENCH_EMPLOYEE = """\
  bench:
    email: bench@clinic.example
    addresses: [127.0.0.1]
"""
BENCH_GRANT = """\
  - employee: bench
    service: facebook
    approved_by: it.lead@clinic.example
    approved_on: 2026-01-01
"""

# The baselines (measured before this work, same machine type), for the report.
BASELINE = {
    "HTTPS social, allowed (intercepted)": "407 rps vs mitmdump 481 (0.85x)",
    "HTTP social, allowed (intercepted)": "637 rps vs mitmdump 748 (0.85x)",
    "HTTPS social, blocked (403 by proxy)": "340 rps vs block_list 409 (0.83x)",
    "start to listening": "1.57 s vs mitmdump 0.53 s (3.0x)",
    "reload, 100 employees": "0.22 s median",
    "reload, 10,000 employees": "2.8 s median (without addresses); load_policy with "
                                "addresses 71 s; 50,000 grants refused (4 MiB cap)",
    "RSS after reloads": "195 MiB after 14 reloads, 78 MiB idle at start",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float = 60.0,
               interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError("not ready in time")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Nginx:
    """The upstream: 1 KiB static responses over TLS and plain HTTP."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.https_port, self.http_port = free_port(), free_port()
        cert, key = work / "site.crt", work / "site.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", f"/CN={OTHER}", "-keyout", str(key),
             "-out", str(cert), "-addext", f"subjectAltName=DNS:{OTHER},DNS:{SOCIAL}"],
            check=True, capture_output=True,
        )
        (work / "www").mkdir()
        (work / "www" / "index.html").write_bytes(b"x" * 1024)
        self.conf = work / "nginx.conf"
        self.conf.write_text(textwrap.dedent(f"""\
            worker_processes 1;
            pid {work}/nginx.pid;
            error_log {work}/nginx-error.log;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                client_body_temp_path {work}/tmp;
                keepalive_requests 100000;
                server {{
                    listen {UPSTREAM}:{self.https_port} ssl;
                    listen {UPSTREAM}:{self.http_port};
                    ssl_certificate {cert};
                    ssl_certificate_key {key};
                    root {work}/www;
                }}
            }}
        """))

    def _nginx(self, *extra: str) -> None:
        subprocess.run(["nginx", "-c", str(self.conf), "-e", str(self.work / "nginx-error.log"),
                        *extra], check=not extra)

    def __enter__(self) -> Nginx:
        self._nginx()
        wait_until(lambda: port_open(self.https_port))
        return self

    def __exit__(self, *exc: object) -> None:
        self._nginx("-s", "stop")


class Proxy:
    """A proxy process in its own mount namespace, so the fake names resolve to loopback."""

    def __init__(self, name: str, argv: list[str], hosts_file: Path, port: int) -> None:
        self.name = name
        self.port = port
        script = f"mount --bind {hosts_file} /etc/hosts && exec \"$@\""
        self.argv = ["unshare", "--mount", "--propagation", "private", "--",
                     "sh", "-c", script, "sh", *argv]
        self.process: subprocess.Popen[bytes] | None = None
        self._spawned = 0.0
        self.started_in = 0.0  # seconds from start to the proxy port accepting
        self.started_cpu = 0.0  # CPU seconds (user + system) the process used until then

    def start(self, timeout: float = 120.0) -> Proxy:
        return self.spawn().wait_listening(timeout)

    def spawn(self) -> Proxy:
        self._spawned = time.perf_counter()
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        return self

    def wait_listening(self, timeout: float = 120.0) -> Proxy:
        wait_until(self._listening, timeout, interval=0.005)
        self.started_in = time.perf_counter() - self._spawned
        self.started_cpu = self.cpu_seconds()
        return self

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {self.process.stderr.read().decode()}")
        return port_open(self.port)

    def cpu_seconds(self) -> float:
        """User + system CPU time the proxy has used so far: on a shared machine a steadier
        measure of its cost than requests/s, which also counts the neighbours' load."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def running(proxy: Proxy) -> Iterator[Proxy]:
    try:
        yield proxy.start()
    finally:
        proxy.stop()


@dataclass
class Bench:
    """One benchmark run: where things are, and what was measured."""

    args: argparse.Namespace
    work: Path
    hosts: Path
    nginx: Nginx
    # (scenario, proxy) -> per run: requests/s, proxy CPU ms per request, p99 ms, statuses
    throughput: dict[tuple[str, str], list[tuple[float, float, float, str]]] = field(
        default_factory=dict)
    startup: dict[str, list[float]] = field(default_factory=dict)
    startup_cpu: dict[str, list[float]] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    reload: dict[str, list[float]] = field(default_factory=dict)
    reload_rss: dict[str, float] = field(default_factory=dict)
    workers: dict[str, list] = field(default_factory=dict)  # bench/workers.py: 1 vs 2 workers

    def gatekeeper(self, name: str, approvals: str, *extra: str) -> Proxy:
        config = self.work / f"config-{name}"
        config.mkdir(exist_ok=True)
        shutil.copy(ROOT / "config" / "services.yaml", config / "services.yaml")
        (config / "approvals.yaml").write_text(approvals)
        port = free_port()
        argv = [str(BIN / "gatekeeper"), "serve", "--config-dir", str(config),
                "--state-dir", str(self.work / f"state-{name}"), "--listen-port", str(port),
                "--metrics-port", "-1", "--log-level", "warning",
                # the upstreams are on loopback, which the proxy otherwise refuses
                "--set", "gatekeeper_allowed_destinations=127.0.0.0/8",
                "--set", "ssl_insecure=true", *extra]
        return Proxy(f"gatekeeper ({name})", argv, self.hosts, port)

    def mitmdump(self, name: str, *extra: str) -> Proxy:
        port = free_port()
        argv = [str(BIN / "mitmdump"), "-q", "--listen-host", "127.0.0.1",
                "--listen-port", str(port), "--set", "ssl_insecure=true",
                "--set", f"confdir={self.work / 'mitmdump-ca'}", *extra]
        return Proxy(f"mitmdump ({name})", argv, self.hosts, port)


def small_approvals(granted: bool) -> str:
    return generated_approvals(100, 5).replace("employees:\n", "employees:\n" + BENCH_EMPLOYEE) + (
        BENCH_GRANT if granted else "")


def hey(url: str, proxy_port: int, requests: int, concurrency: int,
        keepalive: bool = True) -> tuple[float, float, float, str]:
    argv = ["hey", "-n", str(requests), "-c", str(concurrency), "-t", "20",
            "-x", f"http://127.0.0.1:{proxy_port}"]
    if not keepalive:
        argv.append("-disable-keepalive")
    out = subprocess.run([*argv, url], check=True, capture_output=True, text=True).stdout
    if "99%" not in out:
        raise RuntimeError(f"hey {url} through port {proxy_port} got no answers:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = float(re.search(r"50%+ in ([\d.]+) secs", out).group(1)) * 1000
    p99 = float(re.search(r"99%+ in ([\d.]+) secs", out).group(1)) * 1000
    statuses = ", ".join(
        f"{code}x{count}" for code, count in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    )
    return rps, p50, p99, statuses


def measure_throughput(bench: Bench) -> None:
    """Every (scenario, proxy) pair, interleaved round by round, all proxies up at once."""
    n = bench.nginx
    https_social = f"https://{SOCIAL}:{n.https_port}/"
    http_social = f"http://{SOCIAL}:{n.http_port}/"
    https_other = f"https://{OTHER}:{n.https_port}/"
    proxies = {
        "mitmdump": bench.mitmdump("plain"),
        "mitmdump block_list": bench.mitmdump(
            "block_list", "--set", f"block_list=:~d {re.escape(SOCIAL)}:403"),
        "mitmdump ignore_hosts": bench.mitmdump(
            "ignore_hosts", "--set", f"ignore_hosts={re.escape(OTHER)}"),
        "gatekeeper granted": bench.gatekeeper("granted", small_approvals(True)),
        "gatekeeper not granted": bench.gatekeeper("blocked", small_approvals(False)),
    }
    if bench.args.noop_hooks:  # the controls: gatekeeper's connection strategy, then its hooks
        proxies["mitmdump lazy"] = bench.mitmdump("lazy", *LAZY)
        proxies["mitmdump lazy + no-op hooks"] = bench.mitmdump(
            "noop_hooks", *LAZY, "-s", str(ROOT / "bench" / "noop_hooks.py"))
    pairs = [
        ("HTTPS social, allowed (intercepted)", https_social, "gatekeeper granted"),
        ("HTTPS social, allowed (intercepted)", https_social, "mitmdump"),
        ("HTTP social, allowed (intercepted)", http_social, "gatekeeper granted"),
        ("HTTP social, allowed (intercepted)", http_social, "mitmdump"),
        ("HTTPS social, blocked (403 by proxy)", https_social, "gatekeeper not granted"),
        ("HTTPS social, blocked (403 by proxy)", https_social, "mitmdump block_list"),
        ("HTTPS non-social (passthrough)", https_other, "gatekeeper granted"),
        ("HTTPS non-social (passthrough)", https_other, "mitmdump ignore_hosts"),
    ]
    if bench.args.noop_hooks:
        pairs[2:2] = [("HTTPS social, allowed (intercepted)", https_social, control)
                      for control in ("mitmdump lazy", "mitmdump lazy + no-op hooks")]
        pairs[6:6] = [("HTTP social, allowed (intercepted)", http_social, control)
                      for control in ("mitmdump lazy", "mitmdump lazy + no-op hooks")]
    with ExitStack() as stack:
        for proxy in proxies.values():  # started side by side: only their start overlaps
            stack.callback(proxy.stop)
            proxy.spawn()
        for name, proxy in proxies.items():
            proxy.wait_listening()
            bench.rss[name] = proxy.rss_mib()  # idle: no request yet
        for _, url, name in pairs:  # warm-up: certificates generated, connections opened
            subprocess.run(["hey", "-n", "100", "-c", str(bench.args.concurrency),
                            "-x", f"http://127.0.0.1:{proxies[name].port}", url],
                           check=True, capture_output=True)
        for round_ in range(bench.args.repeat):
            # every other round in reverse, so that neither proxy of a pair always goes first
            for scenario, url, name in pairs if round_ % 2 == 0 else pairs[::-1]:
                before = proxies[name].cpu_seconds()
                rps, _, p99, statuses = hey(url, proxies[name].port, bench.args.requests,
                                            bench.args.concurrency)
                cpu_ms = (proxies[name].cpu_seconds() - before) / bench.args.requests * 1000
                bench.throughput.setdefault((scenario, name), []).append(
                    (rps, cpu_ms, p99, statuses))
                print(f"round {round_ + 1}: {scenario:40} {name:24} {rps:7.0f} req/s "
                      f"p99 {p99:6.1f} ms cpu {cpu_ms:.2f} ms/req [{statuses}]", flush=True)


def measure_startup(bench: Bench) -> None:
    """Start to listening, alternating the two, --repeat times each."""
    for _ in range(bench.args.repeat):
        for name, proxy in (("mitmdump", bench.mitmdump("startup")),
                            ("gatekeeper", bench.gatekeeper("startup", small_approvals(True)))):
            with running(proxy):
                bench.startup.setdefault(name, []).append(proxy.started_in)
                bench.startup_cpu.setdefault(name, []).append(proxy.started_cpu)
    for label, times in (("start to listening", bench.startup),
                         ("CPU to listening", bench.startup_cpu)):
        print(f"{label}:", {k: [round(v, 2) for v in vs] for k, vs in times.items()}, flush=True)


class ProxiedClient:
    """One keep-alive HTTPS connection to the social site through the proxy."""

    def __init__(self, proxy_port: int, https_port: int) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.connection = http.client.HTTPSConnection("127.0.0.1", proxy_port, timeout=30,
                                                      context=context)
        self.connection.set_tunnel(SOCIAL, https_port)

    def status(self) -> int:
        self.connection.request("GET", "/", headers={"Accept": "application/json"})
        response = self.connection.getresponse()
        response.read()
        return response.status

    def close(self) -> None:
        self.connection.close()


def save_atomically(path: Path, text: str) -> float:
    """What editors and `gatekeeper approve` do: a temporary file renamed over the original.
    Returns the moment of the rename (the save, as the proxy can see it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    saved = time.perf_counter()
    os.replace(tmp, path)
    return saved


def measure_reload(bench: Bench, label: str, employees: int, reloads: int,
                   watch_memory: bool) -> None:
    """Save, then ask through the proxy until the decision changes; time from the save."""
    base = generated_approvals(employees, 5).replace("employees:\n",
                                                     "employees:\n" + BENCH_EMPLOYEE)
    proxy = bench.gatekeeper(f"reload-{employees}", base)
    path = bench.work / f"config-reload-{employees}" / "approvals.yaml"
    latencies: list[float] = []
    with running(proxy):
        client = ProxiedClient(proxy.port, bench.nginx.https_port)
        try:
            assert client.status() == 403
            for i in range(reloads):
                granted = i % 2 == 0
                expected = 200 if granted else 403
                saved = save_atomically(path, base + BENCH_GRANT if granted else base)
                deadline = saved + 30
                while client.status() != expected:
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"reload {i} not in force after 30 s")
                latencies.append(time.perf_counter() - saved)
                if watch_memory and i == 0:
                    bench.reload_rss["after the first reload"] = proxy.rss_mib()
        finally:
            client.close()
        if watch_memory:
            bench.reload_rss[f"after {reloads} reloads"] = proxy.rss_mib()
    bench.reload[label] = latencies
    print(f"reload, {label}: median {statistics.median(latencies) * 1000:.0f} ms over "
          f"{len(latencies)} saves", flush=True)


def decision_ns() -> dict[str, float]:
    """The pure decision, per call, on a realistic host mix."""
    from gatekeeper.config.loader import load_policy
    from gatekeeper.core.decision import decide

    policy = load_policy(ROOT / "config")
    today = dt.date.today()
    cases = {
        "governed, allowed": ("alice", ("www.linkedin.com", "www.linkedin.com", None)),
        "governed, blocked": ("alice", ("static.xx.fbcdn.net", None, "static.xx.fbcdn.net")),
        "not governed (plain HTTP)": ("alice", ("a.b.portal.example.org", None, None)),
    }
    result = {}
    for name, (employee, hosts) in cases.items():
        number = 20_000
        seconds = min(timeit.repeat(lambda e=employee, h=hosts: decide(policy, e, h, today),
                                    number=number, repeat=3))
        result[name] = seconds / number * 1e9
    return result


def compile_package() -> None:
    """Compile gatekeeper's modules to bytecode, as an installed gatekeeper has them (pip
    compiles a package when it installs it, as it did mitmproxy's). In an editable install
    under PYTHONDONTWRITEBYTECODE=1 (the Docker image's setting, and this machine's) Python
    would otherwise compile every gatekeeper module again at each start, and the start-up
    row would time the compiler."""
    compileall.compile_dir(ROOT / "gatekeeper", quiet=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per run")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent clients")
    parser.add_argument("--worker-clients", type=int, default=60,
                        help="concurrent clients of the workers case: the kernel spreads "
                        "connections, not requests, so 20 split by hash can leave a worker "
                        "idle while the other queues")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (median)")
    parser.add_argument("--reloads", type=int, default=1000,
                        help="reloads of the 10,000-employee file (memory and latency)")
    parser.add_argument("--large", type=int, default=10_000, help="employees in the large file")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny counts: check that every case yields a number")
    parser.add_argument("--cases", default="startup,reload,throughput,workers",
                        help="which cases to run (comma-separated; default: all)")
    parser.add_argument("--noop-hooks", action="store_true",
                        help="also load the allowed cases through two controls: mitmdump with "
                        "gatekeeper's connection strategy (lazy), and that plus an addon with "
                        "gatekeeper's hooks doing nothing (bench/noop_hooks.py)")
    parser.add_argument("--pick", choices=("median", "best"), default="median",
                        help="report the median of the --repeat runs, or the best (on a "
                        "shared machine: the run least slowed by the neighbours)")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.requests, args.concurrency, args.repeat, args.reloads, args.large = 100, 5, 1, 4, 200
        args.worker_clients = 5
    for tool in ("nginx", "hey", "unshare", "openssl"):
        if not shutil.which(tool):
            print(f"bench: {tool} not found (Debian: apt-get install nginx hey util-linux "
                  "openssl)", file=sys.stderr)
            return 2
    if os.geteuid() != 0:
        print("bench: run as root (mount namespaces for the fake host names)", file=sys.stderr)
        return 2
    compile_package()
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx workers (www-data) read the document root
        hosts = work / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{UPSTREAM} {SOCIAL} {OTHER}\n")
        hosts.chmod(0o644)
        with Nginx(work) as nginx:
            bench = Bench(args, work, hosts, nginx)
            if "startup" in args.cases:
                measure_startup(bench)
            if "reload" in args.cases:
                measure_reload(bench, "100 employees", 100, max(4, min(40, args.reloads)),
                               watch_memory=False)
                measure_reload(bench, f"{args.large:,} employees", args.large, args.reloads,
                               watch_memory=True)
            if "throughput" in args.cases:
                measure_throughput(bench)
            if "workers" in args.cases:
                from workers import measure_workers  # bench/workers.py

                measure_workers(bench)
    report = render(bench, decision_ns())
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


def render(bench: Bench, decisions: dict[str, float]) -> str:
    args = bench.args
    med = statistics.median

    def pick(values: list[float], higher_is_better: bool) -> float:
        """The median of the runs, or with --pick best the best one (each figure apart)."""
        if args.pick == "median":
            return med(values)
        return max(values) if higher_is_better else min(values)

    def paired(scenario: str, ours: str, theirs: str) -> str:
        """The median over the rounds of each round's ratio (a proxy against the other one
        loaded right before or after it): what a slow minute of the machine does to both
        cancels out."""
        rounds = list(zip(bench.throughput[(scenario, ours)],
                          bench.throughput[(scenario, theirs)], strict=True))
        rps, cpu, p99 = (med([a[i] / b[i] for a, b in rounds]) for i in (0, 1, 2))
        return f"{rps:.2f}x rps, p99 {p99:.2f}x, CPU/req {cpu:.2f}x"

    def runs(scenario: str, proxy: str) -> tuple[float, float, float, str]:
        results = bench.throughput[(scenario, proxy)]
        return (pick([r[0] for r in results], True), pick([r[1] for r in results], False),
                pick([r[2] for r in results], False), results[-1][3])

    lines = [
        f"Run on {dt.date.today()}: `{' '.join(['bench/run.py', *sys.argv[1:]])}`; "
        f"{args.requests} requests per run, {args.concurrency} keep-alive clients (hey), "
        f"{args.pick} of {args.repeat} interleaved runs, nginx upstream on loopback, 1 KiB "
        "responses.",
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}, {platform.platform()}.",
        "",
        "| case | gatekeeper | reference (same run) | ratio | round by round | target | "
        "issue baseline |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    cases = [
        ("HTTPS social, allowed (intercepted)", "gatekeeper granted", "mitmdump",
         ">= 0.95x rps, p99 <= 1.1x"),
        ("HTTP social, allowed (intercepted)", "gatekeeper granted", "mitmdump",
         ">= 0.95x rps, p99 <= 1.1x"),
        ("HTTPS social, blocked (403 by proxy)", "gatekeeper not granted",
         "mitmdump block_list", ">= 1.0x rps"),
        ("HTTPS non-social (passthrough)", "gatekeeper granted", "mitmdump ignore_hosts",
         "costs nothing"),
    ]
    if args.noop_hooks:  # gatekeeper / mitmdump = the product of these three ratios
        cases[2:2] = [
            (scenario, ours, theirs, what)
            for ours, theirs, what in (
                ("gatekeeper granted", "mitmdump lazy + no-op hooks", "the hooks' own code"),
                ("mitmdump lazy + no-op hooks", "mitmdump lazy",
                 "mitmproxy's dispatch of the hooks"),
                ("mitmdump lazy", "mitmdump", "mitmproxy's lazy strategy"))
            for scenario in ("HTTPS social, allowed (intercepted)",
                             "HTTP social, allowed (intercepted)")
        ]
    for scenario, ours, theirs, target in cases:
        if not bench.throughput:
            break
        rps, cpu, p99, statuses = runs(scenario, ours)
        ref_rps, ref_cpu, ref_p99, ref_statuses = runs(scenario, theirs)
        control = "lazy" in ours + theirs  # a control row: no target, no baseline
        label = f"{scenario}: {ours} against {theirs}" if control else scenario
        lines.append(
            f"| {label} | {rps:.0f} rps, p99 {p99:.0f} ms, CPU {cpu:.2f} ms/req "
            f"[{statuses}] | {theirs} {ref_rps:.0f} rps, p99 {ref_p99:.0f} ms, CPU "
            f"{ref_cpu:.2f} ms/req [{ref_statuses}] | {rps / ref_rps:.2f}x rps, p99 "
            f"{p99 / ref_p99:.2f}x, CPU/req {cpu / ref_cpu:.2f}x | "
            f"{paired(scenario, ours, theirs)} | {target} | "
            f"{'' if control else BASELINE.get(scenario, '')} |")
    if bench.startup:
        gk_start, md_start = (pick(bench.startup[name], False) for name in ("gatekeeper",
                                                                          "mitmdump"))
        gk_cpu, md_cpu = (pick(bench.startup_cpu[name], False) for name in ("gatekeeper",
                                                                          "mitmdump"))
        lines.append(f"| start to listening | {gk_start:.2f} s (CPU {gk_cpu:.2f} s) | mitmdump "
                     f"{md_start:.2f} s (CPU {md_cpu:.2f} s) | {gk_start / md_start:.2f}x "
                     f"(CPU {gk_cpu / md_cpu:.2f}x) | | <= 1.3x | "
                     f"{BASELINE['start to listening']} |")
    if bench.rss:
        gk_rss, md_rss = bench.rss["gatekeeper granted"], bench.rss["mitmdump"]
        lines.append(f"| idle RSS | {gk_rss:.0f} MiB | mitmdump {md_rss:.0f} MiB | "
                     f"{gk_rss / md_rss:.2f}x | | <= 1.15x | 78 MiB |")
    for label, latencies in bench.reload.items():
        target = "<= 50 ms" if label.startswith("100 ") else "<= 250 ms"
        key = "reload, 100 employees" if label.startswith("100 ") else "reload, 10,000 employees"
        lines.append(
            f"| reload (save -> new decision), {label} with an address each, 5 grants each | "
            f"{med(latencies) * 1000:.0f} ms median (p90 "
            f"{sorted(latencies)[int(0.9 * (len(latencies) - 1))] * 1000:.0f} ms, "
            f"{len(latencies)} saves) | | | | {target} | {BASELINE[key]} |")
    if bench.reload_rss:
        first, last = bench.reload_rss.values()
        lines.append(
            f"| RSS over reloads, {args.large:,} employees | {last:.0f} MiB "
            f"{list(bench.reload_rss)[1]} | {first:.0f} MiB after the first | "
            f"{last / first:.2f}x | | <= 1.10x | {BASELINE['RSS after reloads']} |")
    if bench.workers:
        from workers import render_workers

        lines += render_workers(bench)
    lines += ["", "| pure decision (`gatekeeper.core.decision.decide`) | ns per call |",
              "|---|---:|"]
    lines += [f"| {name} | {ns:.0f} |" for name, ns in decisions.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
