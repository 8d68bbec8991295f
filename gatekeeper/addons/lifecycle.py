"""Start-up and shut-down: options, the first policy load, live reload, the admin listener."""

from __future__ import annotations

import datetime as dt
import gc
import os
import re
import socket
from pathlib import Path

from mitmproxy import ctx, exceptions
from mitmproxy.version import VERSION as MITMPROXY_VERSION

import gatekeeper
from gatekeeper import notify
from gatekeeper import pacfile as pac
from gatekeeper.addons.runtime import Runtime, log
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.hosts import normalize_host
from gatekeeper.core.model import Policy
from gatekeeper.metrics import AdminServer, Metrics
from gatekeeper.policy_metrics import PendingRequests, PolicyCollector
from gatekeeper.reload import PolicyReloader
from gatekeeper.statedb import StateError
from gatekeeper.statedb.worker import StateOperationError


class Lifecycle:
    """Declares gatekeeper's options and owns the reloader and the admin listener.

    Every other gatekeeper addon reads the policy this one keeps current.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.reloader: PolicyReloader | None = None
        self.admin: AdminServer | None = None

    def load(self, loader) -> None:
        loader.add_option(
            "gatekeeper_config_dir", str, "",
            "Directory with services.yaml and approvals.yaml (watched for changes). Required.",
        )
        loader.add_option(
            "gatekeeper_state_dir", str, "state",
            "Directory for gatekeeper's state database and keys.",
        )
        loader.add_option(
            "gatekeeper_metrics_host", str, "127.0.0.1",
            "Address of the metrics and health listener (/metrics, /healthz, /readyz).",
        )
        loader.add_option(
            "gatekeeper_metrics_port", int, 9464,
            "Port of the metrics and health listener; 0 picks a free one, -1 disables it.",
        )
        loader.add_option(
            "gatekeeper_metrics_employee_label", bool, False,
            "Add an `employee` label to the decision counters (small offices only).",
        )

    def configure(self, updated: set[str]) -> None:
        if "gatekeeper_metrics_employee_label" in updated and self.reloader is None:
            self.runtime.metrics = Metrics(
                employee_label=ctx.options.gatekeeper_metrics_employee_label
            )
        if "gatekeeper_config_dir" in updated and ctx.options.gatekeeper_config_dir:
            self._start_reloader(Path(ctx.options.gatekeeper_config_dir))
        if "gatekeeper_console_host" in updated and self.runtime.policy is not None:
            _intercept_only(self.runtime.policy)
        if updated & {"allow_hosts", "ignore_hosts", "tcp_hosts", "connection_strategy",
                      "stream_large_bodies", "show_ignored_hosts"}:
            self._check_interception_options()

    def running(self) -> None:
        if self.runtime.policy is None:
            # Without a policy every governed request would fail closed; say why and stop.
            log.error("no_configuration", hint="set gatekeeper_config_dir to the config directory")
            ctx.master.shutdown()
            return
        state_dir = ctx.options.gatekeeper_state_dir
        try:
            # Shared by every addon from here on; a damaged database is checked (quick_check)
            # and reported on /readyz, not a reason to stop enforcing.
            state = self.runtime.open_state(Path(state_dir))
        except (StateError, OSError) as e:
            log.error("state_unavailable", state_dir=state_dir, error=str(e))
            ctx.master.shutdown()
            return
        metrics = self.runtime.metrics
        metrics.build_info.info(
            {"version": gatekeeper.__version__, "mitmproxy": MITMPROXY_VERSION}
        )
        port = ctx.options.gatekeeper_metrics_port
        if port >= 0 and self.admin is None:
            self.admin = AdminServer(metrics, ctx.options.gatekeeper_metrics_host, port)
            pending = PendingRequests(lambda: self.runtime.state)
            metrics.registry.register(
                PolicyCollector(lambda: self.runtime.policy, pending.read, today=self.runtime.today)
            )
            self.admin.routes.update(
                pac.routes(lambda: self.runtime.policy, pac.proxy_for(ctx.options))
            )
            self.admin.alive = lambda: self.runtime.policy is not None
            self.admin.ready = lambda: self.runtime.ready and self.runtime.policy is not None
            self.admin.problems = lambda: [*self._config_problems(), *state.problems()]
            self.admin.start()
            self.runtime.admin = self.admin
            self.runtime.listeners.append(self.admin)
            host, bound = self.admin.address
            log.info("admin_listening", url=f"http://{host}:{bound}/metrics")
        if self._config_problems():  # started on the last good configuration: tell IT
            self._tell_it(notify.snapshot_start_messages, self._config_problems()[1:])
        # Ready once every addon's `running` has run (state loaded, PAC listener up): the
        # hooks run in one step of the event loop, this callback in the next.
        ctx.master.event_loop.call_soon(self._ready)

    def _ready(self) -> None:
        self.runtime.ready = True
        _sd_notify(b"READY=1")

    def done(self) -> None:
        self.runtime.ready = False
        _sd_notify(b"STOPPING=1")
        if self.reloader is not None:
            self.reloader.stop()
        if self.admin is not None:
            self.admin.stop()

    def reload(self) -> None:
        """Reload now (SIGHUP), even if the files look unchanged."""
        if self.reloader is not None:
            self.reloader.trigger(force=True)

    def _config_problems(self) -> list[str]:
        """Why the policy in force is the saved copy, not the files' (empty: it is not)."""
        return self.reloader.problems if self.reloader is not None else []

    def _tell_it(self, build: notify.ItMessages, problems: list[str]) -> None:
        """Queue a message to IT (notify: it:) about the configuration and wake the notifier:
        from the reloader's thread, or at start-up while the proxy serves nobody yet."""
        policy, worker = self.runtime.policy, self.runtime.state_worker
        if policy is None or worker is None:
            return
        config_dir = str(self.reloader.config_dir) if self.reloader else ""
        queued = build(policy, config_dir, problems)
        if not queued:
            return
        try:
            worker.call("queue_notification", lambda db: db.queue_notifications(
                queued, dt.datetime.now(dt.UTC)))
        except StateOperationError:
            return  # logged and counted by the worker
        self.runtime.wake_notifier()

    def _start_reloader(self, config_dir: Path) -> None:
        if self.reloader is not None:
            self.reloader.stop()
        loop = ctx.master.event_loop
        self.reloader = PolicyReloader(
            config_dir,
            self.runtime.file_policy,
            self.runtime.metrics,
            on_change=lambda policy: loop.call_soon_threadsafe(_intercept_only, policy),
            state_dir=Path(ctx.options.gatekeeper_state_dir),
            on_failure=lambda problems: self._tell_it(notify.reload_failed_messages, problems),
        )
        try:
            policy = self.reloader.load_initial()
        except ConfigError as e:
            raise exceptions.OptionsError(
                "invalid gatekeeper configuration:\n" + "\n".join(str(p) for p in e.problems)
            ) from e
        _intercept_only(policy)
        self.reloader.start()
        log.info("config_loaded", sha256=policy.sha256, config_dir=str(config_dir),
                 last_good_copy=bool(self.reloader.problems),
                 services=len(policy.services), employees=len(policy.employees),
                 grants=len(policy.grants), mode=policy.mode.value)

    def _check_interception_options(self) -> None:
        policy = self.runtime.policy
        if policy is not None and ctx.options.allow_hosts != intercepted_hosts(policy):
            raise exceptions.OptionsError(
                "allow_hosts is managed by gatekeeper (it intercepts exactly the catalog's "
                "domains); do not set it"
            )
        for name in ("ignore_hosts", "tcp_hosts"):
            if getattr(ctx.options, name):
                raise exceptions.OptionsError(
                    f"{name} would let governed traffic bypass gatekeeper; do not set it"
                )
        if ctx.options.show_ignored_hosts:
            # Relayed connections would become TCP flows, each one a Python hook per message,
            # and indistinguishable from the raw tunnels gatekeeper refuses.
            raise exceptions.OptionsError(
                "show_ignored_hosts would refuse every relayed connection; do not set it"
            )
        if ctx.options.stream_large_bodies:
            # mitmproxy switches a large chunked body to streaming half-way, forwarding it
            # before the request hook: a login could reach the service unchecked.
            raise exceptions.OptionsError(
                "stream_large_bodies would forward request bodies before gatekeeper checks "
                "them; do not set it"
            )
        if ctx.options.connection_strategy != "lazy":
            raise exceptions.OptionsError(
                "connection_strategy must stay 'lazy': a blocked request must never open an "
                "upstream connection"
            )


