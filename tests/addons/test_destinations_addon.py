"""The destination guard's upstream hook (gatekeeper.addons.destinations), with mitmproxy's
test helpers: names are resolved and the connection pinned to the checked address."""

from __future__ import annotations

import asyncio

from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow

from gatekeeper.addons.destinations import GatewayDestinations
from gatekeeper.addons.runtime import Runtime


def connect(addon: GatewayDestinations, host: str, port: int,
            **options) -> server_hooks.ServerConnectionHookData:
    async def run() -> server_hooks.ServerConnectionHookData:
        with taddons.context(addon) as tctx:
            tctx.configure(addon, **options)
            data = server_hooks.ServerConnectionHookData(
                client=tflow.tclient_conn(), server=tflow.tserver_conn()
            )
            data.server.address = (host, port)
            pending = addon.server_connect(data)
            if pending is not None:
                await pending
            return data

    return asyncio.run(run())


def test_a_name_of_loopback_is_refused_before_any_connection() -> None:
    addon = GatewayDestinations(Runtime())
    data = connect(addon, "localhost", 5432)
    assert data.server.error == "gatekeeper refused the destination (loopback)"
    assert addon.runtime.metrics.destinations_refused.labels("loopback")._value.get() == 1


def test_an_allowed_name_is_pinned_to_the_checked_address_then_named_again() -> None:
    addon = GatewayDestinations(Runtime())
    data = connect(addon, "localhost", 5432,
                   gatekeeper_allowed_destinations=["127.0.0.1:5432", "[::1]:5432"])
    assert data.server.error is None
    assert data.server.address in (("127.0.0.1", 5432), ("::1", 5432))  # what was checked
    addon.server_connected(data)
    assert data.server.address == ("localhost", 5432)  # TLS and connection reuse see the name


def test_a_loose_literal_is_judged_as_the_address_it_is() -> None:
    addon = GatewayDestinations(Runtime())
    data = connect(addon, "2130706433", 80)
    assert data.server.error == "gatekeeper refused the destination (loopback)"
    data = connect(addon, "2130706433", 80, gatekeeper_allowed_destinations=["127.0.0.1"])
    assert data.server.error is None and data.server.address == ("127.0.0.1", 80)


def test_a_remote_address_passes_untouched() -> None:
    addon = GatewayDestinations(Runtime())
    data = connect(addon, "192.0.2.10", 443)
    assert data.server.error is None and data.server.address == ("192.0.2.10", 443)


def test_a_request_to_a_loopback_literal_is_refused_before_any_connection(runtime) -> None:
    from support.flows import cycle, make_flow

    addon = GatewayDestinations(runtime)
    flow = cycle(addon, flow=make_flow("2130706433", "/metrics", scheme="http", port=9464))
    assert flow.response.status_code == 403
    assert flow.response.headers["X-Gatekeeper-Reason"] == "destination_refused"
    assert runtime.metrics.destinations_refused.labels("loopback")._value.get() == 1
