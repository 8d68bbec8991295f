"""gatekeeper's addons as one entry of mitmproxy's addon chain.

mitmproxy calls every event (requestheaders, request, response, the connection events, ...)
on every addon in its chain, whether the addon has a method for it or not, and each of those
calls costs a few microseconds of bookkeeping. gatekeeper's small addons would multiply that
by nine on every intercepted request, about a quarter of mitmproxy's own dispatch work. So
they are registered behind one `Addons` object that has only the hooks some of them define,
each calling those addons' methods in list order, as mitmproxy would.

An error in one addon's hook is logged as mitmproxy logs it and the next addon still runs
(mitmproxy's own rule); `OptionsError` and `AddonHalt` travel on to mitmproxy unchanged.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mitmproxy import exceptions, hooks

logger = logging.getLogger("mitmproxy.addonmanager")  # where mitmproxy logs addon errors


class Addons:
    """One chain entry that calls each hook of `addons`, in order."""

    name = "gatekeeper"

    def __init__(self, addons: Sequence[object]) -> None:
        self.members = list(addons)
        for hook in hooks.all_hooks:  # every event mitmproxy knows (its modules are loaded)
            funcs = [f for a in self.members if callable(f := getattr(a, hook, None))]
            if len(funcs) == 1:
                setattr(self, hook, funcs[0])  # no wrapper at all: the common case
            elif funcs:
                setattr(self, hook, _in_order(funcs))


def _in_order(funcs: list[Callable[..., Any]]) -> Callable[..., Awaitable[None] | None]:
    """One hook calling `funcs` in order, each error logged and contained as mitmproxy does.

    Synchronous while the members are: only when one returns an awaitable (an `async def`
    hook, or a plain one that has to wait this time) is a coroutine returned, which awaits
    it and then calls the rest; mitmproxy awaits what a hook returns. So an ordinary request
    costs no coroutine."""
    members = tuple(funcs)

    def call_all(*args: Any) -> Awaitable[None] | None:
        return _call_from(members, 0, args)

    return call_all


def _call_from(funcs: tuple[Callable[..., Any], ...], start: int,
               args: tuple[Any, ...]) -> Awaitable[None] | None:
    for i in range(start, len(funcs)):
        try:
            result = funcs[i](*args)
        except (exceptions.AddonHalt, exceptions.OptionsError):
            raise
        except Exception as e:
            logger.error(f"Addon error: {e}", exc_info=True)
            continue
        if result is not None and inspect.isawaitable(result):
            return _await_then_call(result, funcs, i + 1, args)
    return None


async def _await_then_call(pending: Awaitable[Any], funcs: tuple[Callable[..., Any], ...],
                           start: int, args: tuple[Any, ...]) -> None:
    try:
        await pending
    except (exceptions.AddonHalt, exceptions.OptionsError):
        raise
    except Exception as e:
        logger.error(f"Addon error: {e}", exc_info=True)
    rest = _call_from(funcs, start, args)
    if rest is not None:
        await rest
