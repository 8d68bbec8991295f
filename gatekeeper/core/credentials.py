"""The credential guard: whether a request to a governed service carries a credential.

A request that carries one is a sign-in, whatever its path: if no login rule of the catalog
recognizes it, it is refused (`unrecognized_sign_in`) rather than let a personal account
through an endpoint the catalog does not name. Pure code: the adapter hands in the request's
fields (`gatekeeper.core.logins.Form`, JSON inside form values and JSON strings included)
and its headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from gatekeeper.core import protobuf
from gatekeeper.core.logins import UNRECOGNIZED_SIGN_IN, Form, LoginCheck, LoginResult, Target
from gatekeeper.core.model import FieldPath, Service

# Field names that carry a password (docs/catalog.md says where each was seen). services.yaml
# replaces this list with its top-level `credential_fields:` and adds per-service ones.
DEFAULT_CREDENTIAL_FIELDS: tuple[str, ...] = (
    "password", "pass", "passwd", "encpass", "enc_password", "encrypted_password",
    "enc_new_password1", "enc_new_password2", "session_password", "x_auth_password",
    "reg_passwd__",
)
# A field with one of these values makes the request a sign-in whatever else it holds: an
# OAuth password grant, xAuth, Facebook's Graph and Instagram's bloks credential types.
CREDENTIAL_VALUES: Mapping[str, str] = MappingProxyType({
    "grant_type": "password",
    "x_auth_mode": "client_auth",
    "credentials_type": "password",
    "credential_type": "password",
})
# Meta's clients wrap every password as `#PWD_<APP>:<version>:<time>:<value>`, whatever the
# field is called.
PASSWORD_PREFIX = "#PWD_"
# Methods whose body the guard reads; a GET or DELETE to a social site carries no form.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Media types that hold no form fields: uploads are not read.
_BINARY_PREFIXES = ("image/", "video/", "audio/", "font/", "application/octet-stream",
                    "application/grpc", "application/x-protobuf", "application/protobuf",
                    "application/zip", "application/pdf")


def credential_fields(names: Iterable[str]) -> frozenset[str]:
    """The folded form in which field and header names are compared."""
    return frozenset(_fold(name) for name in names)


def _fold(name: str) -> str:
    return name.casefold().replace("-", "_")


def form_credential(form: Form, fields: frozenset[str]) -> str | None:
    """The name of a field that makes the request a sign-in, or None. Empty values carry
    nothing (a form may send an empty `encpass` beside `pass`)."""
    for name, values in form.items():
        present = [value for value in values if value]
        if not present:
            continue
        folded = _fold(name)
        if folded in fields:
            return name
        wanted = CREDENTIAL_VALUES.get(folded)
        if wanted is not None and any(v.casefold() == wanted for v in present):
            return name
        if any(value.startswith(PASSWORD_PREFIX) for value in present):
            return name
    return None


def header_credential(
    headers: Iterable[tuple[str, str]], fields: frozenset[str], basic_names_app: bool
) -> str | None:
    """The name of a header that carries a credential, or None: `Authorization: Basic` (a
    user name and password) unless the request's path is one where Basic names an app (a
    client id, as Reddit's token endpoints), or a header named like a credential field or
    value (old xAuth clients sent `x_auth_password` as a header)."""
    for name, value in headers:
        folded = _fold(name)
        if folded == "authorization":
            if value.strip()[:6].casefold() == "basic " and not basic_names_app:
                return name
        elif folded in fields or folded in CREDENTIAL_VALUES:  # the value read only then
            text = value.strip()
            if text and (folded in fields or CREDENTIAL_VALUES[folded] == text.casefold()):
                return name
    return None


def basic_names_app(patterns: Iterable[re.Pattern[str]], target: Target) -> bool:
    """Whether `Authorization: Basic` on this path names an app, not a person."""
    return any(p.match(path) for p in patterns for path in target.paths)


def readable_body(method: str, content_type: str) -> bool:
    """Whether the guard reads this request's body: a form, JSON, text or untyped body of a
    method that sends one; not an upload of media or other binary data."""
    if method not in BODY_METHODS:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return not media.startswith(_BINARY_PREFIXES)


def form_like(content_type: str) -> bool:
    """A urlencoded or JSON body: what a sign-in sends. One too large or of unknown length
    to read is refused rather than passed unread (multipart and text are uploads there)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/x-www-form-urlencoded", "application/json") \
        or media.endswith("+json")


UNRECOGNIZED = LoginCheck(LoginResult.UNRECOGNIZED, detail=UNRECOGNIZED_SIGN_IN)


def protobuf_passwords(service: Service, target: Target,
                       content_type: str) -> tuple[FieldPath, ...]:
    """Where a password sits in a protobuf (gRPC-Web) body sent where no login rule applies:
    the `passwords` paths of the service's protobuf sign-ins, on their hosts only (another
    gRPC method there carrying the sign-in message is a sign-in; the messages of other hosts,
    such as Snapchat's chat, have other shapes). Empty when the guard does not read it."""
    if not service.guarded or target.method not in BODY_METHODS \
            or not protobuf.protobuf_media(content_type):
        return ()
    paths = [path for rule in service.logins if rule.protobuf is not None
             and (rule.hosts is None or not rule.hosts.isdisjoint(target.hosts))
             for path in rule.protobuf.passwords]
    return tuple(dict.fromkeys(paths))


def guard_message(message: Form) -> LoginCheck | None:
    """The guard on a protobuf message read at its password paths: UNRECOGNIZED when one
    holds a value (text or not)."""
    found = any(value != "" for _, values in message.items() for value in values)
    return UNRECOGNIZED if found else None


def guard_headers(
    service: Service, target: Target, headers: Iterable[tuple[str, str]]
) -> LoginCheck | None:
    """The guard on a request's headers, where no login rule applies: UNRECOGNIZED when a
    header carries a credential, None otherwise (or for a service it does not guard)."""
    if not service.guarded:
        return None
    app = bool(service.basic_auth_apps) and basic_names_app(service.basic_auth_apps, target)
    return UNRECOGNIZED if header_credential(headers, service.credential_fields, app) else None


def guard_form(service: Service, content_type: str, form: Form | None) -> LoginCheck | None:
    """The guard on a body it read (see `readable_body`), where no login rule applies:
    UNRECOGNIZED when a field carries a credential; UNVERIFIABLE when a urlencoded or JSON
    body could not be read (a credential could hide there); None otherwise."""
    if form is None:
        return LoginCheck(LoginResult.UNVERIFIABLE, detail="unreadable_body") \
            if form_like(content_type) else None
    return UNRECOGNIZED if form_credential(form, service.credential_fields) else None
