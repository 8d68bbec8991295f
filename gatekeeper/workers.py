"""`gatekeeper serve --workers N`: N proxy processes behind one listening address.

mitmproxy's engine runs on one event loop, so one process uses one core. The supervisor (this
module, the process systemd starts) runs N workers, each a whole `gatekeeper serve` that listens
on the same address with SO_REUSEPORT (gatekeeper.shared_port: the kernel spreads connections,
clients keep their source address). The workers share the state database (SQLite in WAL mode,
one writer thread each, SQLite's busy timeout between them) and each watches the configuration
itself. Worker 0 alone delivers the approver's notifications.

The supervisor holds the listening ports (bound, not listening) so they stay the group's while a
worker restarts; restarts a worker that dies, after a back-off; forwards SIGHUP (reload) and
SIGTERM; exits non-zero when a worker cannot start. Its own admin listener (the metrics port)
serves one `/metrics` (the workers' scrapes merged: gatekeeper.metrics_merge), one `/readyz`
(ready when every worker is), `/healthz` and the PAC file (from a ready worker). Each worker's
admin listener is private, on loopback, its port announced in `<state-dir>/workers/<index>.port`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from gatekeeper import logs
from gatekeeper.addons.lifecycle import _sd_notify
from gatekeeper.logs import get_logger
from gatekeeper.metrics import AdminServer, Reply
from gatekeeper.metrics_merge import MergedCollector, MergedScrapes
from gatekeeper.pacfile import PATHS as PAC_PATHS
from gatekeeper.serve import EXIT_CONFIG, ServeSettings, WorkerRole, check_configuration, serve
from gatekeeper.shared_port import listen_addresses, reserve, shareable

log = get_logger("gatekeeper.workers")

WORKER_ENV = "GATEKEEPER_WORKER"  # a worker's role and settings, as JSON
RUN_DIR = "workers"  # in the state directory: the workers' admin ports, cleaned at start
POLL_SECONDS = 0.2
FIRST_RESTART_SECONDS = 0.5
MAX_RESTART_SECONDS = 30.0
STEADY_SECONDS = 60.0  # a worker up this long restarts without back-off next time
STOP_SECONDS = 15.0  # within systemd's TimeoutStopSec=20s
PROBE_SECONDS = 2.0
TEXT = "text/plain; charset=utf-8"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
MIGRATE_SYSCTL = "/proc/sys/net/ipv4/tcp_migrate_req"
# A clean stop: systemd signals the whole group too, and a second SIGTERM that lands after the
# worker's loop has ended (its handlers gone) ends it by the signal itself.
STOPPED = (0, -signal.SIGTERM, -signal.SIGINT)


@dataclass
class Worker:
    """One slot of the pool and the process currently in it."""

    index: int
    role: WorkerRole
    settings: ServeSettings
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # consecutive short lives, for the back-off
    restart_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def admin_port(self) -> int | None:
        """The worker's private admin port, once it announced it."""
        try:
            return int(self.role.admin_file.read_text())
        except (OSError, ValueError):
            return None

    def get(self, path: str) -> Reply:
        """GET a path of the worker's admin listener; status 0 (and why) if unreachable."""
        port = self.admin_port() if self.alive else None
        if port is None:
            return Reply(0, TEXT, b"starting" if self.alive else b"restarting")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                        timeout=PROBE_SECONDS) as reply:
                return Reply(reply.status, reply.headers.get("Content-Type", TEXT), reply.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, TEXT, e.read())
        except OSError as e:
            return Reply(0, TEXT, f"unreachable ({e})".encode())


def supervise(settings: ServeSettings, count: int, log_format: str, log_level: str) -> int:
    """Run `count` workers until a stop signal; returns the process exit status."""
    problems = [p for p in map(shareable, settings.modes) if p]
    if problems:
        print("gatekeeper: " + "; ".join(problems), file=sys.stderr)
        return EXIT_CONFIG
    status = check_configuration(settings)
    if status is not None:
        return status
    run_dir = settings.state_dir / RUN_DIR
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(mode=0o700)
    held: list[socket.socket] = []
    try:
        held, settings = _hold_ports(settings)
        pool = Pool(settings, count, run_dir, log_format, log_level)  # binds the admin port
    except OSError as e:
        for sock in held:
            sock.close()
        print(f"gatekeeper: cannot listen: {e}", file=sys.stderr)
        return 1
    _check_queue_migration()
    try:
        return pool.run()
    finally:
        for sock in held:
            sock.close()


