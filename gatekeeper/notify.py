"""Telling people what happened, by e-mail (an SMTP relay) and/or a webhook:
- the approver, of a new access request: `messages()` builds one message per configured
  channel; the portal hands it to `StateDB.submit_request`, so the request and its messages
  are recorded in one transaction;
- the employee, of the decision on their request (`notify: employee: true`):
  `StateDB.decide_request` queues it, whoever decides; the e-mail is built when it is sent,
  from the request and the policy then in force (without `employee: true` it is dropped);
- IT (`notify: it:` addresses): a failed reload, a start on the last good configuration
  (gatekeeper.addons.lifecycle) and the monthly access review (`gatekeeper review --notify`).

`Notifier` is a daemon thread of the proxy that delivers due messages from that outbox, off
the request path, and retries a failed one with growing delays: a message stays queued until
it is sent, and the request itself never depends on delivery. A message queued by another
process (a command) goes out at the next poll, within `POLL_SECONDS`.

The `notify:` settings come from approvals.yaml, validated by the config loader; the ones in
force when a message is sent are used, so a fixed relay address works without a restart.
"""

from __future__ import annotations

import datetime as dt
import json
import smtplib
import ssl
import threading
import urllib.request
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from gatekeeper.core.model import Policy
from gatekeeper.logs import get_logger
from gatekeeper.metrics import Metrics
from gatekeeper.statedb import (
    APPROVED,
    EMPLOYEE_CHANNEL,
    AccessRequest,
    Notification,
    StateDB,
)

log = get_logger("gatekeeper.notify")

CHANNELS = ("smtp", "webhook")  # to the approver; also the keys of their settings
IT_CHANNEL = "it"  # e-mail to `notify: it:` through `notify: smtp`
SMTP_TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 900.0
POLL_SECONDS = 30.0  # a safety net: new requests wake the sender at once
# With `serve --workers N` one worker sends for all: the others' requests cannot wake it.
POOL_POLL_SECONDS = 2.0

Sender = Callable[[Mapping[str, Any], dict[str, Any]], None]
Sending = tuple[Sender, Mapping[str, Any], dict[str, Any]]  # sender, its settings, payload
Message = tuple[str, str]  # (outbox channel, payload JSON)
ItMessages = Callable[[Policy, str, list[str]], list[Message]]


def messages(policy: Policy, request: AccessRequest,
             console_url: str | None = None) -> list[tuple[str, str]]:
    """(channel, payload JSON) for each configured channel: what the approver needs to decide.
    `console_url` is the request's signed link into the approver's console, if it is on."""
    service = policy.services.get(request.service)
    payload = {
        "request_id": request.id,
        "employee": request.employee,
        "service": request.service,
        "service_name": service.name if service else request.service,
        "justification": request.justification,
        "created": request.created.isoformat(timespec="seconds"),
        "approver": policy.approver,
        "approve_command": f"gatekeeper approve {request.id}",
        "deny_command": f"gatekeeper deny {request.id}",
    }
    if console_url:
        payload["console_url"] = console_url
    payload["text"] = summary(payload)  # chat webhooks (Slack, Mattermost) show `text`
    text = json.dumps(payload, ensure_ascii=False)
    return [(channel, text) for channel in CHANNELS if channel in policy.notify]


def summary(payload: Mapping[str, Any]) -> str:
    link = payload.get("console_url")
    return (
        f"{payload['employee']} asks for access to {payload['service_name']}.\n\n"
        f"Justification: {payload['justification']}\n\n"
        f"Request id: {payload['request_id']} (submitted {payload['created']})\n\n"
        + (f"Approve or deny in the console (the link works once, for 7 days):\n{link}\n\n"
           if link else "")
        + f"To approve: {payload['approve_command']}\n"
        f"To deny:    {payload['deny_command']} --reason \"...\"\n"
        f"Pending requests: gatekeeper requests\n"
    )


# --- to IT ---------------------------------------------------------------------------------


