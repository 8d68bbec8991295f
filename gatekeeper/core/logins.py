"""Company accounts only: which catalog rule a request matches, which account names a login
carries, and whether they are the employee's company accounts.

Pure code: the adapter hands in the request line and the already decoded body (or None when
it could not be decoded or is over the size limit). A login we cannot read is refused, never
waved through, so every "cannot tell" path ends in `unverifiable`.
"""

from __future__ import annotations

import codecs
import dataclasses
import email
import email.message
import enum
import json
import string
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from gatekeeper.core.identifiers import normalize_identifier
from gatekeeper.core.model import (
    ActionRule,
    LoginRule,
    Policy,
    Reason,
    Rules,
    Service,
    SessionTokens,
)
from gatekeeper.core.paths import canonical_path

MAX_FORM_FIELDS = 10_000  # a login form has a dozen; this only bounds a hostile body
# JSON inside a form value (`signed_body=<sig>.<JSON>`, `params=<JSON>`), or inside a JSON
# string, is read too, down to this many levels of nesting; deeper is refused.
MAX_EMBEDDED_DEPTH = 4
SIGNATURE_CHARS = frozenset(string.ascii_letters + string.digits + "_-")
MAX_SIGNATURE = 128
# Charsets that read ASCII bytes as the same ASCII text. In any other (utf-7, utf-16, EBCDIC)
# a field would be one value to gatekeeper and another to a server that ignores the label.
ASCII_SAFE_CHARSETS = frozenset({"utf-8", "ascii", "iso8859-1", "cp1252"})


class LoginResult(enum.StrEnum):
    """The outcome of a login check; also the `result` label of gatekeeper_logins_total."""

    COMPANY = "company"
    PERSONAL = "personal"
    MISMATCH = "mismatch"
    UNVERIFIABLE = "unverifiable"
    UNRECOGNIZED = "unrecognized"  # a credential where no login rule applies


_RESULT_REASON: Mapping[LoginResult, Reason] = {
    LoginResult.PERSONAL: Reason.PERSONAL_ACCOUNT,
    LoginResult.MISMATCH: Reason.ACCOUNT_MISMATCH,
    LoginResult.UNVERIFIABLE: Reason.UNVERIFIABLE_LOGIN,
    LoginResult.UNRECOGNIZED: Reason.UNVERIFIABLE_LOGIN,
}
UNRECOGNIZED_SIGN_IN = "unrecognized_sign_in"  # the detail of an UNRECOGNIZED check


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
    `owner` the employee it belongs to for a mismatch, `detail` why it was unverifiable,
    `account` the first company account a company login names (a sign-up records it masked)."""

    result: LoginResult
    identifier: str | None = None
    owner: str | None = None
    detail: str | None = None
    account: str | None = None

    @property
    def reason(self) -> Reason | None:
        """The block reason; None for a company login."""
        return _RESULT_REASON.get(self.result)


def applies(rule: LoginRule | ActionRule, target: Target) -> bool:
    """Method, hosts and path (a regular expression matched from the start) all fit."""
    if rule.method is not None and rule.method != target.method:
        return False
    return _line_fits(rule, target)


def _line_fits(rule: LoginRule | ActionRule, target: Target) -> bool:
    """Hosts and path fit (the method is already known to)."""
    if rule.hosts is not None and rule.hosts.isdisjoint(target.hosts):
        return False
    return any(rule.path.match(path) for path in target.paths)


def applicable(service: Service, target: Target) -> Rules:
    """The rules of `service` that apply to the request line, by kind, in catalog order:
    worked out once per request; every check of its headers and body reads these."""
    rules = service.rules_for(target.method)
    if not (rules.logins or rules.signups or rules.prohibited or rules.audited):
        return rules  # the common case: a GET meets no rule
    return rules.where(lambda rule: _line_fits(rule, target))


def login_rule(service: Service, target: Target) -> LoginRule | None:
    """The first login rule of `service` the request matches."""
    return applicable(service, target).login


def signup_rule(service: Service, target: Target) -> LoginRule | None:
    """The first sign-up rule of `service` the request matches."""
    signups = applicable(service, target).signups
    return signups[0] if signups else None


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

    def items(self) -> Iterator[tuple[str, list[Value]]]:
        """Every field name with all its values."""
        return iter(self._values.items())


def read_form(content_type: str, body: bytes, query: str = "") -> Form | None:
    """The request's fields, or None when the query or body cannot be parsed."""
    try:
        pairs = list(_urlencoded(query, "utf-8"))
        if body.strip():
            pairs.extend(_body_pairs(content_type, body))
        return Form(_with_embedded(pairs))
    except (ValueError, LookupError, RecursionError):
        return None  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors


