"""The last good configuration, kept in the state directory so that a typo cannot take the
office off the web.

Each policy that loads is saved to `<state_dir>/last-good-config/` (services.yaml,
approvals.yaml and gateway.yaml, byte for byte as they were loaded): only when they changed,
each file written atomically (temp file, fsync, rename), from the reloader's thread. When
`gatekeeper serve` starts on files that do not load, it enforces this copy instead, loudly
(gatekeeper.reload), until the files in the config directory load again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gatekeeper.config.loader import APPROVALS_FILE, SERVICES_FILE, load_policy
from gatekeeper.core.model import Policy
from gatekeeper.statedb.files import ensure_private_dir, match_dir_owner

SNAPSHOT_DIR = "last-good-config"
GATEWAY_FILE = "gateway.yaml"  # optional; read by `serve` for the listeners and the directory
POLICY_FILES = (SERVICES_FILE, APPROVALS_FILE)


def snapshot_dir(state_dir: Path) -> Path:
    return Path(state_dir) / SNAPSHOT_DIR


def exists(state_dir: Path) -> bool:
    return all((snapshot_dir(state_dir) / name).is_file() for name in POLICY_FILES)


def load(state_dir: Path) -> Policy:
    """The saved policy; raises ConfigError (or OSError) like `load_policy`."""
    return load_policy(snapshot_dir(state_dir))


def save(state_dir: Path, config_dir: Path, policy: Policy) -> bool:
    """Save the config files if they are still the bytes `policy` was built from; False when
    they changed since (the next load saves those). Unchanged files are not rewritten."""
    files = {name: _read(Path(config_dir) / name) for name in (*POLICY_FILES, GATEWAY_FILE)}
    if _policy_digest(files) != policy.sha256:
        return False
    target = snapshot_dir(state_dir)
    ensure_private_dir(target)
    for name, data in files.items():
        path = target / name
        if data is None:
            path.unlink(missing_ok=True)
        elif _read(path) != data:
            _write_atomically(path, data)
    return True


def _policy_digest(files: dict[str, bytes | None]) -> str:
    """What the loader computes as `Policy.sha256` from the two policy files."""
    digest = hashlib.sha256()
    for name in POLICY_FILES:
        digest.update(files[name] or b"")
        digest.update(b"\0")
    return digest.hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
        match_dir_owner(file.fileno(), path.parent)
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