def it_messages(policy: Policy, subject: str, text: str) -> list[Message]:
    """One e-mail to IT, or none when `notify: it:` names nobody."""
    if not policy.notify.get(IT_CHANNEL):
        return []
    return [(IT_CHANNEL, json.dumps({"subject": subject, "text": text}, ensure_ascii=False))]


def reload_failed_messages(policy: Policy, config_dir: str, problems: list[str]) -> list[Message]:
    return it_messages(
        policy, "gatekeeper: the configuration does not load",
        f"An edit of the configuration in {config_dir} does not load, so the proxy keeps "
        f"enforcing the last good version (policy {policy.sha256[:12]}):\n\n"
        + "".join(f"  {p}\n" for p in problems)
        + "\nFix the file (`gatekeeper check` lists the same problems); the proxy picks the "
        "fixed file up within a second.\n",
    )


def snapshot_start_messages(policy: Policy, config_dir: str,
                            problems: list[str]) -> list[Message]:
    return it_messages(
        policy, "gatekeeper started on the last good configuration",
        f"The proxy started, but the configuration in {config_dir} does not load, so it "
        f"enforces the last good configuration it saved (policy {policy.sha256[:12]}); "
        "/readyz answers 503 until the files are fixed:\n\n"
        + "".join(f"  {p}\n" for p in problems)
        + "\nFix the file (`gatekeeper check` lists the same problems); the proxy switches to "
        "it within a second, without a restart.\n",
    )


def review_messages(policy: Policy, review_text: str) -> list[Message]:
    """The monthly access review, as `gatekeeper review` prints it."""
    first_line = review_text.splitlines()[0] if review_text else "Access review"
    return it_messages(policy, f"gatekeeper: {first_line}", review_text)


# --- to the employee --------------------------------------------------------------------------


def decision_email(policy: Policy, request: AccessRequest) -> dict[str, Any] | None:
    """The e-mail telling the employee of the decision, or None when there is nobody to tell
    (`notify: employee:` off, or the employee is no longer known)."""
    employee = policy.employees.get(request.employee)
    if not policy.notify.get(EMPLOYEE_CHANNEL) or employee is None or not employee.email:
        return None
    service = policy.services.get(request.service)
    name = service.name if service else request.service
    if request.status == APPROVED:
        grant = policy.grants.get((request.employee, request.service))
        until = f" until {grant.expires}" if grant and grant.expires else ""
        accounts = " or ".join(sorted(grant.accounts)) if grant else ""
        text = (f"Your request to use {name} was approved{until}.\n"
                + (f"Sign in with your company account: {accounts}.\n" if accounts else ""))
    else:
        reason = f"\nReason: {request.decision_reason}\n" if request.decision_reason else ""
        text = (f"Your request to use {name} was denied by {request.decided_by}.\n{reason}"
                f"\nYou may ask again from the page that blocked {name}.\n")
    return {
        "to": employee.email,
        "subject": f"gatekeeper: your request for {name} was {request.status}",
        "text": text + f"\nRequest id: {request.id}\n",
    }


# --- delivery ---------------------------------------------------------------------------------


