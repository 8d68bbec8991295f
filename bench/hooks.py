"""What gatekeeper's hooks cost per request, in process: no proxy, no network, no root.

    .venv/bin/python bench/hooks.py                 # allowed and blocked, best of 8 batches
    .venv/bin/python bench/hooks.py --profile       # + cProfile of the allowed request

Every hook of gatekeeper's chain entry (`requestheaders`, `request`, `responseheaders`,
`response`) runs on flows shaped like the throughput benchmark's (hey's GET to
www.facebook.com over HTTPS, nginx's 1 KiB answer), with the shipped catalog and the
benchmark's 100-employee approvals (`bench/run.py`), logs at `warning` as there. Against the
1.5-2.5 ms of CPU mitmproxy spends on an intercepted request on the benchmark's machine, this
is the policy's own share; the steadiest number on a shared machine, since each batch is
short.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mitmproxy import http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils
from run import ROOT, SOCIAL, small_approvals  # bench/run.py, beside this script

from gatekeeper import logs
from gatekeeper.addons import all_addons
from gatekeeper.addons.dispatch import Addons
from gatekeeper.addons.runtime import Runtime

HOOKS = ("requestheaders", "request", "responseheaders", "response")


def hey_request() -> http.HTTPFlow:
    """The benchmark's request, as mitmproxy hands it to the hooks after decrypting it."""
    request = tutils.treq(host=SOCIAL, port=443, scheme=b"https", method=b"GET", path=b"/",
                          headers=http.Headers([(b"host", SOCIAL.encode()),
                                                (b"user-agent", b"hey/0.0.1"),
                                                (b"accept-encoding", b"gzip")]), content=b"")
    client = tflow.tclient_conn()
    client.peername = ("127.0.0.1", 50000)  # the benchmark employee's address
    client.sni = SOCIAL
    flow = tflow.tflow(client_conn=client, req=request)
    flow.request.timestamp_start = time.time()
    return flow


def nginx_response() -> http.Response:
    return http.Response.make(200, b"x" * 1024, {
        "Server": "nginx", "Date": "Wed, 02 Dec 2026 08:00:00 GMT", "Content-Type": "text/html",
        "Last-Modified": "Wed, 02 Dec 2026 08:00:00 GMT", "Connection": "keep-alive",
        "ETag": '"abc-400"', "Accept-Ranges": "bytes"})


async def run_flows(hooks: list, count: int,
                    profiler: cProfile.Profile | None = None) -> tuple[float, int]:
    """Seconds per flow of `count` flows through `hooks` (made beforehand: only the hooks
    are timed, and profiled with `profiler`), and the last one's status."""
    flows = [hey_request() for _ in range(count)]
    responses = [nginx_response() for _ in range(count)]
    if profiler is not None:
        profiler.enable()
    started = time.perf_counter()
    for flow, response in zip(flows, responses, strict=True):
        for i, hook in enumerate(hooks):
            if i == 2 and flow.response is None:  # forwarded: the upstream's answer
                flow.response = response
            pending = hook(flow)
            if pending is not None:
                await pending
    elapsed = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
    return elapsed / count, flows[-1].response.status_code


async def measure(work: Path, granted: bool, count: int, profile: bool) -> str:
    config = work / ("granted" if granted else "blocked")
    config.mkdir()
    shutil.copy(ROOT / "config" / "services.yaml", config / "services.yaml")
    (config / "approvals.yaml").write_text(small_approvals(granted))
    chain = Addons(all_addons(Runtime()))
    with taddons.context(Proxyserver(), chain) as tctx:
        tctx.options.update(gatekeeper_state_dir=str(config / "state"))
        tctx.options.update(gatekeeper_config_dir=str(config))
        for member in chain.members:  # Lifecycle opens the state, the rest read it
            running = getattr(member, "running", None)
            if running is not None and asyncio.iscoroutine(started := running()):
                await started
        hooks = [getattr(chain, name) for name in HOOKS if hasattr(chain, name)]
        best, status = min([await run_flows(hooks, count) for _ in range(8)])
        report = (f"{'allowed' if granted else 'blocked'}: {best * 1e6:.1f} us of CPU per "
                  f"request in gatekeeper's hooks (best of 8 batches of {count}; {status})")
        if profile:
            profiler = cProfile.Profile()
            await run_flows(hooks, count, profiler)
            stats = pstats.Stats(profiler)
            report += f"\n  {stats.total_calls / count:.0f} Python function calls per request"
            stats.sort_stats("cumulative").print_stats(30)
        for member in chain.members:
            done = getattr(member, "done", None)
            if done is not None:
                done()
        return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="flows per batch")
    parser.add_argument("--profile", action="store_true", help="also cProfile the allowed flows")
    args = parser.parse_args()
    logs.configure("json", "warning")
    with tempfile.TemporaryDirectory(prefix="gk-hooks-") as tmp:
        for granted in (True, False):
            print(asyncio.run(measure(Path(tmp), granted, args.requests,
                                      args.profile and granted)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