def _hold_ports(settings: ServeSettings) -> tuple[list[socket.socket], ServeSettings]:
    """Reserve every listening address; `--listen-port 0` becomes the port picked."""
    held: list[socket.socket] = []
    try:
        for host, port in listen_addresses(settings.modes, settings.listen_host,
                                           settings.listen_port):
            sockets = reserve(host, port)
            held += sockets
            if port == 0 and settings.listen_port == 0:
                settings = dataclasses.replace(
                    settings, listen_port=sockets[0].getsockname()[1])
            elif port == 0:
                raise OSError(f"a mode with port 0 ({host}:0) cannot be shared by workers")
    except OSError:
        for sock in held:
            sock.close()
        raise
    return held, settings


def _check_queue_migration() -> None:
    """Say so when connections waiting for a worker that dies are reset rather than handed to
    another worker (Linux `net.ipv4.tcp_migrate_req`, 5.14 and later)."""
    try:
        enabled = Path(MIGRATE_SYSCTL).read_text().strip() == "1"
    except OSError:
        return  # an older kernel: nothing to turn on
    if not enabled:
        log.warning("tcp_migrate_req_off", hint="connections a dying worker has not accepted "
                    "yet are reset; set net.ipv4.tcp_migrate_req = 1 (docs/deployment.md)")


