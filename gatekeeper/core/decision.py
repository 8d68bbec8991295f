"""The access decision: who, where, when -> allow, block or pass, always with a reason."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from gatekeeper.core.model import Access, Decision, Policy, Reason, Verdict

NOT_GOVERNED = Decision(Verdict.PASS, Reason.NOT_GOVERNED)


def governing_services(policy: Policy, hosts: Iterable[str | None]) -> list[str]:
    """The distinct services that `hosts` (connect target, SNI, Host header) belong to.

    If any names a governed service the request is governed, so a Host header cannot hide
    a social site behind an innocent connect target, nor the other way round; and a grant
    for one service cannot carry a Host header of another through the same connection.
    """
    lookup = policy.domains.lookup
    found: list[str] = []
    for host in hosts:
        if host:
            service = lookup(host)
            if service is not None and service not in found:
                found.append(service)
    return found


def decide_service(
    policy: Policy, employee: str | None, service: str, today: dt.date
) -> Decision:
    """The decision for a request to a governed `service` by `employee` (None: unknown)."""
    if policy.services[service].access is Access.EVERYONE:
        return Decision(Verdict.ALLOW, Reason.OPEN_ACCESS, service, employee)
    if employee is None or employee not in policy.employees:
        return Decision(Verdict.BLOCK, Reason.UNKNOWN_EMPLOYEE, service, None)
    grant = policy.grants.get((employee, service))
    if grant is None:
        return Decision(Verdict.BLOCK, Reason.NOT_APPROVED, service, employee)
    if grant.expired(today):
        return Decision(Verdict.BLOCK, Reason.EXPIRED, service, employee)
    return Decision(Verdict.ALLOW, Reason.APPROVED, service, employee)


def decide(
    policy: Policy, employee: str | None, hosts: Iterable[str | None], today: dt.date
) -> Decision:
    """The decision for a request whose flow names `hosts`."""
    services = governing_services(policy, hosts)
    if not services:
        return NOT_GOVERNED
    decision = decide_service(policy, employee, services[0], today)
    for other in services[1:]:  # rare: one request naming two services; any block wins
        if decision.blocked:
            break
        decision = decide_service(policy, employee, other, today)
    return decision