def read_json(body: bytes) -> Form | None:
    """The keys of a JSON document at any depth, JSON held in its strings included (a login
    response); None when it is not JSON."""
    try:
        return Form(_with_embedded(list(_json_pairs(body))))
    except (ValueError, RecursionError):
        return None


def _with_embedded(pairs: list[tuple[str, Value]]) -> list[tuple[str, Value]]:
    """`pairs` plus the pairs of every value that holds a JSON object or array: plain,
    URL-encoded, or after a signature (`<hex>.{...}`, as Instagram's `signed_body`), and
    again inside those, at most MAX_EMBEDDED_DEPTH levels and MAX_FORM_FIELDS pairs in all.
    A value that only looks like JSON stays a plain value."""
    result = list(pairs)
    level = pairs
    for depth in range(MAX_EMBEDDED_DEPTH + 1):
        found: list[tuple[str, Value]] = []
        for _, value in level:
            document = _embedded_json(value) if value else None
            if document is None:
                continue
            if depth == MAX_EMBEDDED_DEPTH:
                raise ValueError("JSON nested too deep inside values")
            try:
                found.extend(_json_pairs(document.encode()))
            except ValueError:
                continue  # text that starts like JSON: a plain value
            if len(result) + len(found) > MAX_FORM_FIELDS:
                raise ValueError("too many fields")
        if not found:
            break
        result.extend(found)
        level = found
    return result


def _embedded_json(value: str) -> str | None:
    """The JSON text a value holds, or None (cheap: looks at the first characters only)."""
    text = value.lstrip()
    if text[:3].upper() in ("%7B", "%5B"):
        text = urllib.parse.unquote(text)
    if text[:1] in ("{", "["):
        return text
    head, dot, _ = text[:MAX_SIGNATURE + 1].partition(".")
    rest = text[len(head) + 1:]
    if dot and head and set(head) <= SIGNATURE_CHARS and rest[:1] in ("{", "["):
        return rest
    return None


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
        if part.get_param("filename", header="content-disposition") is not None:
            yield _field_name(name), None  # an uploaded file: not a plain value, not read
            continue
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
    continuing: bool = False,
) -> LoginCheck:
    """Every identifier in the rule's fields must be one of `accounts` (normalized: the
    grant's accounts). `owners` maps normalized company accounts to their employee
    (Policy.accounts); `form` is None when the body could not be read. A protobuf sign-in
    is one method called for each step (Snapchat's WebLogin: the name, then the password,
    then a code); a step that names no account goes on only when `continuing`: while a
    checked company sign-in of this employee is in progress."""
    if form is None:
        return LoginCheck(LoginResult.UNVERIFIABLE, detail="unreadable_body")
    values = [value for name in rule.fields for value in form.values(name)]
    if rule.protobuf is not None and all(value == "" for value in values):
        return LoginCheck(LoginResult.COMPANY) if continuing \
            else LoginCheck(LoginResult.UNVERIFIABLE, detail="no_identifier")
    modes = set(form.values("mix_mode"))
    if len(modes) > 1:  # `mix_mode=0&mix_mode=1`: which one the server reads is unknown
        return LoginCheck(LoginResult.UNVERIFIABLE, detail="unreadable_value")
    if modes == {"1"}:
        values = [unmix(value) for value in values]
    return classify(values, accounts, employee, owners)