def intercepted_hosts(policy: Policy) -> list[str]:
    """`allow_hosts`: the catalog's domains and the approver's console, if it is on."""
    patterns = [policy.domains.allow_hosts_pattern()]
    console = getattr(ctx.options, "gatekeeper_console_host", "")
    if console:
        patterns.append(rf"\A{re.escape(normalize_host(console))}\.?(?::\d+)?\Z")
    return patterns


def _intercept_only(policy: Policy) -> None:
    """Intercept the catalog's domains (and the console); mitmproxy relays everything else
    undecrypted."""
    patterns = intercepted_hosts(policy)
    if ctx.options.allow_hosts != patterns:
        ctx.options.update(allow_hosts=patterns, connection_strategy="lazy")
    elif ctx.options.connection_strategy != "lazy":
        ctx.options.update(connection_strategy="lazy")


def _sd_notify(message: bytes) -> None:
    """Tell systemd (Type=notify) about readiness; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, address)
    except OSError as e:
        log.warning("sd_notify_failed", error=str(e))


class SettledHeap:
    """Once the proxy runs (first policy loaded, listeners up, state opened), what exists
    lives as long as the process: mitmproxy's and gatekeeper's modules, the options, the
    catalog. `gc.freeze` takes it out of the cyclic garbage collector's full collections,
    which otherwise rescan all of it every few thousand requests (in plain mitmdump about
    1.5% of the CPU of intercepted traffic). Garbage is collected first, so nothing that is
    already unreachable is kept; objects frozen here are still freed by reference counting,
    so the policy loaded at start-up is freed when a reload replaces it, but for the few
    objects of it in reference cycles (about 3% of a 2,000-employee policy's memory, once)."""

    def running(self) -> None:
        gc.collect()
        gc.freeze()