def send_smtp(config: Mapping[str, Any], payload: dict[str, Any]) -> None:
    message = EmailMessage()
    message["Subject"] = payload.get("subject") or (
        f"gatekeeper: {payload['employee']} requests {payload['service_name']}"
        f" ({payload['request_id']})"
    )
    message["From"] = config["from"]
    message["To"] = ", ".join(config["to"])
    message.set_content(payload["text"])
    with smtplib.SMTP(config["host"], config["port"], timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        if config["starttls"]:
            smtp.starttls(context=ssl.create_default_context())
        if config["username"]:
            password = Path(config["password_file"]).read_text().strip()
            smtp.login(config["username"], password)
        smtp.send_message(message)


# Direct connections: the gateway reaches the receiver itself (no proxy from the environment).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def send_webhook(config: Mapping[str, Any], payload: dict[str, Any]) -> None:
    request = urllib.request.Request(
        config["url"],
        data=json.dumps(payload, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "gatekeeper"},
        method="POST",
    )
    with _OPENER.open(request, timeout=config["timeout_seconds"]) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered HTTP {response.status}")


SENDERS: dict[str, Sender] = {"smtp": send_smtp, "webhook": send_webhook}


def retry_delay(attempts: int, first: float = FIRST_RETRY_SECONDS) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling, capped."""
    return min(MAX_RETRY_SECONDS, first * 2 ** max(0, attempts - 1))


class Notifier:
    """Delivers the outbox from a daemon thread; `wake()` after queueing a new message."""

    def __init__(self, db: StateDB, policy: Callable[[], Policy | None], metrics: Metrics, *,
                 first_retry: float = FIRST_RETRY_SECONDS,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.policy = policy
        self.metrics = metrics
        self.first_retry = first_retry
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gatekeeper-notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=SMTP_TIMEOUT_SECONDS + 5)

    def wake(self) -> None:
        self._wake.set()

    def deliver_due(self, now: dt.datetime | None = None) -> float | None:
        """Try every due message once; returns seconds until the earliest retry it scheduled."""
        now = now or dt.datetime.now(dt.UTC)
        next_retry: float | None = None
        for note in self.db.due_notifications(now):
            if self._stop.is_set():
                break
            delay = self._deliver(note, now)
            if delay is not None:
                next_retry = delay if next_retry is None else min(next_retry, delay)
        return next_retry

    def _deliver(self, note: Notification, now: dt.datetime) -> float | None:
        """Send one message; on failure mark it for a retry and return the delay."""
        try:
            sending = self._sending(note)
            if sending is None:  # nobody to tell: done
                self.db.mark_sent(note.id, dt.datetime.now(dt.UTC))
                log.info("notification_dropped", channel=note.channel, request_id=note.request_id)
                return None
            sender, config, payload = sending
            sender(config, payload)
        except Exception as e:  # any failure: the message stays queued and is retried
            delay = retry_delay(note.attempts + 1, self.first_retry)
            error = f"{type(e).__name__}: {e}"
            self.db.mark_failed(note.id, now + dt.timedelta(seconds=delay), error)
            self.metrics.notifications.labels(note.channel, "failure").inc()
            log.warning("notification_failed", channel=note.channel, request_id=note.request_id,
                        attempts=note.attempts + 1, retry_in_seconds=delay, error=error)
            return delay
        self.db.mark_sent(note.id, dt.datetime.now(dt.UTC))
        self.metrics.notifications.labels(note.channel, "success").inc()
        log.info("notification_sent", channel=note.channel, request_id=note.request_id,
                 attempts=note.attempts + 1)
        return None

    def _sending(self, note: Notification) -> Sending | None:
        """How to send `note` under the policy in force: (sender, settings, payload), or None
        when the policy tells nobody of it. Raises when it cannot be sent now."""
        policy = self.policy()
        if policy is None:
            raise LookupError("no policy in force")
        smtp = policy.notify.get("smtp")
        if note.channel == EMPLOYEE_CHANNEL:
            email = decision_email(policy, self.db.get_request(note.request_id or ""))
            if email is None:
                return None
            return send_smtp, _smtp_to(smtp, (email["to"],)), email
        if note.channel == IT_CHANNEL:
            return send_smtp, _smtp_to(smtp, policy.notify.get(IT_CHANNEL)), json.loads(
                note.payload)
        config = policy.notify.get(note.channel)
        if not isinstance(config, Mapping):
            raise LookupError(f"notify: {note.channel} is no longer configured")
        return SENDERS[note.channel], config, json.loads(note.payload)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                next_retry = self.deliver_due()
            except Exception as e:  # the database is busy or gone: try again later
                log.error("notifications_unreadable", error=f"{type(e).__name__}: {e}")
                next_retry = None
            poll = self.poll_seconds
            timeout = poll if next_retry is None else min(poll, next_retry)
            self._wake.wait(max(0.05, timeout))


def _smtp_to(smtp: Any, to: Any) -> Mapping[str, Any]:
    """The relay settings of `notify: smtp`, addressed to `to` instead of the approver."""
    if not isinstance(smtp, Mapping) or not to:
        raise LookupError("notify: smtp (or the recipients) are no longer configured")
    return {**smtp, "to": tuple(to)}
