"""In-process addon tests, mitmproxy's way: a policy built from `configs`, a `Runtime` holding
it, and `tflow` flows as the proxy would hand them to gatekeeper's hooks. No process, no
network, no root.

    runtime = make_runtime(tmp_path)                     # the default policy, state opened
    flow = make_flow("www.linkedin.com", user="alice")   # a decrypted HTTPS request
    Enforcer(runtime).requestheaders(flow)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from mitmproxy import http
from mitmproxy.test import taddons, tflow, tutils

from gatekeeper.addons.runtime import Runtime
from gatekeeper.config.loader import load_policy
from gatekeeper.core.model import Policy
from support import configs

HTML = "text/html,application/xhtml+xml,*/*;q=0.8"
T = TypeVar("T")


def make_policy(directory: Path, *, services: configs.Doc | None = None,
                approvals: configs.Doc | None = None) -> Policy:
    """The policy `gatekeeper serve` would build from these documents (defaults: configs')."""
    return load_policy(configs.write_config(directory, services=services, approvals=approvals))


def make_runtime(tmp_path: Path, policy: Policy | None = None, *, state: bool = True) -> Runtime:
    """A runtime with `policy` live (default: the default documents) and, with `state`, the
    state database opened in `tmp_path/state` (CSRF keys, the state worker, the recorder)."""
    runtime = Runtime()
    runtime.holder.policy = policy or make_policy(tmp_path / "config")
    runtime.ready = True
    if state:
        runtime.open_state(tmp_path / "state")
    return runtime


def make_flow(host: str, path: str = "/", *, method: str = "GET", user: str | None = None,
              peer: str = "192.0.2.99", scheme: str = "https", accept: str | None = None,
              headers: dict[str, str] | None = None, body: bytes = b"",
              sni: str | None = None, port: int | None = None) -> http.HTTPFlow:
    """A request as the proxy sees it after proxy sign-in (`user`: proxyauth's metadata)."""
    port = port or (443 if scheme == "https" else 80)
    header_list = [(b"host", host.encode())]
    if accept:
        header_list.append((b"accept", accept.encode()))
    for name, value in (headers or {}).items():
        header_list.append((name.lower().encode(), value.encode()))
    if body or method == "POST":
        header_list.append((b"content-length", str(len(body)).encode()))
    request = tutils.treq(host=host, port=port, scheme=scheme.encode(), method=method.encode(),
                          path=path.encode(), headers=http.Headers(header_list), content=body)
    client = tflow.tclient_conn()
    client.peername = (peer, 50000)
    client.sni = sni if sni is not None else (host if scheme == "https" else None)
    flow = tflow.tflow(client_conn=client, req=request)
    if user is not None:
        flow.metadata["proxyauth"] = (user, "")
    return flow


def form_post(host: str, path: str, fields: dict[str, str], **kwargs: Any) -> http.HTTPFlow:
    """A browser's form post to one of the proxy's pages."""
    from urllib.parse import urlencode

    return make_flow(host, path, method="POST", body=urlencode(fields).encode(), accept=HTML,
                     headers={"content-type": "application/x-www-form-urlencoded"}, **kwargs)


def run_hooks(*addons: object, call: Callable[[taddons.context], Awaitable[T]],
              **options: Any) -> T:
    """Run `call(tctx)` in a mitmproxy test context holding `addons` (their options loaded,
    `options` set), on a fresh event loop."""

    async def main() -> T:
        with taddons.context(*addons) as tctx:
            if options:
                tctx.options.update(**options)
            return await call(tctx)

    return asyncio.run(main())


def cycle(*addons: object, flow: http.HTTPFlow, upstream: http.Response | None = None,
          **options: Any) -> http.HTTPFlow:
    """A flow's hooks as the proxy runs them, addon after addon per hook: `requestheaders`,
    `request`, then (`upstream`, default 200, when no addon answered) `response`."""

    async def call(tctx: taddons.context) -> http.HTTPFlow:
        for name in ("requestheaders", "request", "response"):
            if name == "response" and flow.response is None:
                flow.response = upstream or tutils.tresp()
            for addon in addons:
                hook = getattr(addon, name, None)
                if hook is not None and asyncio.iscoroutine(result := hook(flow)):
                    await result
        return flow

    return run_hooks(*addons, call=call, **options)


def metric(runtime: Runtime, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for family in runtime.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total