class Pool:
    """The workers, the signals, the restarts and the merged admin listener."""

    def __init__(self, settings: ServeSettings, count: int, run_dir: Path,
                 log_format: str, log_level: str) -> None:
        self.log_format = log_format
        self.log_level = log_level
        self.admin: AdminServer | None = None
        if settings.metrics_port >= 0:
            self.admin = AdminServer(None, settings.metrics_host, settings.metrics_port)
        # Refused as destinations by every worker: the supervisor's listener, worker 0's PAC one.
        group_ports = (*((self.admin.address[1],) if self.admin else ()),
                       *((settings.pac_port,) if settings.pac_port > 0 else ()))
        self.workers = [
            Worker(i, WorkerRole(i, run_dir / f"{i}.port", group_ports),
                   dataclasses.replace(settings, metrics_host="127.0.0.1", metrics_port=0,
                                       pac_port=settings.pac_port if i == 0 else -1))
            for i in range(count)
        ]
        self.merged = MergedScrapes()
        self.stopping = False
        self.reload_requested = False
        self.ready_once = False  # every worker was ready at least once (/readyz said so)
        self.notified = False  # READY=1 sent

    # --- running ----------------------------------------------------------------------------

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        for worker in self.workers:
            self._start(worker)
        if self.admin is not None:
            self._serve_admin(self.admin)
        status = 1
        try:
            status = self._watch()
        finally:
            status = max(self._stop_all(), status)
            if self.admin is not None:
                self.admin.stop()
        log.info("stopped", status=status)
        return status

    def _watch(self) -> int:
        """Until a stop signal: restart dead workers; 0, or a worker's status if the pool could
        not start at all."""
        while not self.stopping:
            if self.reload_requested:
                self.reload_requested = False
                self._signal_all(signal.SIGHUP)
            now = time.monotonic()
            for worker in self.workers:
                if worker.process is not None and worker.process.poll() is not None:
                    status = worker.process.returncode
                    worker.process = None
                    if not self.ready_once:
                        log.error("worker_failed_to_start", worker=worker.index, status=status)
                        return status if status > 0 else 1  # killed by a signal: 1
                    self._schedule_restart(worker, status, now)
                if worker.process is None and worker.restart_at is not None \
                        and now >= worker.restart_at and not self.stopping:
                    self._start(worker)
            if not self.ready_once and self._all_ready():
                self.ready_once = True
            if self.ready_once and not self.notified:
                self.notified = True
                _sd_notify(b"READY=1")
                log.info("workers_ready", workers=len(self.workers),
                         pids=[w.process.pid for w in self.workers if w.process])
            time.sleep(POLL_SECONDS)
        return 0

    def _start(self, worker: Worker) -> None:
        worker.role.admin_file.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}  # one READY=1
        env[WORKER_ENV] = json.dumps({
            "index": worker.index,
            "admin_file": str(worker.role.admin_file),
            "group_ports": list(worker.role.group_ports),
            "log_format": self.log_format,
            "log_level": self.log_level,
            "supervisor": os.getpid(),
            "settings": dataclasses.asdict(worker.settings),
        }, default=str)
        worker.process = subprocess.Popen([sys.executable, "-m", "gatekeeper.workers"], env=env)
        worker.started = time.monotonic()
        worker.restart_at = None
        log.info("worker_started", worker=worker.index, pid=worker.process.pid)

    def _schedule_restart(self, worker: Worker, status: int, now: float) -> None:
        if now - worker.started >= STEADY_SECONDS:
            worker.failures = 0
        delay = min(MAX_RESTART_SECONDS, FIRST_RESTART_SECONDS * 2 ** worker.failures)
        worker.failures += 1
        worker.restart_at = now + delay
        log.error("worker_exited", worker=worker.index, status=status, restart_in_seconds=delay)

    def _stop_all(self) -> int:
        """SIGTERM every worker, wait, SIGKILL what is left; the worst exit status."""
        _sd_notify(b"STOPPING=1")
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        worst = 0
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                status = worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker_killed", worker=worker.index, pid=worker.process.pid)
                worker.process.kill()
                status = worker.process.wait()
            if status not in STOPPED:
                log.error("worker_stopped", worker=worker.index, status=status)
                worst = 1
        return worst

    def _signal_all(self, signum: int) -> None:
        for worker in self.workers:
            if worker.alive and worker.process is not None:
                worker.process.send_signal(signum)

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_reload(self, signum: int, frame: object) -> None:
        self.reload_requested = True

    # --- the merged admin listener ----------------------------------------------------------

    def _serve_admin(self, admin: AdminServer) -> None:
        registry = MergedCollector(self.merged, self._scrapes)
        admin.routes["/metrics"] = lambda: Reply(200, CONTENT_TYPE_LATEST,
                                                 generate_latest(registry))  # type: ignore[arg-type]
        admin.routes["/healthz"] = self._healthz
        admin.routes["/readyz"] = self._readyz
        for path in PAC_PATHS:
            admin.routes[path] = lambda path=path: self._from_a_worker(path)
        admin.start()
        host, port = admin.address
        log.info("admin_listening", url=f"http://{host}:{port}/metrics", workers=len(self.workers))

    def _scrapes(self) -> list[tuple[int, int, str]]:
        scrapes = []
        for worker in self.workers:
            process = worker.process
            reply = worker.get("/metrics")
            if reply.status == 200 and process is not None:
                scrapes.append((worker.index, process.pid, reply.body.decode()))
        return scrapes

    def _all_ready(self) -> bool:
        return all(worker.get("/readyz").status == 200 for worker in self.workers)

    def _readyz(self) -> Reply:
        """Ready when every worker is: worker 0's text, or each worker's state."""
        answers = [worker.get("/readyz") for worker in self.workers]
        if all(answer.status == 200 for answer in answers):
            self.ready_once = True  # from now on a dying worker is restarted
            return answers[0]
        lines = [f"worker {i}: {answer.body.decode(errors='replace').strip()}"
                 for i, answer in enumerate(answers) if answer.status != 200]
        return Reply(503, TEXT, ("not ready\n" + "\n".join(lines) + "\n").encode())

    def _healthz(self) -> Reply:
        """Alive while a worker is (the supervisor restarts the others)."""
        if any(worker.get("/healthz").status == 200 for worker in self.workers):
            return Reply(200, TEXT, b"alive\n")
        return Reply(503, TEXT, b"not alive\n")

    def _from_a_worker(self, path: str) -> Reply:
        for worker in self.workers:
            reply = worker.get(path)
            if reply.status == 200:
                return reply
        return Reply(503, TEXT, b"no worker is ready\n")


def main() -> int:
    """A worker: `python -m gatekeeper.workers`, started by the supervisor with its role."""
    spec = json.loads(os.environ.pop(WORKER_ENV))
    _end_with_the_supervisor(spec["supervisor"])
    logs.configure(spec["log_format"], spec["log_level"])
    raw = spec["settings"]
    settings = ServeSettings(**{**raw, "config_dir": Path(raw["config_dir"]),
                                "state_dir": Path(raw["state_dir"])})
    role = WorkerRole(spec["index"], Path(spec["admin_file"]), tuple(spec["group_ports"]))
    return serve(settings, role)


def _end_with_the_supervisor(supervisor: int) -> None:
    """Have the kernel send this worker SIGTERM when the supervisor dies (even by SIGKILL), so
    no orphan keeps the shared port (Linux `PR_SET_PDEATHSIG`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("parent_death_signal_unavailable", error=os.strerror(ctypes.get_errno()))
    if os.getppid() != supervisor:  # it died before the request took effect
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
