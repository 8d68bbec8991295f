"""Building and running the real Dockerfile without Docker: buildah and podman (Debian
packages), as root, with a stand-in for the base image made by debootstrap from the machine's
Debian mirror (no container registry is reachable from the test machines).

The stand-in is cached twice: the debootstrapped tree in `CACHE` and the imported image in
the container storage, so only the first run pays for debootstrap (about a minute).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("GATEKEEPER_TEST_CACHE", "/var/cache/gatekeeper-test"))
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
BASE_IMAGE = f"docker.io/library/python:{PYTHON}-slim-bookworm"
TOOLS = ("buildah", "podman", "debootstrap")
SUITE = "bookworm"


class ContainerError(AssertionError):
    """A container tool failed; the message has its command line and output."""


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def run(argv: Sequence[str], *, timeout: float = 300, check: bool = True,
        stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), input=stdin.decode() if stdin else None,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise ContainerError(f"{shlex.join(argv)} exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d")) -> str:
    """The first Debian mirror apt uses for the suite (deb822 `.sources` or one-line lists)."""
    files = sorted(sources.glob("*.sources")) + sorted(sources.glob("*.list"))
    files.append(Path("/etc/apt/sources.list"))
    for path in files:
        text = path.read_text() if path.is_file() else ""
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
        for match in re.finditer(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", text, re.M):
            return match.group(1)
    raise ContainerError(f"no Debian {SUITE} mirror in {sources} or /etc/apt/sources.list")


def ensure_base_image() -> None:
    """Import the stand-in for the Dockerfile's FROM unless the storage has it already."""
    if run(["podman", "image", "exists", BASE_IMAGE], check=False).returncode == 0:
        return
    rootfs = CACHE / f"rootfs-{SUITE}"
    if not (rootfs / "usr/bin/python3").exists():
        partial = CACHE / f"rootfs-{SUITE}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        mirror = debian_mirror()
        done = run(["debootstrap", "--variant=minbase",
                    "--include=python3,python3-venv,python3-pip,ca-certificates",
                    SUITE, str(partial), mirror], timeout=900, check=False)
        if done.returncode != 0:
            raise ContainerError(f"debootstrap could not build the stand-in base image from "
                                 f"{mirror}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        partial.rename(rootfs)
    # Like the official python image: pip may install system-wide; `python` exists.
    (rootfs / f"usr/lib/python{PYTHON}/EXTERNALLY-MANAGED").unlink(missing_ok=True)
    python = rootfs / "usr/bin/python"
    if not python.exists():
        python.symlink_to("python3")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        imported = subprocess.run(["podman", "import", "-", BASE_IMAGE], stdin=tar.stdout,
                                  capture_output=True, text=True, timeout=600, check=False)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait(60)
    if imported.returncode != 0:
        raise ContainerError(f"podman import failed:\n{imported.stderr[-2000:]}")


def pip_settings(workdir: Path) -> list[str]:
    """`-v` options giving the build's `pip install` this machine's pip configuration (index,
    wheel directories, CA bundle), as one does behind any TLS-inspecting proxy: a pip.conf
    from `pip config list` plus the local paths it names, read-only at the same places."""
    listed = run([sys.executable, "-m", "pip", "config", "list"]).stdout
    settings: dict[str, str] = {}
    for line in listed.splitlines():
        match = re.fullmatch(r"(?:global|install|:env:)\.([\w-]+)='(.*)'", line.strip())
        if match:
            settings[match.group(1)] = match.group(2)
    conf = workdir / "pip.conf"
    conf.write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    mounts = ["-v", f"{conf}:/etc/pip.conf:ro"]
    paths = {"/etc/ssl/certs"}
    for value in settings.values():
        for token in value.split():
            path = token.removeprefix("file://").rstrip("/")
            if path.endswith("/simple"):  # a local index: its links point beside it
                path = os.path.dirname(path)
            if path.startswith("/") and os.path.exists(path):
                paths.add(path)
    for path in sorted(paths):
        mounts += ["-v", f"{path}:{path}:ro"]
    return mounts


def build(tag: str, workdir: Path) -> None:
    ensure_base_image()
    run(["buildah", "bud", "--isolation", "chroot", "--network", "host", "--pull=never",
         "--layers", *pip_settings(workdir), "-t", tag, str(REPO)], timeout=900)


class Container:
    """A working container of an image (`buildah from`), whose commands run as the image's
    user with its environment, with host directories mounted."""

    def __init__(self, image: str, mounts: dict[Path, str]) -> None:
        self.mounts = mounts
        self.name = run(["buildah", "from", "--pull-never", image]).stdout.strip()
        # buildah 1.28 mounts the image's VOLUMEs over all but the first `-v` of them; the
        # host directories given here stand for those volumes, as `docker run -v` would.
        run(["buildah", "config", *(f"--volume={inside}-" for inside in mounts.values()),
             self.name])

    def run(self, *command: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        volumes = [arg for host, inside in self.mounts.items()
                   for arg in ("-v", f"{host}:{inside}")]
        return run(["buildah", "run", "--isolation", "chroot", "--network", "host",
                    "--user", "10001:10001", *volumes, self.name, "--", *command],
                   check=check, timeout=timeout)

    def remove(self) -> None:
        run(["buildah", "rm", self.name], check=False)
