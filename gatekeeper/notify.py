"""Telling the approver about a new access request: by e-mail (an SMTP relay) and/or a webhook.

`messages()` builds one message per configured channel; the portal hands it to
`StateDB.submit_request`, so the request and its messages are recorded in one transaction.
`Notifier` is a daemon thread that delivers due messages from that outbox, off the request
path, and retries a failed one with growing delays: a message stays queued until it is sent,
and the request itself never depends on delivery.

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
from gatekeeper.statedb import AccessRequest, Notification, StateDB

log = get_logger("gatekeeper.notify")

CHANNELS = ("smtp", "webhook")
SMTP_TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 900.0
POLL_SECONDS = 30.0  # a safety net: new requests wake the sender at once
# With `serve --workers N` one worker sends for all: the others' requests cannot wake it.
POOL_POLL_SECONDS = 2.0

Sender = Callable[[Mapping[str, Any], dict[str, Any]], None]


def messages(policy: Policy, request: AccessRequest) -> list[tuple[str, str]]:
    """(channel, payload JSON) for each configured channel: what the approver needs to decide."""
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
    payload["text"] = summary(payload)  # chat webhooks (Slack, Mattermost) show `text`
    text = json.dumps(payload, ensure_ascii=False)
    return [(channel, text) for channel in CHANNELS if channel in policy.notify]


def summary(payload: Mapping[str, Any]) -> str:
    return (
        f"{payload['employee']} asks for access to {payload['service_name']}.\n\n"
        f"Justification: {payload['justification']}\n\n"
        f"Request id: {payload['request_id']} (submitted {payload['created']})\n\n"
        f"To approve: {payload['approve_command']}\n"
        f"To deny:    {payload['deny_command']} --reason \"...\"\n"
        f"Pending requests: gatekeeper requests\n"
    )


def send_smtp(config: Mapping[str, Any], payload: dict[str, Any]) -> None:
    message = EmailMessage()
    message["Subject"] = (
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
        policy = self.policy()
        config = policy.notify.get(note.channel) if policy else None
        try:
            if not isinstance(config, Mapping):
                raise LookupError(f"notify: {note.channel} is no longer configured")
            SENDERS[note.channel](config, json.loads(note.payload))
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
