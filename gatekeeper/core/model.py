"""The policy model: immutable values built once per (re)load, read by every request.

Nothing here does I/O or knows about mitmproxy. A `Policy` is built by
`gatekeeper.config.loader` from the config files and replaced as a whole on reload, so a
request that read one `Policy` sees all of it.
"""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from gatekeeper.core.hosts import DomainIndex
from gatekeeper.core.identifiers import normalize_user

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Review and activity events are kept this long (days) unless approvals.yaml says otherwise:
# a monthly review still sees the same month a year before.
DEFAULT_RETENTION_DAYS = 400


class Verdict(enum.StrEnum):
    """What the proxy does with a request."""

    PASS = "pass"  # not governed: relayed untouched
    ALLOW = "allow"  # governed and approved
    BLOCK = "block"  # governed and refused


class Reason(enum.StrEnum):
    """Why. Fixed strings: they are metric label values, header values and log fields."""

    NOT_GOVERNED = "not_governed"
    APPROVED = "approved"
    OPEN_ACCESS = "open_access"  # a service open to everyone (tenant headers only)
    UNKNOWN_EMPLOYEE = "unknown_employee"
    NOT_APPROVED = "not_approved"
    EXPIRED = "expired"
    PERSONAL_ACCOUNT = "personal_account"
    ACCOUNT_MISMATCH = "account_mismatch"
    UNVERIFIABLE_LOGIN = "unverifiable_login"
    UNVERIFIED_SESSION = "unverified_session"
    PROHIBITED_ACTION = "prohibited_action"
    UNREADABLE_REQUEST = "unreadable_request"  # a prohibited rule could match an unread body
    TERMS_NOT_ACKNOWLEDGED = "terms_not_acknowledged"
    INTERNAL_ERROR = "internal_error"


REASON_TEXT: Mapping[Reason, str] = MappingProxyType(
    {
        Reason.UNKNOWN_EMPLOYEE: "We could not tell who you are. Sign in to the proxy with your "
        "office account, or use a registered office device.",
        Reason.NOT_APPROVED: "Your access to this service has not been approved.",
        Reason.EXPIRED: "Your approval for this service has expired.",
        Reason.PERSONAL_ACCOUNT: "Only your company account may be used on this service; "
        "personal accounts are not allowed.",
        Reason.ACCOUNT_MISMATCH: "This company account belongs to someone else.",
        Reason.UNVERIFIABLE_LOGIN: "This sign-in could not be checked, so it was stopped.",
        Reason.UNVERIFIED_SESSION: "You are signed in with an account that was not verified. "
        "Sign in again with your company account, with its address and password on the "
        "site's own sign-in form: a sign-in through another service (\"Continue with Google\" "
        "or Apple), a QR code or a link sent by e-mail cannot be checked by the proxy.",
        Reason.PROHIBITED_ACTION: "Company accounts may not be used for this.",
        Reason.UNREADABLE_REQUEST: "This request could not be checked against the rules for "
        "company accounts, so it was stopped.",
        Reason.TERMS_NOT_ACKNOWLEDGED: "Please accept the service's Terms of Use first.",
        Reason.INTERNAL_ERROR: "The policy could not be applied, so the request was stopped.",
    }
)


class Access(enum.StrEnum):
    """Who may use a service: only employees with a grant, or everyone (then the proxy only
    applies the service's tenant headers and rules, such as Microsoft tenant restrictions)."""

    APPROVED = "approved"
    EVERYONE = "everyone"


class Mode(enum.StrEnum):
    """`enforce` blocks; `report` logs and counts what would be blocked and lets it through."""

    ENFORCE = "enforce"
    REPORT = "report"


FieldPath = tuple[int | None, ...]  # protobuf field numbers from the outside in; None: any


@dataclass(frozen=True, slots=True)
class ProtobufFields:
    """Where a protobuf sign-in (gRPC-Web) holds the account and the password, by path of
    field numbers: protobuf carries no field names."""

    identifiers: tuple[FieldPath, ...]
    passwords: tuple[FieldPath, ...] = ()


@dataclass(frozen=True, slots=True)
class LoginRule:
    """A request that signs in; every identifier in `fields` must be a granted account."""

    path: re.Pattern[str]
    fields: tuple[str, ...]  # with `protobuf`: the names of its identifier paths (`5.1`)
    method: str = "POST"
    hosts: frozenset[str] | None = None  # None: every host of the service
    # Only the request whose fields have these values is the sign-in step (multi-step flows).
    when: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    protobuf: ProtobufFields | None = None  # the body is protobuf: fields by number


