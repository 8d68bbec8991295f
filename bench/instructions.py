"""Instructions per intercepted request, gatekeeper against mitmdump: a count, not a timing.

    sudo .venv/bin/python bench/instructions.py [--requests 200] [--scheme https|http]

On a shared or virtual machine requests/s and even CPU time per request swing by 10-20%
between two runs of the same proxy a minute apart, more than the few percent a policy costs.
valgrind's callgrind counts the instructions a process executes instead, the same whatever
else the machine does. Each proxy (gatekeeper granted and not granted, mitmdump, mitmdump
with gatekeeper's lazy connection strategy, and that plus the no-op hooks addon, and
mitmdump's `block_list`) runs under callgrind side by side with the others; after a warm-up
the counters are zeroed, each proxy is left idle for a while to measure what its background
threads do per second, zeroed again, and loaded with `--requests` keep-alive requests (hey, 5
clients). Per request: (instructions during the load - idle rate x load time) / requests.
Under callgrind a request takes about 50 times longer, so the idle work (timers, polls) would
otherwise be counted 50 times too often. Needs root, valgrind, nginx and hey (as run.py).
"""

from __future__ import annotations

import argparse
import glob
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import LAZY, ROOT, SOCIAL, UPSTREAM, Bench, Nginx, Proxy, small_approvals

IDLE_SECONDS = 20.0


def under_callgrind(proxy: Proxy, out: Path) -> Proxy:
    """`proxy`, its program run by valgrind's callgrind (counters dumped on request)."""
    at = next(i for i, arg in enumerate(proxy.argv) if arg.endswith(("/gatekeeper", "/mitmdump")))
    proxy.argv[at:at] = ["valgrind", "--tool=callgrind", "--dump-instr=no",
                         f"--callgrind-out-file={out}.%p"]
    proxy.name = out.name
    return proxy


def control(proxy: Proxy, action: str) -> None:
    """`-z`: zero the counters; `-d`: dump them to a new file."""
    subprocess.run(["callgrind_control", action, str(proxy.process.pid)], check=True,
                   capture_output=True)


def dumped(out: Path, proxy: Proxy) -> int:
    """The instructions counted in the proxy's last dump."""
    files = glob.glob(f"{out}.{proxy.process.pid}.*")
    last = max(files, key=lambda name: int(name.rsplit(".", 1)[1]))
    return int(re.search(r"^(?:summary|totals): (\d+)", Path(last).read_text(), re.M).group(1))


def load(proxy: Proxy, url: str, requests: int) -> subprocess.Popen[str]:
    return subprocess.Popen(["hey", "-n", str(requests), "-c", "5", "-t", "300", "-x",
                             f"http://127.0.0.1:{proxy.port}", url],
                            stdout=subprocess.PIPE, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per proxy")
    parser.add_argument("--scheme", choices=("https", "http"), default="https")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "nginx", "hey", "unshare"):
        if not shutil.which(tool):
            print(f"instructions: {tool} not found", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="gk-instructions-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        hosts = work / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{UPSTREAM} {SOCIAL}\n")
        hosts.chmod(0o644)
        with Nginx(work) as nginx:
            bench = Bench(argparse.Namespace(), work, hosts, nginx)
            url = (f"https://{SOCIAL}:{nginx.https_port}/" if args.scheme == "https"
                   else f"http://{SOCIAL}:{nginx.http_port}/")
            noop = str(ROOT / "bench" / "noop_hooks.py")
            proxies = {
                "gatekeeper granted": bench.gatekeeper("granted", small_approvals(True)),
                "mitmdump": bench.mitmdump("plain"),
                "mitmdump lazy": bench.mitmdump("lazy", *LAZY),
                "mitmdump lazy + no-op hooks": bench.mitmdump("noop", *LAZY, "-s", noop),
            }
            if args.scheme == "https":
                proxies["gatekeeper not granted"] = bench.gatekeeper(
                    "blocked", small_approvals(False))
                proxies["mitmdump block_list"] = bench.mitmdump(
                    "block_list", "--set", f"block_list=:~d {re.escape(SOCIAL)}:403")
            outs = {name: work / f"callgrind-{i}" for i, name in enumerate(proxies)}
            for name, proxy in proxies.items():
                under_callgrind(proxy, outs[name]).spawn()
            try:
                for proxy in proxies.values():
                    proxy.wait_listening(timeout=900)
                for warm_up in [load(proxy, url, 20) for proxy in proxies.values()]:
                    warm_up.communicate()
                for proxy in proxies.values():
                    control(proxy, "-z")
                time.sleep(IDLE_SECONDS)
                for proxy in proxies.values():
                    control(proxy, "-d")
                idle = {name: dumped(outs[name], p) / IDLE_SECONDS for name, p in proxies.items()}
                for proxy in proxies.values():
                    control(proxy, "-z")
                started = time.monotonic()
                clients = [load(proxy, url, args.requests) for proxy in proxies.values()]
                answers = [client.communicate()[0] for client in clients]
                seconds = time.monotonic() - started
                for proxy in proxies.values():
                    control(proxy, "-d")
                per_request = {
                    name: (dumped(outs[name], p) - idle[name] * seconds) / args.requests
                    for name, p in proxies.items()}
            finally:
                for proxy in proxies.values():
                    proxy.stop()
    print(f"{args.scheme.upper()}, {args.requests} keep-alive requests per proxy under "
          f"callgrind, idle work subtracted:\n")
    print("| proxy | instructions per request | against mitmdump | idle instructions/s | "
          "answers |\n|---|---:|---:|---:|---|")
    for (name, count), answer in zip(per_request.items(), answers, strict=True):
        statuses = ", ".join(f"{c}x{n}" for c, n in re.findall(r"\[(\d+)\]\s+(\d+) resp", answer))
        print(f"| {name} | {count / 1e6:.3f} M | {count / per_request['mitmdump']:.3f}x | "
              f"{idle[name] / 1e6:.2f} M | {statuses} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