def unmix(value: Value) -> Value:
    """TikTok's `mix_mode=1`: each byte of the UTF-8 value XOR 5, hex-encoded
    (`446b6260694a6b516a75` is `AngelOnTop`); None when it is not such a value."""
    if value is None:
        return None
    try:
        return bytes(b ^ 5 for b in bytes.fromhex(value)).decode("utf-8")
    except ValueError:
        return None


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
    first: str | None = None  # the first identifier found
    for value in values:
        if value is None:
            unreadable = True
            continue
        identifier = normalize_identifier(value)
        if not identifier:
            continue
        first = first or identifier
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
    if first is None:
        return LoginCheck(LoginResult.UNVERIFIABLE, detail="no_identifier")
    return LoginCheck(LoginResult.COMPANY, account=first)


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


def first_action(applying: Iterable[ActionRule], form: Form | None) -> ActionRule | None:
    """The first of the rules that apply to the request line (`applicable`) that matches:
    one without `fields`, or one whose fields `form` has (compared case-insensitively, so
    YAML `True` is `true`)."""
    for rule in applying:
        if not rule.fields:
            return rule
        if form is not None and fields_match(rule.fields, form):
            return rule
    return None


MAX_TARGET = 128  # characters of an action's target kept: an id, never a body


def action_target(rule: ActionRule, target: Target, form: Form | None) -> str | None:
    """What an audited action was about, as the site names it (a group, page or profile
    id): the path's `target` group, else the first non-empty value of the rule's target
    fields; control characters become spaces and it is cut to MAX_TARGET characters."""
    found: str | None = None
    if "target" in rule.path.groupindex:
        match = next((m for m in map(rule.path.match, target.paths) if m), None)
        found = match.group("target") if match else None
    if not found and form is not None:
        found = next((v for name in rule.target for v in form.values(name) if v), None)
    if not found:
        return None
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in found).split())
    return cleaned[:MAX_TARGET] or None


def fields_match(wanted: Mapping[str, str], form: Form) -> bool:
    """Each named field has the given value (case-insensitively, so YAML `True` is `true`)."""
    return all(
        any(v is not None and v.casefold() == want.casefold() for v in form.values(name))
        for name, want in wanted.items()
    )


def step_of(applying: Iterable[LoginRule], form: Form | None) -> LoginRule | None:
    """The login (or sign-up) rule to check among those that apply to the request line
    (`applicable`): the one whose `when` the fields meet, or, when several do (X's two
    identifier steps on one path, sent in one request), the first with the fields of all of
    them, so that no step's identifier goes unchecked."""
    rules = [rule for rule in applying if login_step(rule, form)]
    if len(rules) < 2:
        return rules[0] if rules else None
    fields = tuple(dict.fromkeys(name for rule in rules for name in rule.fields))
    return dataclasses.replace(rules[0], fields=fields)


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


# --- session tokens -------------------------------------------------------------------------

TOKEN_SCHEMES = frozenset({"bearer", "oauth", "token"})
CREDENTIAL_SCHEMES = frozenset({"basic", "digest"})
OAUTH1_TOKEN = "oauth_token"  # RFC 5849: the token among OAuth 1.0a's header parameters
# Stands for a token that cannot be read (two different copies, a malformed query): never
# bound, so the request is refused as an unverified session.
UNREADABLE_TOKEN = "\x00unreadable"


