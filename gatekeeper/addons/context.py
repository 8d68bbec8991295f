"""The per-flow context: what every hook after the decision reads, under one metadata key.

The first addon that needs a decision for a flow (the `Portal` for its own endpoints, else the
`Enforcer`) opens the context: it reads the live policy once, identifies the employee and
decides. Every later hook of that flow (`Terms`, `Accounts`, `AllowedCounter`, the portal's
endpoints, the responses) reads the context, never `Runtime.policy` again, so a reload between
the `requestheaders` and the `response` hooks cannot give one flow two policies.
"""

from __future__ import annotations

from dataclasses import dataclass

from mitmproxy import http

from gatekeeper.addons.runtime import Runtime, employee_of, flow_hosts
from gatekeeper.core.decision import decide
from gatekeeper.core.logins import Target
from gatekeeper.core.model import Decision, Policy, Rules

CONTEXT_KEY = "gatekeeper"  # flow.metadata: the flow's `FlowContext`
NO_RULES = Rules()


@dataclass(slots=True)
class FlowContext:
    """One request, as decided: the policy it was decided by and the decision, which names
    the employee (the identity) and the service.

    `decision` starts as the access decision and is replaced by any later block (terms,
    accounts), so what is counted, logged and answered is always the latest word on the flow.
    """

    policy: Policy
    decision: Decision
    hosts: tuple[str | None, ...] = ()  # what the decision read (`flow_hosts`), read once
    portal: str | None = None  # the portal endpoint (`path_key` form) answering this flow
    terms_url: str | None = None  # the terms the employee must accept first (interstitial)
    target: Target | None = None  # what the catalog's rules look at (built once, by Accounts)
    rules: Rules = NO_RULES  # the service's rules that apply to `target` (set with it)
    body_unread: bool = False  # a login refused on its headers: its body is never read
    # Field-matched action rules applied but the body could not be read whole (judged on the
    # headers): already refused or recorded as unreadable, so never matched on the body.
    actions_unread: bool = False

    @property
    def enforced(self) -> bool:
        """Whether the current decision is applied (else, a block only reported)."""
        return self.decision.enforced(self.policy.mode)


def context_of(flow: http.HTTPFlow) -> FlowContext | None:
    """The flow's context, if an addon has decided it."""
    return flow.metadata.get(CONTEXT_KEY)


def decided(flow: http.HTTPFlow) -> FlowContext | None:
    """The context of a flow on its way to the service, for the checks after the access
    decision; None for one the portal answers itself (or not decided at all)."""
    context = flow.metadata.get(CONTEXT_KEY)
    return None if context is None or context.portal is not None else context


def open_context(runtime: Runtime, flow: http.HTTPFlow) -> FlowContext:
    """The flow's context; decided now (the one read of the live policy) if not yet."""
    context = flow.metadata.get(CONTEXT_KEY)
    if context is None:
        policy = runtime.policy
        if policy is None:
            raise RuntimeError("no policy loaded")
        hosts = flow_hosts(flow)
        decision = decide(policy, employee_of(flow, policy), hosts, runtime.today())
        context = flow.metadata[CONTEXT_KEY] = FlowContext(policy, decision, hosts)
    return context


def require_context(flow: http.HTTPFlow) -> FlowContext:
    """The context of a flow an earlier hook decided (a portal endpoint's flow)."""
    context = context_of(flow)
    if context is None:
        raise RuntimeError("the flow was not decided")
    return context


class FinishedFlows:
    """Last in the chain: a flow that is over lets go of its context, and so of the policy it
    was decided by. mitmproxy keeps a finished stream and its flow in a reference cycle until
    Python's next full garbage collection, which comes seldom in a proxy holding a large
    policy (hundreds of thousands of long-lived objects): each reload's policy stayed alive
    that long through the flows decided by it (5 to 8 after 30 reloads over one keep-alive
    connection), and RSS grew to 2.7x over 1,000 reloads of a 10,000-employee file."""

    def response(self, flow: http.HTTPFlow) -> None:
        flow.metadata.pop(CONTEXT_KEY, None)

    def error(self, flow: http.HTTPFlow) -> None:
        flow.metadata.pop(CONTEXT_KEY, None)
