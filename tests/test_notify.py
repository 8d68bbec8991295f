"""Telling the approver: `notify:` validation, delivery to a real SMTP server (aiosmtpd) and a
real HTTP receiver on loopback, retries after failures, and the whole path through a real
`gatekeeper serve` (a request from the block page reaches the webhook)."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import configs
from support.proxy import free_port
from support.smtp import Inbox, running_inbox
from support.waiting import wait_until

from gatekeeper.config.loader import load_policy
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.model import Policy
from gatekeeper.metrics import Metrics
from gatekeeper.notify import Notifier, messages
from gatekeeper.statedb import StateDB

NOW = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)


class Receiver:
    """A webhook receiver on loopback that answers 503 to its first `failures` posts."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.posts: list[tuple[int, dict]] = []  # (status answered, JSON body)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 503 if len(receiver.posts) < receiver.failures else 204
                receiver.posts.append((status, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gatekeeper"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> list[dict]:
        return [body for status, body in self.posts if status == 204]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    with running_inbox() as server:
        yield server


def policy_with(tmp_path: Path, notify: dict) -> Policy:
    approvals = configs.approvals_doc()
    approvals["notify"] = notify
    return load_policy(configs.write_config(tmp_path / "config", approvals=approvals))


def smtp_settings(port: int) -> dict:
    return {"host": "127.0.0.1", "port": port, "from": "gatekeeper@clinic.example",
            "to": [configs.APPROVER]}




def submit(db: StateDB, policy: Policy, employee: str = "bob", service: str = "facebook"):
    request, created = db.submit_request(employee, service, "Patients message us there.", NOW,
                                         notifications=lambda r: messages(policy, r))
    assert created
    return request


def test_new_request_is_mailed_to_the_approver_with_the_commands(tmp_path, smtp_server):
    inbox, port = smtp_server
    policy = policy_with(tmp_path, {"smtp": smtp_settings(port)})
    metrics = Metrics()
    with StateDB(tmp_path / "state") as db:
        request = submit(db, policy)
        # An update of the pending request sends nothing more.
        db.submit_request("bob", "facebook", "Updated reason.", NOW,
                          notifications=lambda r: messages(policy, r))
        notifier = Notifier(db, lambda: policy, metrics)
        assert notifier.deliver_due(NOW + dt.timedelta(seconds=1)) is None
        assert db.due_notifications(NOW + dt.timedelta(days=1)) == []
    [message] = inbox.messages
    assert inbox.recipients == [[configs.APPROVER]]
    assert message["From"] == "gatekeeper@clinic.example"
    assert request.id in message["Subject"] and "bob" in message["Subject"]
    body = message.get_content()
    assert "Patients message us there." in body
    assert f"gatekeeper approve {request.id}" in body
    assert f"gatekeeper deny {request.id}" in body
    assert metrics.notifications.labels("smtp", "success")._value.get() == 1


def test_a_failing_webhook_is_retried_until_it_recovers_and_the_request_stays(tmp_path):
    with Receiver(failures=2) as receiver:
        policy = policy_with(tmp_path, {"webhook": {"url": receiver.url}})
        metrics = Metrics()
        with StateDB(tmp_path / "state") as db:
            request = submit(db, policy)
            notifier = Notifier(db, lambda: policy, metrics, first_retry=0.1)
            notifier.start()
            try:
                wait_until(receiver.delivered)
            finally:
                notifier.stop()
            [note] = db.due_notifications(NOW + dt.timedelta(days=1)) or [None]
            assert note is None  # nothing left to send
            assert db.get_request(request.id).status == "pending"
    assert [status for status, _ in receiver.posts] == [503, 503, 204]
    [payload] = receiver.delivered()
    assert payload["request_id"] == request.id
    assert payload["approve_command"] == f"gatekeeper approve {request.id}"
    assert payload["justification"] == "Patients message us there."
    assert metrics.notifications.labels("webhook", "failure")._value.get() == 2
    assert metrics.notifications.labels("webhook", "success")._value.get() == 1


def test_an_unreachable_relay_keeps_the_message_queued_with_the_error(tmp_path, smtp_server):
    inbox, port = smtp_server
    closed = free_port()  # nothing listens there
    policy = policy_with(tmp_path, {"smtp": smtp_settings(closed)})
    with StateDB(tmp_path / "state") as db:
        request = submit(db, policy)
        notifier = Notifier(db, lambda: policy, Metrics())
        assert notifier.deliver_due(NOW) == 1.0
        [note] = db.due_notifications(NOW + dt.timedelta(seconds=1))
        assert note.attempts == 1 and note.sent_at is None
        assert "ConnectionRefusedError" in (note.last_error or "")
        assert db.due_notifications(NOW) == []  # not before its retry time
        # IT fixes the relay's port in approvals.yaml: the next attempt uses the new setting.
        fixed = policy_with(tmp_path / "fixed", {"smtp": smtp_settings(port)})
        Notifier(db, lambda: fixed, Metrics()).deliver_due(NOW + dt.timedelta(seconds=1))
        assert db.due_notifications(NOW + dt.timedelta(days=1)) == []  # the only one: sent
        assert db.get_request(request.id).status == "pending"
    assert len(inbox.messages) == 1


@pytest.mark.parametrize(("notify", "message"), [
    ({"smtp": {"host": "relay", "from": "gk@clinic.example", "to": ["a@clinic.example"],
               "port": "twenty-five"}}, "notify: smtp: port must be a number from 1 to 65535"),
    ({"smtp": {"host": "relay", "to": ["a@clinic.example"]}},
     "notify: smtp is missing required key 'from'"),
    ({"smtp": {"host": "relay", "from": "gk@clinic.example", "to": ["not an address"]}},
     "notify: smtp: to 'not an address' is not valid"),
    ({"smtp": {"host": "relay", "from": "gk@clinic.example", "to": ["a@clinic.example"],
               "username": "gk"}}, "notify: smtp: username and password_file go together"),
    ({"smtp": {"host": "relay", "from": "gk@clinic.example", "to": ["a@clinic.example"],
               "startls": True}}, "unknown key 'startls' in notify: smtp"),
    ({"webhook": {"url": "ftp://hooks.example"}}, "notify: webhook: url must be an http(s) URL"),
    ({"webhook": {"url": "https://hooks.example", "timeout_seconds": 0}},
     "notify: webhook: timeout_seconds must be a number from 0 to 300"),
    ({"pager": {}}, "unknown key 'pager' in notify"),
    ({"it": ["it@clinic.example"]}, "notify: it sends e-mail: it needs notify: smtp"),
    ({"webhook": {"url": "https://hooks.example"}, "employee": True},
     "notify: employee sends e-mail: it needs notify: smtp"),
    ({"smtp": {"host": "relay", "from": "gk@clinic.example", "to": ["a@clinic.example"]},
      "it": ["helpdesk"]}, "notify: it 'helpdesk' is not valid"),
    ({"smtp": {"host": "relay", "from": "gk@clinic.example", "to": ["a@clinic.example"]},
      "employee": "yes please"}, "notify: employee must be true or false"),
])
def test_notify_settings_are_validated_with_file_and_line(tmp_path, notify, message):
    with pytest.raises(ConfigError) as error:
        policy_with(tmp_path, notify)
    lines = [str(p) for p in error.value.problems]
    assert any(re.fullmatch(rf".*approvals\.yaml:\d+: {re.escape(message)}.*", line)
               for line in lines), lines


def test_notify_defaults(tmp_path):
    policy = policy_with(tmp_path, {"smtp": {"host": "relay", "from": "gk@clinic.example",
                                             "to": ["a@clinic.example"]},
                                    "webhook": {"url": "https://hooks.example/x"}})
    assert policy.notify["smtp"]["port"] == 25
    assert policy.notify["smtp"]["starttls"] is False
    assert policy.notify["webhook"]["timeout_seconds"] == 10.0


def test_the_employee_is_told_of_approval_and_denial_built_from_the_current_policy(
    tmp_path, smtp_server
):
    inbox, port = smtp_server
    policy = policy_with(tmp_path, {"smtp": smtp_settings(port), "employee": True})
    with StateDB(tmp_path / "state") as db:
        approved = submit(db, policy, "bob", "facebook")
        denied = submit(db, policy, "alice", "x")
        withdrawn = submit(db, policy, "carol", "x")
        Notifier(db, lambda: policy, Metrics()).deliver_due(NOW)  # the approver's three
        inbox.messages.clear()
        inbox.recipients.clear()
        db.decide_request(approved.id, "approved", configs.APPROVER, None, NOW)
        db.decide_request(denied.id, "denied", configs.APPROVER, "Use the clinic page.", NOW)
        db.decide_request(withdrawn.id, "withdrawn", "carol", None, NOW)
        # Delivered with the policy in force when it is sent: bob's grant by then.
        approvals = configs.approvals_doc()
        approvals["notify"] = {"smtp": smtp_settings(port), "employee": True}
        approvals["grants"].append(configs.grant("bob", "facebook",
                                                 expires=dt.date(2099, 1, 31)))
        later = load_policy(configs.write_config(tmp_path / "later", approvals=approvals))
        Notifier(db, lambda: later, Metrics()).deliver_due(NOW)
        assert db.due_notifications(NOW + dt.timedelta(days=1)) == []
    assert sorted(inbox.recipients) == [["alice@clinic.example"], ["bob@clinic.example"]]
    mails = {m["To"]: m for m in inbox.messages}
    bob, alice = mails["bob@clinic.example"], mails["alice@clinic.example"]
    assert bob["Subject"] == "gatekeeper: your request for Facebook was approved"
    assert "approved until 2099-01-31" in bob.get_content()
    assert "bob@clinic.example" in bob.get_content()
    assert alice["Subject"] == "gatekeeper: your request for X (Twitter) was denied"
    assert "Reason: Use the clinic page." in alice.get_content()
    assert denied.id in alice.get_content()


def test_without_employee_notices_the_decision_is_dropped_unsent(tmp_path, smtp_server):
    inbox, port = smtp_server
    policy = policy_with(tmp_path, {"smtp": smtp_settings(port)})
    with StateDB(tmp_path / "state") as db:
        request = submit(db, policy)
        db.decide_request(request.id, "denied", configs.APPROVER, "no", NOW)
        Notifier(db, lambda: policy, Metrics()).deliver_due(NOW)
        assert db.due_notifications(NOW + dt.timedelta(days=1)) == []
    assert inbox.recipients == [[configs.APPROVER]]  # the request only, to the approver


def test_review_notify_queues_the_review_for_it(tmp_path, smtp_server, capsys):
    from support.cli import run_main

    inbox, port = smtp_server
    approvals = configs.approvals_doc()
    approvals["notify"] = {"smtp": smtp_settings(port), "it": ["helpdesk@clinic.example"]}
    config = configs.write_config(tmp_path / "config", approvals=approvals)
    StateDB(tmp_path / "state").close()
    argv = ["review", "--notify", "--config-dir", str(config), "--state-dir",
            str(tmp_path / "state")]
    done = run_main(capsys, argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("access review queued for helpdesk@clinic.example")
    policy = load_policy(config)
    with StateDB(tmp_path / "state") as db:
        Notifier(db, lambda: policy, Metrics()).deliver_due(dt.datetime.now(dt.UTC))
    assert inbox.recipients == [["helpdesk@clinic.example"]]
    [message] = inbox.messages
    assert message["Subject"].startswith("gatekeeper: Access review on ")
    assert "Active grants (1)" in message.get_content()
    assert "alice linkedin" in message.get_content()
    # Without IT addresses there is nobody to send it to: said, exit 1.
    del approvals["notify"]["it"]
    configs.write_config(config, approvals=approvals)
    refused = run_main(capsys, argv)
    assert refused.returncode == 1 and "names no IT addresses" in refused.stderr


@pytest.mark.e2e
def test_a_request_from_the_block_page_reaches_the_webhook(gk, fake_sites, tmp_path):
    with Receiver() as receiver:
        approvals = configs.approvals_doc()
        approvals["notify"] = {"webhook": {"url": receiver.url, "timeout_seconds": 5}}
        proxy = gk(configs.write_config(tmp_path / "notify-config", approvals=approvals),
                   args=["--set", "proxyauth=any"])
        bob = proxy.session("bob", "pw")
        site = fake_sites.x
        page = bob.get(site.url("/home"), headers={"Accept": "text/html"}, timeout=10).text
        token = re.search(r'name="csrf" value="([^"]*)"', page).group(1)
        reply = bob.post(site.url("/.well-known/gatekeeper/request-access"), timeout=10,
                         data={"csrf": token, "justification": "Public health updates."})
        assert reply.status_code == 200
        wait_until(receiver.delivered)
        proxy.wait_for_metric("gatekeeper_notifications_total", 1, channel="webhook",
                              result="success")
    [payload] = receiver.delivered()
    assert (payload["employee"], payload["service"]) == ("bob", "x")
    assert payload["service_name"] == "X (Twitter)"
    assert payload["approve_command"] == f"gatekeeper approve {payload['request_id']}"
    assert payload["request_id"] in reply.text
