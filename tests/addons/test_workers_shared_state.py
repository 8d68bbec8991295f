"""What one worker of `serve --workers N` records, another honours: a session it bound, terms
accepted through it (the other reads the shared state database on a miss); one worker sends
the approver's notifications."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from mitmproxy.test import tutils
from support.flows import cycle, make_flow, make_policy, make_runtime, run_hooks
from test_accounts_addon import login, run

from gatekeeper.addons.accounts import Accounts
from gatekeeper.addons.enforce import AllowedCounter, Enforcer
from gatekeeper.addons.lifecycle import Lifecycle
from gatekeeper.addons.portal import Portal
from gatekeeper.addons.runtime import Runtime
from gatekeeper.addons.terms import Terms
from gatekeeper.notify import POLL_SECONDS, POOL_POLL_SECONDS


def started(runtime: Runtime, tmp_path) -> Accounts:
    addon = Accounts(runtime)

    async def start(tctx) -> None:
        addon.running()

    run_hooks(Lifecycle(runtime), addon, call=start, gatekeeper_state_dir=str(tmp_path / "state"))
    return addon


def stored(runtime: Runtime) -> bool:
    assert runtime.state_worker is not None
    return bool(runtime.state_worker.call("test", lambda db: db.load_bindings(), reading=True))


@pytest.mark.parametrize("in_pool", [True, False])
def test_a_session_bound_by_one_worker_is_known_to_another(tmp_path, policy, in_pool) -> None:
    first = make_runtime(tmp_path, policy)
    second = make_runtime(tmp_path, policy)  # the same state directory, another connection
    second.in_pool = in_pool
    worker_a, worker_b = started(first, tmp_path), started(second, tmp_path)

    upstream = tutils.tresp(headers=((b"set-cookie", b"li_at=SESSION1; Path=/"),))
    run(first, worker_a, login("alice", "alice@clinic.example"), upstream=upstream)
    deadline = time.monotonic() + 5
    while not stored(first):  # the binding is written in the background
        assert time.monotonic() < deadline, "binding not written"
        time.sleep(0.02)

    flow = run(second, worker_b, make_flow("www.linkedin.com", "/feed/", user="alice",
                                           headers={"cookie": "li_at=SESSION1"}))
    if in_pool:
        assert flow.response.status_code == 200
        assert worker_b.sessions.owner("linkedin", "SESSION1") == "alice"
    else:  # one process alone trusts its memory, as before
        assert flow.response.headers["X-Gatekeeper-Reason"] == "unverified_session"

    stranger = run(second, worker_b, make_flow("www.linkedin.com", "/feed/", user="alice",
                                               headers={"cookie": "li_at=NEVER-BOUND"}))
    assert stranger.response.headers["X-Gatekeeper-Reason"] == "unverified_session"


@pytest.mark.parametrize("in_pool", [True, False])
def test_terms_accepted_through_one_worker_are_accepted_in_another(tmp_path, services,
                                                                    approvals, in_pool) -> None:
    approvals["require_terms_acknowledgement"] = True
    policy = make_policy(tmp_path / "config", services=services, approvals=approvals)
    first, second = make_runtime(tmp_path, policy), make_runtime(tmp_path, policy)
    second.in_pool = in_pool
    terms_url = policy.services["linkedin"].terms_url
    assert first.state_worker is not None
    first.state_worker.call("test", lambda db: db.acknowledge(
        "alice", "linkedin", terms_url, dt.datetime.now(dt.UTC)))

    terms = Terms(second)
    terms.running()  # started before the acceptance: its memory does not have it
    terms.acknowledged.clear()
    flow = cycle(Enforcer(second), terms, AllowedCounter(second),
                 flow=make_flow("www.linkedin.com", "/feed/", user="alice"))
    if in_pool:
        assert flow.response.status_code == 200
    else:
        assert flow.response.headers["X-Gatekeeper-Reason"] == "terms_not_acknowledged"


def test_one_worker_sends_the_notifications_and_looks_at_the_outbox_often(tmp_path,
                                                                         policy) -> None:
    sender, other = make_runtime(tmp_path, policy), make_runtime(tmp_path, policy)
    for runtime in (sender, other):
        runtime.in_pool = True
    other.delivers_notifications = False
    portals = [Portal(sender), Portal(other)]
    try:
        for portal in portals:
            portal.running()
        assert portals[0].notifier is not None
        assert portals[0].notifier.poll_seconds == POOL_POLL_SECONDS < POLL_SECONDS
        assert portals[1].notifier is None
    finally:
        for portal in portals:
            portal.done()
