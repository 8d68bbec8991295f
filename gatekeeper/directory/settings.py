"""The `directory:` section of gateway.yaml: how to reach the office directory and who in it
is an employee, with presets for Active Directory and OpenLDAP.

The bind password is never in the YAML file or on a command line: `bind_password_file` names
a file only its owner may read (mode 0600 or 0400), read again at each use so a changed
password needs no restart.
"""

from __future__ import annotations

import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from gatekeeper.config.checker import FileChecker
from gatekeeper.config.yamlsrc import Node

PRESETS: dict[str, dict[str, str]] = {
    # Enabled user accounts; `group` membership is checked with the in-chain matching rule, so
    # members of nested groups count too.
    "active_directory": {
        "filter": "(&(objectCategory=person)(objectClass=user)"
                  "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))",
        "group_filter": "(memberOf:1.2.840.113556.1.4.1941:={group})",
        "id_attribute": "sAMAccountName",
        "email_attribute": "mail",
        "name_attribute": "displayName",
    },
    # inetOrgPerson entries; `group` is a groupOfNames (member) or posixGroup (memberUid),
    # whose members are read from the group entry itself (no memberOf overlay needed).
    "openldap": {
        "filter": "(objectClass=inetOrgPerson)",
        "group_filter": "",
        "id_attribute": "uid",
        "email_attribute": "mail",
        "name_attribute": "cn",
    },
}
KEYS = (
    "preset", "url", "starttls", "ca_file", "bind_dn", "bind_password_file", "base_dn",
    "filter", "group", "id_attribute", "email_attribute", "name_attribute", "realms",
    "refresh_seconds", "timeout_seconds", "sign_in_cache_seconds",
)
DEFAULT_REFRESH_SECONDS = 900
DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_SIGN_IN_CACHE_SECONDS = 300
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class PasswordFileError(Exception):
    """The bind password file is missing, unreadable, empty or readable by others."""


@dataclass(frozen=True, slots=True)
class DirectorySettings:
    """The validated `directory:` section."""

    preset: str
    url: str
    host: str
    port: int
    ldaps: bool
    starttls: bool
    ca_file: Path | None
    bind_dn: str
    bind_password_file: Path
    base_dn: str
    filter: str  # who is an employee, group membership included where the preset can
    group: str | None  # a group whose members are read from the group entry (openldap)
    id_attribute: str
    email_attribute: str
    name_attribute: str
    realms: frozenset[str]  # case-folded
    refresh_seconds: int
    timeout_seconds: float
    sign_in_cache_seconds: int

    def bind_password(self) -> str:
        """The service account's password, read now (raises PasswordFileError)."""
        return read_password_file(self.bind_password_file)