@dataclass(frozen=True, slots=True)
class ActionRule:
    """A use of a company ID: prohibited (blocked) or audited (recorded)."""

    action: str
    path: re.Pattern[str]
    method: str | None = None  # None: any method
    hosts: frozenset[str] | None = None
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Audited: the fields (any depth, query included) whose first value names what the action
    # was about (a group or profile id), recorded with it; a path group `(?P<target>...)` too.
    target: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """Session tokens beside the cookie: request headers that carry one (`Authorization`
    without its scheme word), and where a login response hands one out."""

    headers: tuple[str, ...] = ()  # request headers, checked like the session cookie
    hosts: frozenset[str] | None = None  # hosts where `headers`/`params` are checked; None: all
    # Only these (case-folded) scheme words of a header carry a session (X: `oauth`, never
    # the app-wide Bearer); empty: any.
    schemes: frozenset[str] = frozenset()
    params: tuple[str, ...] = ()  # query parameters and urlencoded form fields with a token
    issued_headers: tuple[str, ...] = ()  # response headers of a checked login
    issued_fields: tuple[str, ...] = ()  # JSON keys (any depth) of a checked login's response
    issued_pattern: re.Pattern[str] | None = None  # group 1: a token inside the response text
    # JSON keys of a checked login's response that hold cookies for the client's jar, as
    # [{name, value}] (Facebook's Graph `session_cookies`): the session cookie's value.
    issued_cookies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rules:
    """Catalog rules of one service, by kind, in catalog order: all of them, those a request
    method may meet (`Service.rules_for`), or those that apply to one request line
    (`gatekeeper.core.logins.applicable`)."""

    logins: tuple[LoginRule, ...] = ()
    signups: tuple[LoginRule, ...] = ()
    prohibited: tuple[ActionRule, ...] = ()
    audited: tuple[ActionRule, ...] = ()

    @property
    def login(self) -> LoginRule | None:
        """The first login rule: the one a request is checked by."""
        return self.logins[0] if self.logins else None

    @property
    def account(self) -> LoginRule | None:
        """A login, else a sign-up rule: the request names an account to be checked."""
        return self.logins[0] if self.logins else self.signups[0] if self.signups else None

    @property
    def field_rules(self) -> tuple[ActionRule, ...]:
        """The action rules that look at field values: whether they match depends on the
        body."""
        return tuple(r for r in (*self.prohibited, *self.audited) if r.fields)

    @property
    def needs_body(self) -> bool:
        """Whether a login or sign-up rule, or an action rule that looks at field values,
        is among these: then the decision waits for the body."""
        return self.account is not None or bool(self.field_rules)

    def where(self, keep: Callable[[LoginRule | ActionRule], bool]) -> Rules:
        """The rules `keep` accepts, by kind, in order."""
        return Rules(*(tuple(r for r in group if keep(r)) if group else ()
                       for group in (self.logins, self.signups, self.prohibited,
                                     self.audited)))

    def with_method(self, method: str | None) -> Rules:
        """The rules a request with `method` may meet (a rule without a method: any); with
        None, those that name no method."""
        return self.where(lambda rule: rule.method is None or rule.method == method)


@dataclass(frozen=True, slots=True)
class Service:
    """One governed service from `services.yaml`."""

    id: str
    name: str
    domains: tuple[str, ...]
    terms_url: str | None = None
    access: Access = Access.APPROVED
    logins: tuple[LoginRule, ...] = ()
    # Requests that create an account: checked like logins (the address must be a company
    # account of the employee), and recorded.
    signups: tuple[LoginRule, ...] = ()
    session_cookie: str | None = None
    # The session cookie is checked only when the request's cookies have these values
    # (Pinterest: `_auth=1`, a signed-in browser; signed-out visitors get the cookie too).
    session_when: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    headers: tuple[tuple[str, str], ...] = ()  # already expanded ({company_domains} ...)
    prohibited: tuple[ActionRule, ...] = ()
    audited: tuple[ActionRule, ...] = ()
    session_tokens: SessionTokens | None = None
    # The credential guard (gatekeeper.core.credentials): folded field names that carry a
    # password (the catalog's list plus the service's), and paths where `Authorization:
    # Basic` names an app rather than a person.
    credential_fields: frozenset[str] = frozenset()
    basic_auth_apps: tuple[re.Pattern[str], ...] = ()
    # The rules by request method, built with the service: a request is matched only against
    # the rules its method may meet (a GET usually none), at the cost of one dict probe.
    _by_method: Mapping[str, Rules] = field(init=False, repr=False, compare=False)
    _other_methods: Rules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        every = Rules(self.logins, self.signups, self.prohibited, self.audited)
        methods = {rule.method for rule in (*self.logins, *self.signups, *self.prohibited,
                                            *self.audited) if rule.method}
        object.__setattr__(self, "_by_method", MappingProxyType(
            {method: every.with_method(method) for method in methods}))
        object.__setattr__(self, "_other_methods", every.with_method(None))

    def rules_for(self, method: str) -> Rules:
        """The rules a request with `method` (upper case) may meet, in catalog order."""
        return self._by_method.get(method, self._other_methods)

    @property
    def guarded(self) -> bool:
        """Whether the credential guard applies: to the services that need a grant; the
        vendors of services open to everyone enforce their own tenant restrictions."""
        return self.access is Access.APPROVED


@dataclass(frozen=True, slots=True)
class Employee:
    """One employee from `approvals.yaml` or the office directory; `id` is the proxy-auth
    user name."""

    id: str
    email: str
    addresses: tuple[IPNetwork, ...] = ()
    display_name: str = ""  # from the office directory, when it knows the person


