"""Scrape-time gauges: grants from the live policy, access requests from the state database.

They are computed when Prometheus scrapes rather than kept current by the proxy: grants expire
by the calendar and requests arrive from CLI processes, so a value computed at scrape time is
never stale. A scrape never fails because of them: if the state database cannot be read, the
two request gauges are left out of that scrape (and the reason is logged once).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gatekeeper.core.model import Policy
from gatekeeper.logs import get_logger
from gatekeeper.statedb import StateDB

log = get_logger("gatekeeper.metrics")

EXPIRING_SOON = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Pending:
    """The approver's queue: how many requests wait, and since when the oldest does."""

    count: int
    oldest_created: dt.datetime | None


class PendingRequests:
    """Reads the pending access requests from the proxy's state database for a scrape.

    `db()` is the database the proxy shares between its addons (None until it is open).
    """

    def __init__(self, db: Callable[[], StateDB | None]) -> None:
        self.db = db
        self._last_error: str | None = None

    def read(self) -> Pending | None:
        """The queue now; None when the database is not open or cannot be read."""
        db = self.db()
        if db is None:
            return None
        try:
            pending = Pending(db.pending_count(), db.oldest_pending_created())
        except Exception as e:  # sqlite3, StateError, OSError...: a scrape must not fail
            error = f"{type(e).__name__}: {e}"
            if error != self._last_error:  # once per distinct problem, not once per scrape
                log.warning("pending_requests_unreadable", db=str(db.path), error=error)
            self._last_error = error
            return None
        self._last_error = None
        return pending


class PolicyCollector(Collector):
    """The grant and access-request gauges, computed from `policy()` and `pending()`."""

    def __init__(
        self,
        policy: Callable[[], Policy | None],
        pending: Callable[[], Pending | None],
        *,
        today: Callable[[], dt.date] = dt.date.today,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.pending = pending
        self.today = today
        self.now = now

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so registering does not run a collection."""
        return iter(_families())

    def collect(self) -> Iterator[Metric]:
        active, expiring_soon, expiry, pending_count, oldest_age = _families()
        policy = self.policy()
        if policy is not None:
            _add_grants(policy, self.today(), active, expiring_soon, expiry)
            yield from (active, expiring_soon, expiry)
        pending = self.pending()
        if pending is not None:
            pending_count.add_metric([], pending.count)
            age = 0.0
            if pending.oldest_created is not None:
                age = max(0.0, self.now() - pending.oldest_created.timestamp())
            oldest_age.add_metric([], age)
            yield from (pending_count, oldest_age)


def _add_grants(policy: Policy, today: dt.date, active: GaugeMetricFamily,
                expiring_soon: GaugeMetricFamily, expiry: GaugeMetricFamily) -> None:
    """Count the unexpired grants per service (every catalog service, 0 included)."""
    per_service = dict.fromkeys(policy.services, 0)
    soonest: dict[str, dt.date] = {}
    soon = 0
    for grant in policy.grants.values():
        if grant.expired(today) or grant.employee not in policy.employees:
            continue  # a leaver's grant (office directory) is in force for nobody
        per_service[grant.service] = per_service.get(grant.service, 0) + 1
        if grant.expires is None:
            continue
        if grant.expires - today <= EXPIRING_SOON:
            soon += 1
        if grant.service not in soonest or grant.expires < soonest[grant.service]:
            soonest[grant.service] = grant.expires
    for service, count in sorted(per_service.items()):
        active.add_metric([service], count)
    expiring_soon.add_metric([], soon)
    for service, expires in sorted(soonest.items()):
        # Blocking starts at local midnight of the `expires` date (the proxy uses local dates).
        expiry.add_metric([service], dt.datetime.combine(expires, dt.time.min).timestamp())


def _families() -> tuple[GaugeMetricFamily, ...]:
    return (
        GaugeMetricFamily(
            "gatekeeper_active_grants",
            "Approved grants that have not expired, per service. Compare with what the "
            "approver expects; `gatekeeper review` lists them.",
            labels=["service"],
        ),
        GaugeMetricFamily(
            "gatekeeper_grants_expiring_soon",
            "Active grants that expire within 30 days. The approver renews them "
            "(`gatekeeper grant ... --expires`) or lets them lapse.",
        ),
        GaugeMetricFamily(
            "gatekeeper_grant_expiry_timestamp_seconds",
            "Unix time at which the soonest-expiring active grant of the service expires; only "
            "services with a grant that expires have a series.",
            labels=["service"],
        ),
        GaugeMetricFamily(
            "gatekeeper_access_requests_pending",
            "Access requests waiting for the approver: `gatekeeper requests` lists them.",
        ),
        GaugeMetricFamily(
            "gatekeeper_oldest_pending_request_age_seconds",
            "How long the oldest pending access request has waited (0 when none is pending). "
            "Over two days: remind the approver.",
        ),
    )
