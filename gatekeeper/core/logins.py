"""Company accounts only: which catalog rule a request matches, which account names a login
carries, and whether they are the employee's company accounts.

Pure code: the adapter hands in the request line and the already decoded body (or None when
it could not be decoded or is over the size limit). A login we cannot read is refused, never
waved through, so every "cannot tell" path ends in `unverifiable`.
"""

from __future__ import annotations

import codecs
import email
import email.message
import enum
import json
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from gatekeeper.core.identifiers import normalize_identifier
from gatekeeper.core.model import ActionRule, LoginRule, Policy, Reason, Service
from gatekeeper.core.paths import canonical_path

MAX_FORM_FIELDS = 10_000  # a login form has a dozen; this only bounds a hostile body
# Charsets that read ASCII bytes as the same ASCII text. In any other (utf-7, utf-16, EBCDIC)
# a field would be one value to gatekeeper and another to a server that ignores the label.
ASCII_SAFE_CHARSETS = frozenset({"utf-8", "ascii", "iso8859-1", "cp1252"})


class LoginResult(enum.StrEnum):
    """The outcome of a login check; also the `result` label of gatekeeper_logins_total."""

    COMPANY = "company"
    PERSONAL = "personal"
    MISMATCH = "mismatch"
    UNVERIFIABLE = "unverifiable"


_RESULT_REASON: Mapping[LoginResult, Reason] = {
    LoginResult.PERSONAL: Reason.PERSONAL_ACCOUNT,
    LoginResult.MISMATCH: Reason.ACCOUNT_MISMATCH,
    LoginResult.UNVERIFIABLE: Reason.UNVERIFIABLE_LOGIN,
}


@dataclass(frozen=True, slots=True)
class Target:
    """What the rules look at: method, every normalized host the request names, the path
    (without the query) in its raw and canonical forms, and the raw query string."""

    method: str
    hosts: frozenset[str]
    paths: tuple[str, ...]
    query: str = ""


def make_target(method: str, hosts: Iterable[str | None], path: str, query: str = "") -> Target:
    """A `Target`; a path that only matches a rule after `//`, `/./`, `..`, `;x` or
    %-escapes are undone (as the server would) still matches."""
    canonical = canonical_path(path)
    paths = (path,) if canonical == path else (path, canonical)
    return Target(method.upper(), frozenset(h for h in hosts if h), paths, query)


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """A checked login. `identifier` is the offending normalized value (log it masked only),
    `owner` the employee it belongs to for a mismatch, `detail` why it was unverifiable."""

    result: LoginResult
    identifier: str | None = None
    owner: str | None = None
    detail: str | None = None

    @property
    def reason(self) -> Reason | None:
        """The block reason; None for a company login."""
        return _RESULT_REASON.get(self.result)


def applies(rule: LoginRule | ActionRule, target: Target) -> bool:
    """Method, hosts and path (a regular expression matched from the start) all fit."""
    if rule.method is not None and rule.method != target.method:
        return False
    if rule.hosts is not None and rule.hosts.isdisjoint(target.hosts):
        return False
    return any(rule.path.match(path) for path in target.paths)


def login_rule(service: Service, target: Target) -> LoginRule | None:
    """The first login rule of `service` the request matches."""
    return next((rule for rule in service.logins if applies(rule, target)), None)


def needs_body(service: Service, target: Target) -> bool:
    """Whether a login rule, or an action rule that looks at field values, applies: then the
    decision waits for the body."""
    if login_rule(service, target) is not None:
        return True
    rules = (*service.prohibited, *service.audited)
    return any(rule.fields and applies(rule, target) for rule in rules)


# --- reading fields -------------------------------------------------------------------------

Value = str | None  # None: the field is there but holds something that is not a plain value


