"""The PAC file's own LAN-facing listener (`--pac-host/--pac-port`).

The metrics listener serves the PAC file too (routes added by `Lifecycle`), but it also serves
/metrics and usually stays on loopback; this listener answers /proxy.pac and /wpad.dat only.
"""

from __future__ import annotations

from mitmproxy import ctx

from gatekeeper import pacfile as pac
from gatekeeper.addons.runtime import Runtime, log
from gatekeeper.metrics import AdminServer


class PacListener:
    """Declares the PAC options and runs the separate PAC listener when a port is set."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.server: AdminServer | None = None

    def load(self, loader) -> None:
        loader.add_option(
            "gatekeeper_pac_proxy", str, "",
            "HOST:PORT the PAC file sends governed domains to (default: the regular listener).",
        )
        loader.add_option(
            "gatekeeper_pac_host", str, "",
            "Address of the PAC-only listener (default: listen_host).",
        )
        loader.add_option(
            "gatekeeper_pac_port", int, -1,
            "Port of the PAC-only listener serving /proxy.pac and /wpad.dat; -1: none (the "
            "metrics listener serves them anyway).",
        )

    def running(self) -> None:
        port = ctx.options.gatekeeper_pac_port
        if port < 0 or self.server is not None:
            return
        host = ctx.options.gatekeeper_pac_host or ctx.options.listen_host
        self.server = AdminServer(None, host, port)
        self.server.routes = pac.routes(lambda: self.runtime.policy, pac.proxy_for(ctx.options))
        self.server.start()
        self.runtime.listeners.append(self.server)
        bound_host, bound_port = self.server.address
        log.info("pac_listening", url=f"http://{bound_host}:{bound_port}/proxy.pac")

    def done(self) -> None:
        if self.server is not None:
            self.server.stop()
