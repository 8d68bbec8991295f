"""The real proxy as a subprocess: `gatekeeper serve` (or `mitmdump -s addons/gatekeeper.py`).

It runs in a private mount namespace with a hosts file bind-mounted over /etc/hosts, so fake
names (www.facebook.com, ...) resolve to FakeSite loopback addresses for the proxy only; it
stays in the host's network namespace, so the tests reach it on 127.0.0.1. Every line it
prints goes to `test-artifacts/logs/` as well, for the suite-wide secrets check.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import requests
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
# One directory per test run, so a secrets check greps this run's logs and nothing stale.
RUN_ID = f"run-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
ARTIFACT_LOGS = REPO / "test-artifacts" / "logs" / RUN_ID
BIN = Path(sys.executable).parent
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

# The fake upstream sites listen on loopback, which the proxy refuses unless allow-listed; its
# own listening ports stay refused even so (tests/adversarial/test_evasion_gateway.py).
LOOPBACK_UPSTREAMS = ("127.0.0.0/8",)

Event = dict[str, Any]
MetricKey = tuple[str, frozenset[tuple[str, str]]]
_counter = itertools.count(1)


def free_port() -> int:
    """A TCP port nobody listens on right now on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def can_unshare() -> bool:
    """True if this process may make mount namespaces (root and util-linux `unshare`)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def hosts_file_text(hosts: Mapping[str, str]) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
    lines += [f"{address} {name}" for name, address in sorted(hosts.items())]
    return "\n".join(lines) + "\n"


class ProxyProcess:
    """A proxy subprocess with its logs, metrics and signals; see GatekeeperProcess.

    `args` are extra command-line arguments; `hosts` maps host names to addresses for the
    proxy's own /etc/hosts (needs root); `prefix` is prepended to the whole command line
    (e.g. `ip netns exec NS`; it must exec, not fork, so signals reach the proxy); `name`
    labels the artifact log file; `allowed_destinations` is passed as
    `gatekeeper_allowed_destinations` (default: loopback, where the fake sites listen; `()`
    leaves the proxy's default, which refuses loopback).
    """

    def __init__(self, config_dir: Path, state_dir: Path, *, args: Sequence[str] = (),
                 hosts: Mapping[str, str] | None = None,
                 prefix: Sequence[str] = (), name: str = "proxy",
                 listen_port: int | None = None, metrics_port: int | None = None,
                 env: Mapping[str, str] | None = None,
                 allowed_destinations: Sequence[str] = LOOPBACK_UPSTREAMS) -> None:
        self.config_dir = Path(config_dir)
        self.state_dir = Path(state_dir)
        self.args = [
            *(arg for entry in allowed_destinations
              for arg in ("--set", f"gatekeeper_allowed_destinations={entry}")),
            *args,
        ]
        self.hosts = dict(hosts or {})
        self.prefix = list(prefix)
        self.listen_port = listen_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]
        ARTIFACT_LOGS.mkdir(parents=True, exist_ok=True)
        self.artifact = ARTIFACT_LOGS / f"{safe_name}-{next(_counter)}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._changed = threading.Condition()
        self._readers: list[threading.Thread] = []
        self._artifact_file: IO[str] | None = None

    # --- to override --------------------------------------------------------------------------

    def proxy_argv(self) -> list[str]:
        raise NotImplementedError

    # --- life cycle ---------------------------------------------------------------------------

    def argv(self) -> list[str]:
        """The full command line: prefix, then the mount namespace if hosts are mapped."""
        command = self.proxy_argv()
        if self.hosts:
            hosts_path = self.state_dir.parent / f"{self.state_dir.name}.hosts"
            hosts_path.write_text(hosts_file_text(self.hosts))
            hosts_path.chmod(0o644)
            command = [
                "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts_path),
                *command,
            ]
        return self.prefix + command

    def start(self, *, wait: bool = True) -> ProxyProcess:
        """Start the process; with `wait`, return once it is ready (or fail with its stderr)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._artifact_file = self.artifact.open("a", encoding="utf-8")
        argv = self.argv()
        # Not the command line: it may hold a proxyauth password the secrets check looks for.
        self._artifact_file.write(
            f"# {type(self).__name__} listen={self.listen_port} metrics={self.metrics_port}\n"
        )
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env, cwd=REPO,
        )
        for stream, lines, tag in ((self.process.stdout, self.stdout_lines, "out"),
                                   (self.process.stderr, self.stderr_lines, "err")):
            reader = threading.Thread(target=self._read, args=(stream, lines, tag), daemon=True)
            reader.start()
            self._readers.append(reader)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll /readyz and the proxy port; fail fast with stderr if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                self._join_readers()
                raise AssertionError(
                    f"proxy exited with {self.returncode} before it was ready:\n{self.stderr}"
                    f"\n{self.stdout}"
                )
            if self._ready():
                return
            time.sleep(0.05)
        raise AssertionError(f"proxy not ready after {timeout}s:\n{self.stderr}\n{self.stdout}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.metrics_url}/readyz", timeout=1) as reply:
                if reply.status != 200:
                    return False
        except (urllib.error.URLError, OSError):
            return False
        return port_open(self.listen_port)

    def signal(self, sig: int) -> None:
        assert self.process is not None, "not started"
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to end by itself; returns its exit status."""
        assert self.process is not None, "not started"
        try:
            status = self.process.wait(timeout)
        finally:
            self._join_readers()
        return status

    def stop(self, expect_status: int | None = 0) -> int:
        """SIGTERM, wait, and check the exit status (`expect_status=None`: do not check)."""
        assert self.process is not None, "not started"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.wait_exit()
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.wait_exit()
            raise AssertionError(f"proxy ignored SIGTERM for {STOP_TIMEOUT}s; killed") from None
        if expect_status is not None:
            assert status == expect_status, (
                f"proxy exited with {status}, expected {expect_status}:\n{self.stderr}"
            )
        return status

    def kill(self) -> None:
        """Teardown of last resort: no checks."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.wait_exit()
        self._join_readers()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    # --- addresses and clients ----------------------------------------------------------------

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def readyz(self) -> tuple[int, str]:
        """/readyz's status and text; (0, "") while nothing listens yet."""
        try:
            with urllib.request.urlopen(f"{self.metrics_url}/readyz", timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    @property
    def ca_cert(self) -> Path:
        """The proxy's CA certificate (PEM), which clients must trust for governed sites."""
        return self.state_dir / "ca" / "mitmproxy-ca-cert.pem"

    def proxy_url_for(self, user: str | None = None, password: str | None = None) -> str:
        if user is None:
            return self.proxy_url
        return f"http://{user}:{password or ''}@127.0.0.1:{self.listen_port}"

    def session(self, user: str | None = None, password: str | None = None) -> requests.Session:
        """A requests session through the proxy (proxy auth when `user` is given) that
        trusts the proxy's CA and ignores the environment's proxy settings."""
        session = requests.Session()
        session.trust_env = False
        url = self.proxy_url_for(user, password)
        session.proxies = {"http": url, "https": url}
        session.verify = str(self.ca_cert)
        return session

    # --- logs ---------------------------------------------------------------------------------

    @property
    def stdout(self) -> str:
        with self._changed:
            return "\n".join(self.stdout_lines)

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.stderr_lines)

    def log_lines(self) -> list[Event]:
        """Every JSON event printed on stdout so far (other lines are skipped)."""
        with self._changed:
            lines = list(self.stdout_lines)
        return [event for event in map(_json_event, lines) if event is not None]

    def events(self, name: str) -> list[Event]:
        """Logged events called `name` (e.g. "decision")."""
        return [e for e in self.log_lines() if e.get("event") == name]

    def wait_for_log(self, predicate: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        """The first logged event satisfying `predicate`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in map(_json_event, self.stdout_lines):
                    if event is not None and predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching log event in {timeout}s:\n{self.stdout}")
                self._changed.wait(remaining)

    def _read(self, stream: IO[bytes], lines: list[str], tag: str) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._changed:
                lines.append(line)
                if self._artifact_file is not None:
                    self._artifact_file.write(f"{tag}: {line}\n")
                    self._artifact_file.flush()
                self._changed.notify_all()

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)
        with self._changed:
            if self._artifact_file is not None and not any(r.is_alive() for r in self._readers):
                self._artifact_file.close()
                self._artifact_file = None

    # --- metrics ------------------------------------------------------------------------------

    def scrape(self) -> dict[MetricKey, float]:
        """Every sample of /metrics, fetched over HTTP and parsed by prometheus_client."""
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` (e.g. gatekeeper_blocked_total) whose labels
        include `labels`; 0.0 if there are none."""
        wanted = set(labels.items())
        return sum(
            value for (sample, sample_labels), value in self.scrape().items()
            if sample == name and wanted <= sample_labels
        )

    def wait_for_metric(self, name: str, value: float, timeout: float = 5.0,
                        **labels: str) -> float:
        """Poll until `metric(name, **labels) == value`."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.metric(name, **labels)
            if current == value:
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}{labels} is {current}, waited {timeout}s for {value}")
            time.sleep(0.05)


class GatekeeperProcess(ProxyProcess):
    """`gatekeeper serve` with explicit ports, JSON logs and `ssl_insecure` (fake upstreams
    are signed by the test CA). `args` are extra CLI arguments, e.g.
    ["--set", "proxyauth=any"] or ["--mode", "transparent"]."""

    def proxy_argv(self) -> list[str]:
        return [
            str(BIN / "gatekeeper"), "serve",
            "--config-dir", str(self.config_dir),
            "--state-dir", str(self.state_dir),
            "--listen-host", "127.0.0.1", "--listen-port", str(self.listen_port),
            "--metrics-host", "127.0.0.1", "--metrics-port", str(self.metrics_port),
            "--log-format", "json",
            "--set", "ssl_insecure=true",
            *self.args,
        ]


class MitmdumpProcess(ProxyProcess):
    """Plain `mitmdump -s addons/gatekeeper.py`, as an admin without the CLI would run it."""

    def proxy_argv(self) -> list[str]:
        return [
            str(BIN / "mitmdump"), "-q",
            "-s", str(REPO / "addons" / "gatekeeper.py"),
            "--listen-host", "127.0.0.1", "--listen-port", str(self.listen_port),
            "--set", f"confdir={self.state_dir / 'ca'}",
            "--set", f"gatekeeper_state_dir={self.state_dir}",
            "--set", f"gatekeeper_metrics_port={self.metrics_port}",
            "--set", "ssl_insecure=true",
            "--set", f"gatekeeper_config_dir={self.config_dir}",
            *self.args,
        ]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _json_event(line: str) -> Event | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None
