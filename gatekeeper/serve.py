"""`gatekeeper serve`: mitmproxy's engine with gatekeeper's addons, run as a daemon.

The configuration is validated before anything listens, so a broken file at start-up exits
with status 2 and the `path:line` problems on stderr, unless the state directory holds the last
good configuration (gatekeeper.snapshot): then that is enforced, loudly, rather than leaving the
office without the web while the firewall still sends it here. SIGTERM and SIGINT stop gracefully,
SIGHUP reloads the configuration (mitmdump alone would die on it).

With `--workers N` (gatekeeper.workers) each worker process runs `serve` with a `WorkerRole`:
its listeners share the port with the others (gatekeeper.shared_port), its admin listener is
private (the supervisor merges them into one), and only worker 0 delivers notifications.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mitmproxy import exceptions
from mitmproxy.options import Options
from mitmproxy.tools.dump import DumpMaster

from gatekeeper import snapshot
from gatekeeper.addons import all_addons
from gatekeeper.addons.dispatch import Addons
from gatekeeper.addons.lifecycle import Lifecycle
from gatekeeper.addons.runtime import Runtime
from gatekeeper.config.incremental import LoadCache
from gatekeeper.config.loader import load_policy
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.logs import get_logger
from gatekeeper.shared_port import SharedPortLoop

log = get_logger("gatekeeper.serve")
EXIT_CONFIG = 2


@dataclass
class ServeSettings:
    config_dir: Path
    state_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    modes: list[str] = field(default_factory=lambda: ["regular"])  # mitmproxy mode specs
    pac_proxy: str = ""  # HOST:PORT named in the PAC file ("": the regular listener)
    pac_host: str = ""  # the PAC-only listener ("": listen_host; pac_port -1: none)
    pac_port: int = -1
    metrics_employee_label: bool = False
    mitmproxy_options: list[str] = field(default_factory=list)  # "name=value" as for --set


@dataclass(frozen=True)
class WorkerRole:
    """What a worker of `gatekeeper serve --workers N` does differently."""

    index: int  # 0 delivers the notifications (one sender for the shared outbox)
    admin_file: Path  # where it writes its private admin listener's port for the supervisor
    group_ports: tuple[int, ...] = ()  # the group's other listeners: refused as destinations


def serve(settings: ServeSettings, worker: WorkerRole | None = None) -> int:
    """Run until a stop signal; returns the process exit status."""
    status = check_configuration(settings)
    if status is not None:
        return status
    _route_mitmproxy_logging()
    try:
        with asyncio.Runner(loop_factory=SharedPortLoop if worker else None) as runner:
            return runner.run(_run(settings, worker))
    except exceptions.OptionsError as e:
        print(f"gatekeeper: {e}", file=sys.stderr)
        return EXIT_CONFIG


def check_configuration(settings: ServeSettings) -> int | None:
    """Load the configuration once before anything listens and make the state directory;
    the exit status if the configuration is invalid (its problems on stderr), else None."""
    try:  # the shared cache lets the reloader's first load reuse this one's work
        load_policy(settings.config_dir, cache=LoadCache.shared(settings.config_dir))
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        if not snapshot.exists(settings.state_dir):
            print(f"gatekeeper: configuration in {settings.config_dir} is invalid; not started",
                  file=sys.stderr)
            return EXIT_CONFIG
        print(f"gatekeeper: configuration in {settings.config_dir} is invalid; enforcing the "
              f"last good one from {snapshot.snapshot_dir(settings.state_dir)}",
              file=sys.stderr)
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return None


async def _run(settings: ServeSettings, worker: WorkerRole | None) -> int:
    options = Options()
    master = DumpMaster(options, with_termlog=False, with_dumper=False)
    runtime = Runtime()
    addons = all_addons(runtime)
    master.addons.add(Addons(addons))  # one chain entry: mitmproxy dispatches each event once
    if worker is not None:
        runtime.in_pool = True
        runtime.delivers_notifications = worker.index == 0
        runtime.group_ports = frozenset(worker.group_ports)
        master.addons.add(_AnnounceAdmin(runtime, worker.admin_file))
    lifecycle = next(a for a in addons if isinstance(a, Lifecycle))
    options.update(
        listen_host=settings.listen_host,
        listen_port=settings.listen_port,
        mode=settings.modes,
        confdir=str(settings.state_dir / "ca"),
        connection_strategy="lazy",
        gatekeeper_state_dir=str(settings.state_dir),
        gatekeeper_metrics_host=settings.metrics_host,
        gatekeeper_metrics_port=settings.metrics_port,
        gatekeeper_metrics_employee_label=settings.metrics_employee_label,
        gatekeeper_pac_proxy=settings.pac_proxy,
        gatekeeper_pac_host=settings.pac_host,
        gatekeeper_pac_port=settings.pac_port,
    )
    if settings.mitmproxy_options:
        options.set(*settings.mitmproxy_options)
    options.update(gatekeeper_config_dir=str(settings.config_dir))

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, master.shutdown)
    loop.add_signal_handler(signal.SIGHUP, _reload, lifecycle, runtime)
    await master.run()
    log.info("stopped")
    return 0


def _reload(lifecycle: Lifecycle, runtime: Runtime) -> None:
    """SIGHUP: reload the files and read the office directory again, both off the loop."""
    lifecycle.reload()
    if runtime.directory is not None:
        runtime.directory.refresh_soon()


class _AnnounceAdmin:
    """A worker's `running`, after Lifecycle's: tell the supervisor where its admin listener
    (port 0: any free one) answers, by a file replaced in one step."""

    def __init__(self, runtime: Runtime, path: Path) -> None:
        self.runtime = runtime
        self.path = path

    def running(self) -> None:
        if self.runtime.admin is not None:
            partial = self.path.with_suffix(".partial")
            partial.write_text(f"{self.runtime.admin.address[1]}\n")
            partial.replace(self.path)


class _ToStructlog(logging.Handler):
    """mitmproxy's own warnings and errors, as structured events.

    Info-level messages are left out: they name every client and server connection,
    including non-social sites, which gatekeeper never logs.
    """

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        getattr(log, level)("mitmproxy", message=record.getMessage())


def _route_mitmproxy_logging() -> None:
    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog(level=logging.WARNING)]
    root.setLevel(logging.WARNING)