def read_password_file(path: Path) -> str:
    """The first line of a file that only its owner may read."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise PasswordFileError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise PasswordFileError(
                f"{path} may be read by others (mode {stat.S_IMODE(info.st_mode):04o}): "
                f"run `chmod 600 {path}`"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PasswordFileError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise PasswordFileError(f"{path} is not UTF-8 text") from e
    password = text.splitlines()[0] if text else ""
    if not password:
        raise PasswordFileError(f"{path} is empty")
    return password


def parse_directory(f: FileChecker, node: Node) -> DirectorySettings | None:
    """Validate the section (problems go to `f`); None when it has any."""
    before = len(f.problems)
    items = f.mapping(node, "directory", required=("preset", "url", "bind_dn",
                                                   "bind_password_file", "base_dn"),
                      optional=KEYS)
    if items is None:
        return None
    preset_name = f.string(items.get("preset"), "directory: preset") if "preset" in items else ""
    if preset_name and preset_name not in PRESETS:
        f.error(items["preset"], "directory: preset must be "
                + " or ".join(repr(p) for p in PRESETS))
    preset = PRESETS.get(preset_name, PRESETS["openldap"])

    def text(key: str, default: str = "") -> str:
        return f.string(items[key], f"directory: {key}") if key in items else default

    url = text("url")
    parsed = urllib.parse.urlsplit(url)
    ldaps = parsed.scheme == "ldaps"
    starttls = _flag(f, items, "starttls")
    host, port = parsed.hostname or "", 0
    try:
        port = parsed.port or (636 if ldaps else 389)
    except ValueError:
        host = ""
    if url and (parsed.scheme not in ("ldap", "ldaps") or not host
                or parsed.path not in ("", "/")):
        f.error(items["url"], f"directory: url {url!r} must be ldap://HOST[:PORT] or "
                "ldaps://HOST[:PORT]")
    elif url and ldaps and starttls:
        f.error(items["starttls"], "directory: starttls is for ldap:// URLs (ldaps:// is TLS "
                "from the start)")
    elif url and not ldaps and not starttls and host not in LOOPBACK_HOSTS:
        f.error(items["url"], "directory: ldap:// without starttls would send the employees' "
                "passwords unencrypted: use ldaps://, or starttls: true")
    ca_file = Path(text("ca_file")) if "ca_file" in items else None
    if ca_file is not None and not ca_file.is_file():
        f.error(items["ca_file"], f"directory: ca_file {str(ca_file)!r} is not a file")
    password_file = Path(text("bind_password_file"))
    if "bind_password_file" in items and str(password_file):
        try:
            read_password_file(password_file)
        except PasswordFileError as e:
            f.error(items["bind_password_file"], f"directory: bind_password_file: {e}")
    group = text("group") or None
    user_filter = text("filter", preset["filter"])
    if not (user_filter.startswith("(") and user_filter.endswith(")")):
        f.error(items.get("filter"), "directory: filter must be an LDAP filter in parentheses")
    if group and preset["group_filter"]:
        user_filter = f"(&{user_filter}{preset['group_filter'].format(group=_escape(group))})"
        group = None
    base_dn = text("base_dn")
    realms = {r.value.strip().casefold() for r in f.strings(items["realms"], "directory: realms")
              } if "realms" in items else set()
    realms |= _default_realms(base_dn)
    refresh = _number(f, items, "refresh_seconds", DEFAULT_REFRESH_SECONDS, 1, 86400)
    timeout = _number(f, items, "timeout_seconds", DEFAULT_TIMEOUT_SECONDS, 0.1, 60)
    cache = _number(f, items, "sign_in_cache_seconds", DEFAULT_SIGN_IN_CACHE_SECONDS, 0, 3600)
    if len(f.problems) > before:
        return None
    return DirectorySettings(
        preset=preset_name,
        url=url,
        host=host,
        port=port,
        ldaps=ldaps,
        starttls=starttls,
        ca_file=ca_file,
        bind_dn=text("bind_dn"),
        bind_password_file=password_file,
        base_dn=base_dn,
        filter=user_filter,
        group=group,
        id_attribute=text("id_attribute", preset["id_attribute"]),
        email_attribute=text("email_attribute", preset["email_attribute"]),
        name_attribute=text("name_attribute", preset["name_attribute"]),
        realms=frozenset(realms),
        refresh_seconds=int(refresh),
        timeout_seconds=float(timeout),
        sign_in_cache_seconds=int(cache),
    )


def _flag(f: FileChecker, items: dict[str, Node], key: str) -> bool:
    return f.boolean(items[key], f"directory: {key}") if key in items else False


def _number(f: FileChecker, items: dict[str, Node], key: str, default: float,
            low: float, high: float) -> float:
    node = items.get(key)
    if node is None:
        return default
    if node.kind not in ("int", "float") or not low <= node.value <= high:
        f.error(node, f"directory: {key} must be a number from {low:g} to {high:g}")
        return default
    return node.value


def _default_realms(base_dn: str) -> set[str]:
    """`DC=clinic,DC=example` -> {"clinic.example", "clinic"} (the DNS domain and the usual
    NetBIOS name of an Active Directory domain)."""
    labels = [part.split("=", 1)[1].strip().casefold() for part in base_dn.split(",")
              if part.strip().lower().startswith("dc=") and "=" in part]
    return {".".join(labels), labels[0]} if labels else set()


def _escape(value: str) -> str:
    """An assertion value for an LDAP filter (RFC 4515)."""
    return "".join(f"\\{ord(c):02x}" if c in "*()\\\0" else c for c in value)
