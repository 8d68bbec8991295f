"""gatekeeper's mitmproxy addons, one small class per concern, sharing one `Runtime`."""

from __future__ import annotations

from gatekeeper.addons.accounts import Accounts
from gatekeeper.addons.console import Console
from gatekeeper.addons.context import FinishedFlows
from gatekeeper.addons.destinations import GatewayDestinations
from gatekeeper.addons.directory import DirectoryEmployees
from gatekeeper.addons.enforce import AllowedCounter, Enforcer
from gatekeeper.addons.lifecycle import Lifecycle, SettledHeap
from gatekeeper.addons.pac import PacListener
from gatekeeper.addons.portal import Portal, RequestStatus
from gatekeeper.addons.proxy_login_guard import ProxyLoginGuard
from gatekeeper.addons.runtime import Runtime
from gatekeeper.addons.sign_in import ProxySignIn
from gatekeeper.addons.terms import Terms
from gatekeeper.addons.transparent import TransparentIdentity
from gatekeeper.addons.unnamed import UnnamedConnections


def all_addons(runtime: Runtime | None = None) -> list[object]:
    """The addons in hook order: lifecycle first, then the request path."""
    runtime = runtime or Runtime()
    terms = Terms(runtime)
    guard = ProxyLoginGuard(runtime)
    sign_in = ProxySignIn(runtime, guard)
    return [
        DirectoryEmployees(runtime),  # before Lifecycle: its reloader installs through it
        Lifecycle(runtime),
        UnnamedConnections(runtime),  # TLS and raw tunnels to an IP address (no HTTP flow)
        sign_in,  # proxy sign-in first on the request path, as proxyauth
        TransparentIdentity(),  # before any decision: withdraws proxyauth's transparent 401
        guard,  # right after sign-in: counts and slows wrong passwords
        Console(runtime, sign_in.sign_ins),  # its own name, after Unnamed's TLS verdict
        Portal(runtime, terms.endpoints()),  # answers its own form posts before any decision
        GatewayDestinations(runtime),  # refuses the gateway itself before any upstream
        Enforcer(runtime),
        terms,
        Accounts(runtime),
        RequestStatus(runtime),  # the block page: where the employee's request stands
        AllowedCounter(runtime),  # after every check that may still refuse an allowed flow
        PacListener(runtime),
        runtime.recorder,  # its `done` writes what the others recorded
        SettledHeap(),  # after every `running`: what start-up built is left out of full GCs
        FinishedFlows(),  # last: a flow that is over lets go of its context
    ]