def session_token(value: str, schemes: frozenset[str] = frozenset()) -> str | None:
    """The token a header value carries, without a scheme word (`Bearer IGT:2:abc` and a
    login response's bare `IGT:2:abc` are one token), or OAuth 1.0a's `oauth_token`
    parameter (`OAuth oauth_consumer_key="..", oauth_token="1-abc", ..`); None when empty,
    when it is none of `schemes` (if given), or an OAuth 1.0a header without a token."""
    words = value.strip().split(None, 1)
    scheme = words[0].casefold() if words else ""
    if scheme in CREDENTIAL_SCHEMES:
        return None  # a user name and password: the credential guard's, not a session
    if schemes and scheme not in schemes:
        return None
    if scheme in TOKEN_SCHEMES:
        if len(words) < 2:
            return None  # a lone `Bearer` carries none
        rest = words[1].strip()
        return _oauth1_token(rest) if "=" in rest.rstrip("=") and '"' in rest else rest
    return value.strip() or None


def _oauth1_token(parameters: str) -> str | None:
    """`oauth_token` of an OAuth 1.0a Authorization header (RFC 5849 3.5.1: comma-separated
    `name="value"`, percent-encoded); None when it has none. Given twice, it is refused
    rather than guessed: the bound one is returned only if every copy is the same."""
    found = set()
    for item in parameters.split(","):
        name, _, quoted = item.strip().partition("=")
        if name.strip() == OAUTH1_TOKEN:
            found.add(urllib.parse.unquote(quoted.strip().strip('"')))
    if len(found) > 1:
        return UNREADABLE_TOKEN
    return found.pop() if found else None


def request_tokens(
    tokens: SessionTokens, target: Target, headers: Iterable[tuple[str, str]]
) -> list[str]:
    """The session tokens a request carries in the service's token headers and in its
    query string."""
    if tokens.hosts is not None and tokens.hosts.isdisjoint(target.hosts):
        return []
    found = [session_token(value, tokens.schemes)
             for name, value in headers if name.lower() in tokens.headers]
    if tokens.params and target.query:  # parsed only where params are named
        try:
            query = Form(_urlencoded(target.query, "utf-8"))
        except ValueError:
            return [UNREADABLE_TOKEN]
        found += [value for name in tokens.params for value in query.values(name)]
    return [token for token in found if token]


def form_tokens(tokens: SessionTokens, target: Target, form: Form | None) -> list[str]:
    """The session tokens in a request's urlencoded or JSON body (`access_token=` posted to
    the Graph API)."""
    if form is None or not tokens.params \
            or (tokens.hosts is not None and tokens.hosts.isdisjoint(target.hosts)):
        return []
    return [value for name in tokens.params for value in form.values(name) if value]


def issued_tokens(
    tokens: SessionTokens,
    headers: Iterable[tuple[str, str]],
    body: Form | None,
    text: str | None,
) -> list[str]:
    """The tokens a login response hands out: in its headers, in JSON keys of its body
    (`body`, JSON strings included), and matched by the service's pattern in its `text`."""
    found = [session_token(v) for n, v in headers if n.lower() in tokens.issued_headers]
    if body is not None:
        found += [v for name in tokens.issued_fields for v in body.values(name)]
    if text is not None and tokens.issued_pattern is not None:
        found += [m.group(1) for m in tokens.issued_pattern.finditer(text.replace("\\", ""))]
    return list(dict.fromkeys(token for token in found if token))


def issued_cookies(body: bytes, keys: Iterable[str], cookie: str) -> list[str]:
    """The values of `cookie` in a login response's JSON lists of cookie objects under
    `keys` at any depth (`"session_cookies": [{"name": "c_user", "value": "1"}, ...]`), which
    the client puts in its cookie jar itself; none when the body is not JSON."""
    try:
        stack = [json.loads(body)]
    except (ValueError, RecursionError):
        return []
    wanted, found = frozenset(keys), []
    while stack:  # iterative: nesting depth cannot exhaust the Python stack here
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in wanted and isinstance(value, list):
                    found += [item["value"] for item in value if isinstance(item, dict)
                              and item.get("name") == cookie
                              and isinstance(item.get("value"), str) and item["value"]]
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found
