"""Private files in the state directory: 0600/0700, owned by the directory's owner."""

from __future__ import annotations

import os
from pathlib import Path


def ensure_private_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def create_private_file(path: Path) -> None:
    """Create `path` 0600 if missing (SQLite gives its -wal and -shm files the same mode)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
        match_dir_owner(fd, path.parent)
    finally:
        os.close(fd)


def match_dir_owner(fd: int, directory: Path) -> None:
    """A root CLI creating a file in the proxy's state directory gives it to the directory's
    owner, so the proxy (running as that user) can still open it."""
    if os.geteuid() != 0:
        return
    owner = os.stat(directory)
    if owner.st_uid != 0 or owner.st_gid != 0:
        os.fchown(fd, owner.st_uid, owner.st_gid)
