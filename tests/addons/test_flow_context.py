"""The per-flow context (gatekeeper.addons.context): the policy is read once per flow, so a
reload between a flow's hooks cannot give it two policies."""

from __future__ import annotations

from support.flows import cycle, make_flow, make_policy

from gatekeeper.addons import all_addons
from gatekeeper.addons.context import CONTEXT_KEY, FinishedFlows, context_of
from gatekeeper.addons.enforce import AllowedCounter, Enforcer
from gatekeeper.addons.terms import Terms
from gatekeeper.core.model import Reason, Verdict


def test_every_hook_of_a_flow_reads_the_policy_its_decision_read(tmp_path, runtime, accounts,
                                                                 services, approvals) -> None:
    flow = make_flow("www.linkedin.com", "/feed/", user="alice")
    Enforcer(runtime).requestheaders(flow)
    decided_with = runtime.policy
    # A reload that revokes alice's grant and drops the tenant header, between two hooks.
    del services["services"]["linkedin"]["headers"]
    approvals["grants"] = []
    runtime.holder.policy = make_policy(tmp_path / "reloaded", services=services,
                                        approvals=approvals)
    terms, counter = Terms(runtime), AllowedCounter(runtime)
    cycle(terms, accounts, counter, flow=flow, gatekeeper_max_login_body=4096)
    context = context_of(flow)
    assert context.policy is decided_with and runtime.policy is not decided_with
    assert context.decision.reason is Reason.APPROVED
    assert flow.request.headers["X-GoogApps-Allowed-Domains"] == "clinic.example"
    assert flow.response.status_code == 200  # the upstream's: allowed as decided
    next_flow = make_flow("www.linkedin.com", "/feed/", user="alice")
    Enforcer(runtime).requestheaders(next_flow)
    assert context_of(next_flow).decision.verdict is Verdict.BLOCK  # the next flow: reloaded


def test_the_context_is_the_only_gatekeeper_key(runtime, accounts) -> None:
    flow = make_flow("www.linkedin.com", "/checkpoint/lg/login-submit", method="POST",
                     user="alice", headers={"content-type": "application/x-www-form-urlencoded"},
                     body=b"session_key=alice%40clinic.example")
    cycle(Enforcer(runtime), accounts, AllowedCounter(runtime), flow=flow,
          gatekeeper_max_login_body=4096)
    assert [k for k in flow.metadata if k.startswith("gatekeeper")] == [CONTEXT_KEY]
    assert context_of(flow).target is not None  # the catalog target, built once


def test_a_finished_flow_lets_go_of_its_context(runtime, accounts) -> None:
    """mitmproxy keeps finished flows in reference cycles until a full garbage collection:
    without this, each one would keep the policy it was decided by alive that long."""
    answered = make_flow("www.linkedin.com", "/feed/", user="alice")
    seen_by_accounts = []
    accounts_response = accounts.response
    accounts.response = lambda flow: (seen_by_accounts.append(context_of(flow)),
                                      accounts_response(flow))[1]
    cycle(Enforcer(runtime), accounts, AllowedCounter(runtime), FinishedFlows(),
          flow=answered, gatekeeper_max_login_body=4096)
    assert seen_by_accounts[0] is not None  # the response hooks before it still read it
    assert answered.response.status_code == 200 and context_of(answered) is None
    failed = make_flow("www.linkedin.com", "/feed/", user="alice")
    Enforcer(runtime).requestheaders(failed)
    assert context_of(failed) is not None
    FinishedFlows().error(failed)
    assert context_of(failed) is None
    assert isinstance(all_addons(runtime)[-1], FinishedFlows)  # after every response hook
