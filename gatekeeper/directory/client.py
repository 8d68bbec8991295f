"""Talking to the office directory with ldap3: the employee list and password checks.

ldap3 is pure Python and blocking. Every function here runs in a worker thread, never on
mitmproxy's event loop, and every network wait is bounded by `timeout_seconds` (connect and
each receive). Each call opens its own connection, so calls from several threads never share
one. Error messages never contain a password: ldap3 does not put it in its exceptions, and
nothing here does.
"""

from __future__ import annotations

import contextlib
import math
import ssl
import time

import ldap3

from gatekeeper.core.directory import DirectoryList, Person
from gatekeeper.directory.settings import DirectorySettings, PasswordFileError
from gatekeeper.sign_in import SignInUnavailableError

INVALID_CREDENTIALS = 49
PAGE_SIZE = 500
MAX_PEOPLE = 100_000  # bounded output: a directory this large is not a clinic's


class DirectoryUnavailableError(SignInUnavailableError):
    """The directory did not answer in time, refused the connection or the service account."""


def fetch_people(settings: DirectorySettings) -> DirectoryList:
    """Everyone the directory counts as an employee (raises DirectoryUnavailableError)."""
    try:
        password = settings.bind_password()
    except PasswordFileError as e:
        raise DirectoryUnavailableError(str(e)) from e
    started = time.time()
    conn = _connection(settings, settings.bind_dn, password)
    try:
        if not _bind(conn, settings):
            raise DirectoryUnavailableError(
                f"the directory refused the service account {settings.bind_dn!r}: check "
                "bind_dn and the password in bind_password_file"
            )
        members = _group_members(conn, settings) if settings.group else None
        people: dict[str, Person] = {}
        for entry in conn.extend.standard.paged_search(
            settings.base_dn, settings.filter, ldap3.SUBTREE,
            attributes=[settings.id_attribute, settings.email_attribute,
                        settings.name_attribute],
            paged_size=PAGE_SIZE, generator=True,
        ):
            if entry.get("type") != "searchResEntry":
                continue
            person = _person(entry, settings)
            if person is None or (members is not None and not _member(person, members)):
                continue
            people.setdefault(person.id, person)
            if len(people) >= MAX_PEOPLE:
                break
        if conn.result and conn.result.get("result") not in (0, None):
            raise DirectoryUnavailableError(f"search failed: {conn.result.get('description')}")
    except DirectoryUnavailableError:
        raise
    except Exception as e:  # LDAP, socket, TLS: the directory did not say; fail closed
        raise DirectoryUnavailableError(_describe(e)) from e
    finally:
        _close(conn)
    return DirectoryList(people=people, realms=settings.realms, fetched_at=started)


def check_password(settings: DirectorySettings, dn: str, password: str) -> bool:
    """Whether `password` is the password of the account `dn` (a bind as that account).
    False for a wrong one; DirectoryUnavailableError when the directory does not say."""
    if not password:
        return False  # an empty password is an anonymous bind, which always "succeeds"
    conn = _connection(settings, dn, password)
    try:
        if _bind(conn, settings):
            return True
        if conn.result and conn.result.get("result") == INVALID_CREDENTIALS:
            return False
        raise DirectoryUnavailableError(f"bind failed: {conn.result.get('description')}")
    except DirectoryUnavailableError:
        raise
    except Exception as e:  # LDAP, socket, TLS: the directory did not say; fail closed
        raise DirectoryUnavailableError(_describe(e)) from e
    finally:
        _close(conn)


def _connection(settings: DirectorySettings, user: str, password: str) -> ldap3.Connection:
    tls = None
    if settings.ldaps or settings.starttls:
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
            version=ssl.PROTOCOL_TLS_CLIENT,
        )
    server = ldap3.Server(
        settings.host, port=settings.port, use_ssl=settings.ldaps, tls=tls,
        connect_timeout=settings.timeout_seconds, get_info=ldap3.NONE,
    )
    return ldap3.Connection(
        server, user=user, password=password, read_only=True, auto_referrals=False,
        receive_timeout=math.ceil(settings.timeout_seconds), raise_exceptions=False,
    )


def _bind(conn: ldap3.Connection, settings: DirectorySettings) -> bool:
    """Open, StartTLS if asked, bind. LDAP errors other than the bind's answer raise."""
    conn.open()
    if settings.starttls and not conn.start_tls():
        raise DirectoryUnavailableError("the directory refused StartTLS")
    return bool(conn.bind())


def _close(conn: ldap3.Connection) -> None:
    with contextlib.suppress(Exception):
        conn.unbind()


def _group_members(conn: ldap3.Connection, settings: DirectorySettings) -> set[str]:
    """The group's members as case-folded DNs and ids (groupOfNames, posixGroup)."""
    assert settings.group is not None
    conn.search(settings.group, "(objectClass=*)", ldap3.BASE,
                attributes=["member", "uniqueMember", "memberUid"])
    if not conn.response:
        raise DirectoryUnavailableError(f"group {settings.group!r} not found")
    members: set[str] = set()
    for entry in conn.response or []:
        for values in (entry.get("attributes") or {}).values():
            for value in values if isinstance(values, list) else [values]:
                members.add(_dn_key(str(value)))
    return members


def _member(person: Person, members: set[str]) -> bool:
    return _dn_key(person.dn) in members or person.id in members


def _dn_key(dn: str) -> str:
    return ",".join(part.strip() for part in dn.split(",")).casefold()


def _person(entry: dict, settings: DirectorySettings) -> Person | None:
    attributes = entry.get("attributes") or {}
    person_id = _first(attributes.get(settings.id_attribute)).casefold()
    if not person_id:
        return None
    return Person(
        id=person_id,
        email=_first(attributes.get(settings.email_attribute)).lower(),
        display_name=_first(attributes.get(settings.name_attribute)),
        dn=str(entry.get("dn", "")),
    )


def _first(value: object) -> str:
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).strip() if value is not None else ""


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"
