"""The approver's console password, for offices whose employees do not sign in to the proxy
(identity by address): one htpasswd line `<approver address>:<sha256-crypt hash>` in
`<state dir>/approver.htpasswd`, 0600, set with `gatekeeper approver-password`. The proxy checks
it like a proxy password (gatekeeper.htpasswd: in a worker process, never on the event loop)."""

from __future__ import annotations

import os
from pathlib import Path

from passlib.apache import HtpasswdFile

from gatekeeper.statedb.files import ensure_private_dir, match_dir_owner

PASSWORD_FILE = "approver.htpasswd"
MIN_LENGTH = 12


def password_path(state_dir: Path) -> Path:
    return Path(state_dir) / PASSWORD_FILE


def set_password(state_dir: Path, approver: str, password: str) -> Path:
    """Replace the file with one line for `approver` (ValueError for a short password)."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"the password must have at least {MIN_LENGTH} characters")
    state_dir = Path(state_dir)
    ensure_private_dir(state_dir)
    entries = HtpasswdFile(default_scheme="sha256_crypt")
    entries.set_password(approver, password)
    path = password_path(state_dir)
    tmp = path.with_name(f".{PASSWORD_FILE}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, entries.to_string())
        os.fsync(fd)
        match_dir_owner(fd, state_dir)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path
