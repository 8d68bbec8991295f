"""Benchmark: intercepted HTTPS through `gatekeeper serve --workers 2` against `--workers 1`.

Run by bench/run.py (case `workers`, in `make bench`); alone:

    sudo .venv/bin/python bench/run.py --cases workers [--requests N] [--repeat R]

Both proxies are up side by side and loaded in turn, round by round (hey, keep-alive clients,
the nginx upstream of run.py), HTTPS to a social site with a grant: intercepted, decided,
forwarded. On a 2-core machine the load generator and the upstream share the cores with the
proxy, so besides requests/s the run accounts for the CPU of every party (`CpuShares`): the
proxy's processes (the supervisor and its workers), hey, nginx, and the rest of the machine
(other users: the noise), in cores busy on average while the load ran.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from run import SOCIAL, hey, small_approvals  # bench/run.py, beside this script

CLK_TCK = os.sysconf("SC_CLK_TCK")
SCENARIO = "HTTPS social, allowed (intercepted)"
PROXIES = {"1 worker": (), "2 workers": ("--workers", "2")}


def process_tree(pid: int) -> Iterator[int]:
    """`pid` and its descendants (the supervisor under unshare's exec, and its workers)."""
    yield pid
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return
    for child in children:
        yield from process_tree(int(child))


def cpu_seconds(pids: Iterator[int]) -> float:
    """User + system CPU of these live processes."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def machine_busy_seconds() -> float:
    """CPU time every core spent busy so far (all users), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def reaped_children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuShares:
    """Cores busy on average during one load, by whom."""

    proxy: float
    hey: float
    nginx: float
    others: float


@dataclass
class WorkerRun:
    rps: float
    p99: float
    statuses: str
    shares: CpuShares


def measure_workers(bench: Any) -> None:
    """Fill `bench.workers` with --repeat interleaved runs of each proxy."""
    url = f"https://{SOCIAL}:{bench.nginx.https_port}/"
    proxies = {name: bench.gatekeeper(f"workers-{name[0]}", small_approvals(True), *extra)
               for name, extra in PROXIES.items()}
    nginx_pid = int((bench.work / "nginx.pid").read_text())
    bench.workers = {name: [] for name in proxies}
    with ExitStack() as stack:
        for proxy in proxies.values():
            stack.callback(proxy.stop)
            proxy.spawn()
        for proxy in proxies.values():
            proxy.wait_listening()
        for proxy in proxies.values():  # warm-up: certificates, connections
            clients = bench.args.worker_clients
            hey(url, proxy.port, max(100, 4 * clients), clients)
        for round_ in range(bench.args.repeat):
            order = list(proxies.items())  # every other round in reverse: neither goes first
            for name, proxy in order if round_ % 2 == 0 else order[::-1]:
                run = _one_run(lambda p=proxy: hey(url, p.port, bench.args.requests,
                                                   bench.args.worker_clients),
                               proxy.process.pid, nginx_pid)
                bench.workers[name].append(run)
                s = run.shares
                print(f"round {round_ + 1}: {SCENARIO} gatekeeper {name:9} {run.rps:7.0f} "
                      f"req/s p99 {run.p99:6.1f} ms; cores busy: proxy {s.proxy:.2f}, hey "
                      f"{s.hey:.2f}, nginx {s.nginx:.2f}, others {s.others:.2f}", flush=True)


def _one_run(load: Callable[[], tuple[float, float, float, str]], proxy_pid: int,
             nginx_pid: int) -> WorkerRun:
    def snapshot() -> tuple[float, ...]:
        return (time.monotonic(), cpu_seconds(process_tree(proxy_pid)),
                reaped_children_seconds(), cpu_seconds(process_tree(nginx_pid)),
                machine_busy_seconds())

    before = snapshot()
    rps, _, p99, statuses = load()
    after = snapshot()
    wall, proxy, hey_cpu, nginx, busy = (b - a for a, b in zip(before, after, strict=True))
    shares = CpuShares(proxy / wall, hey_cpu / wall, nginx / wall,
                       max(0.0, busy - proxy - hey_cpu - nginx) / wall)
    return WorkerRun(rps, p99, statuses, shares)


def render_workers(bench: Any) -> list[str]:
    """The report's rows: 2 workers against 1, where the cores went, and the requests/s per
    core the proxy got (the neighbours' load on a shared machine moves requests/s, much less
    this), with what it projects for a machine left to the benchmark."""
    runs = getattr(bench, "workers", None)
    if not runs:
        return []
    med = statistics.median
    cores = os.cpu_count() or 1
    rows, summary = [], {}
    for name, results in runs.items():
        rps, p99 = med(r.rps for r in results), med(r.p99 for r in results)
        shares = CpuShares(*(med(getattr(r.shares, part) for r in results)
                             for part in ("proxy", "hey", "nginx", "others")))
        per_core = med(r.rps / r.shares.proxy for r in results if r.shares.proxy > 0)
        workers = int(name.split()[0])
        # Idle machine: the proxy may use what hey and nginx leave, at most a core per worker.
        projected = per_core * min(workers, cores - shares.hey - shares.nginx)
        summary[name] = (rps, p99, per_core, projected)
        rows.append(
            f"| {name} [{results[-1].statuses}] | {rps:.0f} | {p99:.0f} ms | {shares.proxy:.2f}"
            f" | {shares.hey:.2f} | {shares.nginx:.2f} | {shares.others:.2f} | "
            f"{per_core:.0f} | {projected:.0f} |")
    (rps1, p99_1, core1, proj1), (rps2, p99_2, core2, proj2) = summary.values()
    one, two = runs.values()
    paired = med(b.rps / a.rps for a, b in zip(one, two, strict=True))  # each round's ratio
    return [
        "",
        f"| {SCENARIO}, by workers ({bench.args.worker_clients} clients) | requests/s | p99 "
        "| cores busy: proxy | hey | nginx | others (noise) | requests/s per proxy core "
        "| projected requests/s, idle machine |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        f"| 2 workers / 1 worker | {rps2 / rps1:.2f}x (round by round {paired:.2f}x; target "
        f">= 1.7x) | {p99_2 / p99_1:.2f}x "
        f"| | | | | {core2 / core1:.2f}x | {proj2 / proj1:.2f}x |",
    ]
