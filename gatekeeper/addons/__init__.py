"""gatekeeper's mitmproxy addons, one small class per concern, sharing one `Runtime`."""

from __future__ import annotations

from gatekeeper.addons.enforce import Enforcer
from gatekeeper.addons.lifecycle import Lifecycle
from gatekeeper.addons.runtime import Runtime


def all_addons(runtime: Runtime | None = None) -> list[object]:
    """The addons in hook order: lifecycle first, then the request path."""
    runtime = runtime or Runtime()
    return [Lifecycle(runtime), Enforcer(runtime)]
