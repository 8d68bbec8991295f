"""The access decision and the allowed-request count (gatekeeper.addons.enforce), in process."""

from __future__ import annotations

import json

from structlog.testing import capture_logs
from support.flows import HTML, cycle, make_flow, metric

from gatekeeper.addons.context import context_of
from gatekeeper.addons.enforce import AllowedCounter, Enforcer
from gatekeeper.core.model import Reason, Verdict


def test_a_non_governed_request_is_left_alone_unlogged(runtime) -> None:
    flow = make_flow("example.org", scheme="http", user="bob")
    with capture_logs() as logs:
        cycle(Enforcer(runtime), AllowedCounter(runtime), flow=flow)
    assert flow.response.status_code == 200  # the upstream's
    assert context_of(flow).decision.verdict is Verdict.PASS
    assert logs == []
    assert metric(runtime, "gatekeeper_decision_duration_seconds_count") == 0


def test_an_approved_request_is_counted_once_and_marks_the_grant_used(runtime) -> None:
    flow = make_flow("www.linkedin.com", "/feed/", user="alice")
    with capture_logs() as logs:
        cycle(Enforcer(runtime), AllowedCounter(runtime), flow=flow)
    assert flow.response.status_code == 200
    assert metric(runtime, "gatekeeper_allowed_total", service="linkedin") == 1
    assert [(e["decision"], e["reason"], e["enforced"], e["path"])
            for e in logs if e["event"] == "decision"] == [("allow", "approved", True, "/feed/")]
    assert ("alice", "linkedin") in runtime.recorder._usage


def test_a_blocked_api_request_gets_json_403_with_the_reason(runtime) -> None:
    flow = make_flow("www.linkedin.com", "/feed/?q=secret", user="bob")
    with capture_logs() as logs:
        cycle(Enforcer(runtime), AllowedCounter(runtime), flow=flow)
    assert flow.response.status_code == 403
    assert flow.response.headers["X-Gatekeeper-Reason"] == "not_approved"
    assert json.loads(flow.response.content) == {
        "blocked": True, "service": "linkedin", "reason": "not_approved"}
    assert metric(runtime, "gatekeeper_blocked_total", reason="not_approved") == 1
    assert metric(runtime, "gatekeeper_allowed_total") == 0
    (event,) = [e for e in logs if e["event"] == "decision"]
    assert event["enforced"] is True and event["path"] == "/feed/"  # never the query


def test_each_json_refusal_is_its_own_response(runtime) -> None:
    """The JSON 403 is built once and copied: a header or body changed on one refusal (as
    the account rules add Set-Cookie to theirs) never reaches the next."""
    first, second = (make_flow("www.linkedin.com", "/feed/", user="bob") for _ in range(2))
    cycle(Enforcer(runtime), flow=first)
    first.response.headers.add("Set-Cookie", "li_at=; Max-Age=0")
    first.response.content = b"changed"
    cycle(Enforcer(runtime), flow=second)
    assert second.response is not first.response
    assert "Set-Cookie" not in second.response.headers
    assert json.loads(second.response.content)["reason"] == "not_approved"
    assert second.response.headers["content-length"] == str(len(second.response.content))
    assert second.response.timestamp_start >= first.response.timestamp_start


def test_a_blocked_browser_gets_the_block_page_with_a_request_form(runtime) -> None:
    flow = make_flow("www.linkedin.com", "/in/someone", user="bob", accept=HTML)
    cycle(Enforcer(runtime), flow=flow)
    page = flow.response.get_text()
    assert flow.response.status_code == 403
    assert flow.response.headers["Content-Type"].startswith("text/html")
    assert 'action="/.well-known/gatekeeper/request-access"' in page
    assert 'name="return_to" value="/in/someone"' in page


def test_an_unknown_employee_gets_no_request_form(runtime) -> None:
    flow = make_flow("www.facebook.com", accept=HTML)
    cycle(Enforcer(runtime), flow=flow)
    assert flow.response.headers["X-Gatekeeper-Reason"] == "unknown_employee"
    assert "request-access" not in flow.response.get_text()


def test_report_mode_counts_and_logs_a_block_and_lets_it_through(tmp_path, approvals) -> None:
    from support.flows import make_policy, make_runtime

    approvals["mode"] = "report"
    runtime = make_runtime(tmp_path, make_policy(tmp_path / "config", approvals=approvals))
    flow = make_flow("www.facebook.com", user="bob")
    with capture_logs() as logs:
        cycle(Enforcer(runtime), AllowedCounter(runtime), flow=flow)
    assert flow.response.status_code == 200  # the upstream's: let through
    assert context_of(flow).decision.reason is Reason.NOT_APPROVED
    assert metric(runtime, "gatekeeper_would_block_total", reason="not_approved") == 1
    assert metric(runtime, "gatekeeper_blocked_total") == 0
    assert metric(runtime, "gatekeeper_allowed_total") == 0  # not an allow either
    assert [e["enforced"] for e in logs if e["event"] == "decision"] == [False]


def test_without_a_policy_the_request_fails_closed(tmp_path) -> None:
    from gatekeeper.addons.runtime import Runtime

    runtime = Runtime()
    flow = make_flow("www.facebook.com", user="alice")
    cycle(Enforcer(runtime), flow=flow)
    assert flow.response.status_code == 403
    assert flow.response.headers["X-Gatekeeper-Reason"] == "internal_error"
    assert metric(runtime, "gatekeeper_blocked_total", reason="internal_error") == 1


def test_a_blocked_large_upload_is_not_buffered(runtime) -> None:
    flow = make_flow("www.facebook.com", "/upload", method="POST", user="bob",
                     headers={"transfer-encoding": "chunked"})
    del flow.request.headers["content-length"]
    Enforcer(runtime).requestheaders(flow)
    assert flow.response.status_code == 403
    assert flow.error is not None  # the connection is ended: the body is never read