class Form:
    """Every (name, value) pair of a request: query string plus urlencoded, multipart or JSON
    body (JSON keys at any depth). Repeated names keep every value, in order."""

    __slots__ = ("_values",)

    def __init__(self, pairs: Iterable[tuple[str, Value]]) -> None:
        self._values: dict[str, list[Value]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def values(self, name: str) -> list[Value]:
        return self._values.get(name, [])


def read_form(content_type: str, body: bytes, query: str = "") -> Form | None:
    """The request's fields, or None when the query or body cannot be parsed."""
    try:
        pairs = list(_urlencoded(query, "utf-8"))
        if body.strip():
            pairs.extend(_body_pairs(content_type, body))
    except (ValueError, LookupError, RecursionError):
        return None  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
    return Form(pairs)


def _body_pairs(content_type: str, body: bytes) -> Iterator[tuple[str, Value]]:
    media, params = _media_type(content_type)
    charset = _charset(params.get("charset", "utf-8"))
    if media == "multipart/form-data":
        return _multipart(content_type, body)
    json_typed = media == "application/json" or media.endswith("+json")
    sniffed = media != "application/x-www-form-urlencoded" and body.lstrip()[:1] in (b"{", b"[")
    if json_typed or sniffed:  # untyped or text/plain JSON: what a server might accept
        return _json_pairs(body)
    return _urlencoded(body.decode(charset), charset)


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """The media type and its parameters; a parameter given twice (two boundaries, two
    charsets) is read differently by different servers, so it is refused."""
    message = email.message.Message()
    message["content-type"] = content_type or "application/octet-stream"
    names = [k.lower() for k, _ in message.get_params(failobj=[])[1:]]
    if len(set(names)) != len(names):
        raise ValueError("a Content-Type parameter appears twice")
    params = {k.lower(): v for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


def _charset(name: str) -> str:
    """The codec for a declared charset; raises for one that is not ASCII-safe."""
    canonical = codecs.lookup(name).name  # LookupError for an unknown one
    if canonical not in ASCII_SAFE_CHARSETS:
        raise ValueError(f"charset {name!r} reads ASCII differently")
    return canonical


def _field_name(name: str) -> str:
    """`email[]` and `email[0]` are `email` to PHP- and Rails-style servers."""
    return name.split("[", 1)[0]


def _urlencoded(text: str, charset: str) -> Iterator[tuple[str, Value]]:
    for name, value in urllib.parse.parse_qsl(
        text, keep_blank_values=True, encoding=charset, errors="strict",
        max_num_fields=MAX_FORM_FIELDS,
    ):
        yield _field_name(name), value


def _multipart(content_type: str, body: bytes) -> Iterator[tuple[str, Value]]:
    """The parts of a multipart/form-data body. A part that servers read in different ways
    is refused: one with a Content-Transfer-Encoding (RFC 7578 drops it; a server that
    ignores it reads the raw text), two Content-Disposition or Content-Type headers, a
    nested multipart, or a charset that is not ASCII-safe."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = email.message_from_bytes(head + body)
    if message.defects or not message.is_multipart():
        raise ValueError("malformed multipart body")
    for part in message.get_payload():
        if (part.defects or part.is_multipart() or "content-transfer-encoding" in part
                or len(part.get_all("content-disposition", [])) != 1
                or len(part.get_all("content-type", [])) > 1):
            raise ValueError("ambiguous multipart part")
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ValueError("multipart part without a plain field name")
        payload = part.get_payload(decode=True)
        charset = _charset(part.get_content_charset() or "utf-8")
        yield _field_name(name), payload.decode(charset) if isinstance(payload, bytes) else None


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as the list of its pairs, so a repeated key keeps every value."""


def _json_pairs(body: bytes) -> Iterator[tuple[str, Value]]:
    stack = [json.loads(body, object_pairs_hook=_Pairs)]
    while stack:  # iterative: nesting depth cannot exhaust the Python stack here
        node = stack.pop()
        if isinstance(node, _Pairs):
            for key, value in node:
                yield from ((key, v) for v in _scalars(value))
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def _scalars(value: object) -> Iterator[Value]:
    """The plain values a JSON key holds: itself, or the items of a list; None for anything
    that is not a plain value (an object, null, a nested list)."""
    for item in value if isinstance(value, list) and not isinstance(value, _Pairs) else [value]:
        if isinstance(item, str):
            yield item
        elif isinstance(item, bool):
            yield "true" if item else "false"
        elif isinstance(item, int | float):
            yield json.dumps(item)
        else:
            yield None


# --- checks ---------------------------------------------------------------------------------


def check_login(
    rule: LoginRule,
    accounts: frozenset[str],
    employee: str | None,
    owners: Mapping[str, str],
    form: Form | None,
) -> LoginCheck:
    """Every identifier in the rule's fields must be one of `accounts` (normalized: the
    grant's accounts). `owners` maps normalized company accounts to their employee
    (Policy.accounts); `form` is None when the body could not be read."""
    if form is None:
        return LoginCheck(LoginResult.UNVERIFIABLE, detail="unreadable_body")
    values = [value for name in rule.fields for value in form.values(name)]
    return classify(values, accounts, employee, owners)


def classify(
    values: Iterable[Value],
    accounts: frozenset[str],
    employee: str | None,
    owners: Mapping[str, str],
) -> LoginCheck:
    """Another employee's account beats a personal one beats an unreadable value; empty
    values name no account and are skipped, but at least one identifier must be there."""
    mismatch: LoginCheck | None = None
    personal: LoginCheck | None = None
    unreadable = False
    seen = False
    for value in values:
        if value is None:
            unreadable = True
            continue
        identifier = normalize_identifier(value)
        if not identifier:
            continue
        seen = True
        if identifier in accounts:
            continue
        owner = owners.get(identifier)
        if owner is not None and owner != employee:
            mismatch = mismatch or LoginCheck(LoginResult.MISMATCH, identifier, owner)
        else:
            personal = personal or LoginCheck(LoginResult.PERSONAL, identifier)
    if mismatch or personal:
        return mismatch or personal  # type: ignore[return-value]
    if unreadable:
        return LoginCheck(LoginResult.UNVERIFIABLE, detail="unreadable_value")
    if not seen:
        return LoginCheck(LoginResult.UNVERIFIABLE, detail="no_identifier")
    return LoginCheck(LoginResult.COMPANY)


def accounts_of(policy: Policy, employee: str | None, service: str) -> frozenset[str]:
    """The accounts `employee` may sign in to `service` with: the grant's, or for a service
    open to everyone (no grant) the employee's company e-mail; none for an unknown person."""
    if employee is None:
        return frozenset()
    grant = policy.grants.get((employee, service))
    if grant is not None:
        return grant.accounts
    known = policy.employees.get(employee)
    return frozenset({known.email}) if known and known.email else frozenset()


def match_action(
    rules: Iterable[ActionRule], target: Target, form: Form | None
) -> ActionRule | None:
    """The first rule that applies. A rule with `fields` needs `form` and matches only when
    each field has the given value (compared case-insensitively, so YAML `True` is `true`)."""
    for rule in rules:
        if not applies(rule, target):
            continue
        if not rule.fields:
            return rule
        if form is not None and fields_match(rule.fields, form):
            return rule
    return None


def fields_match(wanted: Mapping[str, str], form: Form) -> bool:
    """Each named field has the given value (case-insensitively, so YAML `True` is `true`)."""
    return all(
        any(v is not None and v.casefold() == want.casefold() for v in form.values(name))
        for name, want in wanted.items()
    )


def login_step(rule: LoginRule, form: Form | None) -> bool:
    """Whether the request is the sign-in step `rule` checks: always, unless the rule has a
    `when` condition that the fields do not meet. A body that cannot be read counts as the
    step, so it is refused as unverifiable rather than waved through."""
    return form is None or fields_match(rule.when, form)


def session_reason(owners: Iterable[str | None], employee: str | None) -> Reason | None:
    """For the owners of the session values a request carries (None: never bound): a value
    of another employee is a mismatch, an unbound one an unverified session."""
    known = list(owners)
    if any(owner is not None and owner != employee for owner in known):
        return Reason.ACCOUNT_MISMATCH
    if any(owner is None for owner in known):
        return Reason.UNVERIFIED_SESSION
    return None
