"""gatekeeper's addons behind one chain entry behave as mitmproxy would call them one by one."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mitmproxy import exceptions
from mitmproxy.tools.dump import DumpMaster  # noqa: F401  (registers every mitmproxy hook)

from gatekeeper.addons import all_addons
from gatekeeper.addons.dispatch import Addons


class Recording:
    def __init__(self, name: str, calls: list[str], fail: Exception | None = None) -> None:
        self.name, self.calls, self.fail = name, calls, fail

    def request(self, flow: object) -> None:
        self.calls.append(self.name)
        if self.fail:
            raise self.fail


class Other:
    def response(self, flow: object) -> None:
        pass


def test_hooks_run_in_list_order_and_an_error_does_not_stop_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    addons = Addons([Recording("a", calls), Recording("b", calls, ValueError("boom")),
                     Recording("c", calls), Other()])
    with caplog.at_level(logging.ERROR):
        addons.request(object())
    assert calls == ["a", "b", "c"]
    assert "Addon error: boom" in caplog.text


def test_only_defined_hooks_exist_and_a_single_one_is_the_method_itself() -> None:
    other = Other()
    addons = Addons([other])
    assert addons.response == other.response
    assert not hasattr(addons, "request")
    assert not hasattr(addons, "requestheaders")


def test_options_errors_reach_mitmproxy() -> None:
    calls: list[str] = []
    addons = Addons([Recording("a", calls, exceptions.OptionsError("bad")), Recording("b", calls)])
    with pytest.raises(exceptions.OptionsError):
        addons.request(object())


def test_async_hooks_are_awaited_in_order() -> None:
    calls: list[str] = []

    class Later:
        async def request(self, flow: object) -> None:
            await asyncio.sleep(0)
            calls.append("async")

    addons = Addons([Recording("a", calls), Later(), Recording("c", calls)])
    asyncio.run(addons.request(object()))
    assert calls == ["a", "async", "c"]


def test_every_hook_of_every_gatekeeper_addon_is_reachable() -> None:
    members = all_addons()
    addons = Addons(members)
    for member in members:
        for name in ("load", "configure", "running", "done", "requestheaders", "request",
                     "response", "http_connect", "tls_clienthello", "client_disconnected"):
            if callable(getattr(member, name, None)):
                assert callable(getattr(addons, name, None)), (member, name)


def test_a_hook_is_synchronous_until_a_member_has_to_wait() -> None:
    calls: list[str] = []

    class Sometimes:
        """Plain, returning a coroutine only when it has to wait (as the sign-in does)."""

        def __init__(self) -> None:
            self.wait = False

        def request(self, flow: object):
            if not self.wait:
                calls.append("sync")
                return None

            async def later() -> None:
                await asyncio.sleep(0)
                calls.append("waited")

            return later()

    sometimes = Sometimes()
    addons = Addons([Recording("a", calls), sometimes, Recording("c", calls)])
    assert addons.request(object()) is None  # nothing to await: no coroutine at all
    assert calls == ["a", "sync", "c"]
    calls.clear()
    sometimes.wait = True
    pending = addons.request(object())
    assert calls == ["a"]  # the rest waits for the member that waits
    asyncio.run(pending)
    assert calls == ["a", "waited", "c"]


def test_an_error_while_waiting_is_contained_and_the_next_member_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    class Fails:
        async def request(self, flow: object) -> None:
            raise ValueError("late boom")

    addons = Addons([Fails(), Recording("b", calls)])
    with caplog.at_level(logging.ERROR):
        asyncio.run(addons.request(object()))
    assert calls == ["b"]
    assert "Addon error: late boom" in caplog.text
