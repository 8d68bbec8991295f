"""The last good employee list, kept in the state directory, and the policy the commands use.

The proxy writes `<state-dir>/directory.json` after each successful refresh (0600, atomic
rename): it starts with yesterday's employees when the directory is down at boot, and the
approver's commands (`review`, `requests`, `explain`, `grant`) read it to name people without
contacting the directory. It holds ids, e-mails, display names and DNs; never a password.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import MappingProxyType

from gatekeeper.config.loader import load_policy
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.directory import DirectoryList, Person, compose
from gatekeeper.core.model import Policy
from gatekeeper.directory.settings import DirectorySettings

LIST_FILE = "directory.json"
MAX_LIST_BYTES = 64 * 1024 * 1024


def save_list(state_dir: Path, directory: DirectoryList) -> None:
    payload = {
        "fetched_at": directory.fetched_at,
        "realms": sorted(directory.realms),
        "people": [
            {"id": p.id, "email": p.email, "display_name": p.display_name, "dn": p.dn}
            for p in directory.people.values()
        ],
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{LIST_FILE}.", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(payload, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, state_dir / LIST_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_list(state_dir: Path) -> DirectoryList | None:
    """The saved list; None when there is none or it cannot be read (then: no list)."""
    path = Path(state_dir) / LIST_FILE
    try:
        if path.stat().st_size > MAX_LIST_BYTES:
            return None
        payload = json.loads(path.read_text(encoding="utf-8"))
        people = {
            str(p["id"]): Person(str(p["id"]), str(p["email"]), str(p["display_name"]),
                                 str(p["dn"]))
            for p in payload["people"]
        }
        return DirectoryList(MappingProxyType(people), frozenset(payload["realms"]),
                             float(payload["fetched_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def directory_settings(config_dir: Path) -> DirectorySettings | None:
    """The `directory:` section of gateway.yaml, if any (raises ConfigError when invalid)."""
    from gatekeeper.gateway import gateway_file, load_gateway

    if not gateway_file(config_dir).exists():
        return None
    return load_gateway(config_dir).directory


def office_policy(
    config_dir: Path, state_dir: Path | None = None, overrides: dict[str, str] | None = None
) -> Policy:
    """The policy as the proxy enforces it: the files, plus the directory's employees from the
    last list the proxy saved in `state_dir` (none saved: only the files' employees).
    Raises ConfigError."""
    policy = load_policy(config_dir, overrides)
    try:
        settings = directory_settings(config_dir)
    except ConfigError:
        settings = None  # gateway.yaml is IT's: `gatekeeper check` reports its problems
    if settings is None:
        return policy
    saved = load_list(state_dir) if state_dir is not None else None
    empty = DirectoryList(MappingProxyType({}), settings.realms, 0.0)
    return compose(policy, saved or empty).policy
