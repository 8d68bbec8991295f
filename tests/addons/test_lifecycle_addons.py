"""Start-up and shut-down addons in process: the first policy load and the interception
options (lifecycle), the PAC listener (pac) and the review recorder's last write (recorder).
The listeners bind loopback only, on a free port."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import weakref

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import default_addons
from support import configs
from support.flows import run_hooks

from gatekeeper.addons.lifecycle import Lifecycle, SettledHeap
from gatekeeper.addons.pac import PacListener
from gatekeeper.addons.runtime import Runtime


def test_the_config_is_loaded_and_only_the_catalog_intercepted(tmp_path) -> None:
    runtime = Runtime()
    lifecycle = Lifecycle(runtime)

    async def start(tctx) -> None:
        tctx.configure(lifecycle, gatekeeper_config_dir=str(configs.write_config(
            tmp_path / "config")), gatekeeper_state_dir=str(tmp_path / "state"),
            gatekeeper_metrics_port=0)
        assert tctx.options.allow_hosts == [runtime.policy.domains.allow_hosts_pattern()]
        assert tctx.options.connection_strategy == "lazy"
        lifecycle.running()
        try:
            await asyncio.sleep(0)  # ready in the next step of the event loop
            assert runtime.ready
            assert runtime.state_worker is not None and runtime.csrf is not None
            assert lifecycle.admin.routes["/healthz"]().status == 200
            with pytest.raises(exceptions.OptionsError, match="ignore_hosts"):
                tctx.configure(lifecycle, ignore_hosts=["facebook"])
        finally:
            lifecycle.done()

    # mitmproxy's own addons declare the interception options gatekeeper manages
    run_hooks(*default_addons()[1:], lifecycle, call=start)  # [0]: core, always loaded
    assert set(runtime.policy.services) == {"facebook", "linkedin", "x"}
    assert runtime.ready is False  # done


def test_the_pac_listener_serves_the_live_catalog(runtime) -> None:
    pac = PacListener(runtime)

    async def start(tctx) -> None:
        tctx.options.update(gatekeeper_pac_port=0, gatekeeper_pac_host="127.0.0.1",
                            gatekeeper_pac_proxy="gateway.clinic.example:8080")
        pac.running()
        try:
            reply = pac.server.routes["/proxy.pac"]()
            assert reply.status == 200
            assert b"facebook.com" in reply.body
            assert b"PROXY gateway.clinic.example:8080" in reply.body
        finally:
            pac.done()

    run_hooks(pac, call=start)


def test_the_recorder_writes_what_is_left_when_the_proxy_stops(runtime) -> None:
    recorder = runtime.recorder
    recorder.blocked("bob", "facebook", "not_approved")
    recorder.audited("alice", "linkedin", "group_created")
    recorder.done()
    review = runtime.state.review(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    assert [(b.employee, b.service, b.reason) for b in review.blocked] == [
        ("bob", "facebook", "not_approved")]
    assert [(a.employee, a.action) for a in review.audited] == [("alice", "group_created")]



class _Node:
    """An object in a reference cycle: only the garbage collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_what_start_up_built_is_left_out_of_full_collections() -> None:
    """`SettledHeap.running`: the garbage is collected first (never frozen), then what is
    alive is frozen (gc.freeze), so full collections no longer rescan it."""
    gc.unfreeze()
    node = _Node()
    unreachable = weakref.ref(node)
    del node
    try:
        SettledHeap().running()
        assert unreachable() is None
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
