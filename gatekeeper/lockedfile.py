"""Replacing a file atomically under a lock: read it under an exclusive `flock` that other
writers wait for, then write a temporary file in the same directory with the original's mode and
owner, fsync it, rename it over the original unless the original changed since it was read, and
fsync the directory. A reader never sees half a file; a concurrent editor's save is never lost.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class LockedFileError(Exception):
    """The file could not be read under the lock or replaced; it is unchanged."""


class FileChangedError(LockedFileError):
    """The file changed between reading and writing it; nothing was written."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    data: bytes
    stat: os.stat_result


@contextmanager
def locked_snapshot(path: Path, wait_seconds: float) -> Iterator[Snapshot]:
    """The file's bytes, read under an exclusive lock that other gatekeeper edits wait for.

    If the file was replaced while we waited (another edit renamed a new one in), the new
    file is locked and read instead.
    """
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as e:
            raise LockedFileError(f"{path} does not exist") from e
        try:
            if not _lock(fd, deadline):
                break
            opened = os.fstat(fd)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue
            if (current.st_ino, current.st_dev) != (opened.st_ino, opened.st_dev):
                continue
            yield Snapshot(_read_all(fd), opened)
            return
        finally:
            os.close(fd)  # releases the lock
    raise LockedFileError(f"{path} is being edited by another gatekeeper command; try again")


def _lock(fd: int, deadline: float) -> bool:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def replace_unless_changed(path: Path, data: bytes, snapshot: Snapshot) -> None:
    """Write `data` atomically over `path`, unless `path` changed since `snapshot`."""
    original = snapshot.stat
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, stat.S_IMODE(original.st_mode))
            created = os.fstat(fd)
            if (created.st_uid, created.st_gid) != (original.st_uid, original.st_gid):
                try:
                    os.fchown(fd, original.st_uid, original.st_gid)
                except PermissionError as e:
                    raise LockedFileError(
                        f"cannot give the new {path.name} the owner of the old one "
                        f"(uid {original.st_uid}, gid {original.st_gid}): run as that user or root"
                    ) from e
            os.fsync(fd)
        finally:
            os.close(fd)
        _check_unchanged(path, snapshot)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _check_unchanged(path: Path, snapshot: Snapshot) -> None:
    refused = FileChangedError(
        f"{path} was changed by someone else after gatekeeper read it; nothing was written. "
        "Check the change and run the command again."
    )
    try:
        current = os.stat(path)
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise refused from e
    before = snapshot.stat
    identity = (before.st_ino, before.st_dev, before.st_size, before.st_mtime_ns)
    if (current.st_ino, current.st_dev, current.st_size, current.st_mtime_ns) != identity:
        raise refused
    if data != snapshot.data:
        raise refused