@dataclass(frozen=True, slots=True)
class Grant:
    """An approved exception: `employee` may use `service` with `accounts`."""

    employee: str
    service: str
    approved_by: str
    approved_on: dt.date
    accounts: frozenset[str]  # normalized (NFKC, case-folded)
    expires: dt.date | None = None
    require_terms: bool | None = None  # None: the file-wide default

    def expired(self, today: dt.date) -> bool:
        """From the `expires` date on, the grant no longer applies."""
        return self.expires is not None and today >= self.expires


@dataclass(frozen=True, slots=True)
class AddressIndex:
    """Source address -> employee id: exact addresses in one dict, networks in one dict per
    prefix length, so a lookup costs one probe per distinct prefix length whatever the size
    of the office (a clinic group may list thousands of device networks)."""

    exact: Mapping[ipaddress.IPv4Address | ipaddress.IPv6Address, str]
    # (IP version, prefix length, network address >> host bits -> employee), most specific first
    networks: tuple[tuple[int, int, Mapping[int, str]], ...]
    # address string -> employee: an office has a few hundred devices at most (bounded anyway)
    _memo: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, owners: Iterable[tuple[IPNetwork, str]]) -> AddressIndex:
        """The index of `(network, employee)` pairs; the first owner of a network wins."""
        exact: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
        tables: dict[tuple[int, int], dict[int, str]] = {}
        for network, employee in owners:
            if network.num_addresses == 1:
                exact.setdefault(network.network_address, employee)
                continue
            table = tables.setdefault((network.version, network.prefixlen), {})
            host_bits = network.max_prefixlen - network.prefixlen
            table.setdefault(int(network.network_address) >> host_bits, employee)
        networks = tuple(
            (version, prefixlen, MappingProxyType(table))
            for (version, prefixlen), table in sorted(tables.items(), key=lambda i: -i[0][1])
        )
        return cls(MappingProxyType(exact), networks)

    def lookup(self, address: str) -> str | None:
        """The employee whose `addresses` cover `address` (a client's peer address)."""
        memo = self._memo
        try:
            return memo[address]
        except KeyError:
            pass
        found = self._find(address)
        if len(memo) >= 4096:
            memo.clear()
        memo[address] = found
        return found

    def _find(self, address: str) -> str | None:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        found = self.exact.get(ip)
        if found is not None:
            return found
        number, max_prefixlen = int(ip), ip.max_prefixlen
        for version, prefixlen, table in self.networks:
            if version == ip.version:
                found = table.get(number >> (max_prefixlen - prefixlen))
                if found is not None:
                    return found
        return None


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything the proxy enforces, validated and precompiled."""

    approver: str
    company_domains: tuple[str, ...]
    mode: Mode
    services: Mapping[str, Service]
    employees: Mapping[str, Employee]
    grants: Mapping[tuple[str, str], Grant]  # (employee, service) -> grant
    domains: DomainIndex  # host -> service id
    addresses: AddressIndex
    accounts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # normalized company account -> the employee it belongs to
    require_terms_acknowledgement: bool = False
    notify: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    sha256: str = ""  # of the files it was built from: which policy is live
    unfilled: tuple[str, ...] = ()  # header placeholders IT has not filled in yet (not sent)
    # With an office directory (gatekeeper.core.directory.compose): normalized sign-in name
    # (`normalize_user`) -> employee id, and the realms and domains a sign-in name may carry.
    user_ids: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    realms: frozenset[str] = frozenset()
    # Review and activity events older than this many days are pruned (approvals.yaml).
    event_retention_days: int = DEFAULT_RETENTION_DAYS

    def identify(self, proxy_user: str | None, source_address: str | None) -> str | None:
        """The employee id: the proxy-auth user name, else the device's source address."""
        if proxy_user:
            if proxy_user in self.employees:
                return proxy_user
            if self.user_ids:  # `CLINIC\Dave`, `Dave@clinic.example`: who the directory knows
                return self.user_ids.get(normalize_user(proxy_user, self.realms))
            return None
        if source_address:
            return self.addresses.lookup(source_address)
        return None

    def terms_required(self, grant: Grant) -> bool:
        """Whether `grant` needs a Terms-of-Use acknowledgement (per grant, else file-wide)."""
        if grant.require_terms is not None:
            return grant.require_terms
        return self.require_terms_acknowledgement


class Decision(NamedTuple):
    """The outcome for one request, with a reason that is always one of `Reason`.

    A NamedTuple rather than a frozen dataclass: it is built once per governed request, and
    a tuple is several times cheaper to build.
    """

    verdict: Verdict
    reason: Reason
    service: str | None = None
    employee: str | None = None
    action: str | None = None  # the prohibited action, or `sign_up` for a refused sign-up

    @property
    def blocked(self) -> bool:
        return self.verdict is Verdict.BLOCK

    def enforced(self, mode: Mode) -> bool:
        """Whether the proxy applies this decision under `mode` (Smokescreen's
        "allow and report"): a block in report mode is only reported (logged and counted,
        then let through); an internal error blocks in every mode; anything else is applied."""
        return not (self.blocked and mode is Mode.REPORT
                    and self.reason is not Reason.INTERNAL_ERROR)
