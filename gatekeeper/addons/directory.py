"""Employees from the office directory (gateway.yaml `directory:`).

`DirectoryEmployees` comes first in the addon chain: when the config directory is set it reads
the `directory:` section, so that `Lifecycle`'s reloader installs the files' policy through
the directory (`Runtime.file_policy`). Proxy sign-in against the directory (a bind as the
user) is `ProxySignIn`'s, with the directory's verifier (`gatekeeper.directory.live`).
"""

from __future__ import annotations

from pathlib import Path

from mitmproxy import ctx, exceptions

from gatekeeper.addons.runtime import Runtime
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.directory.live import LiveDirectory
from gatekeeper.directory.store import directory_settings


class DirectoryEmployees:
    """Owns the `LiveDirectory` (list, refresh thread, sign-in pool)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def configure(self, updated: set[str]) -> None:
        if "gatekeeper_config_dir" in updated and ctx.options.gatekeeper_config_dir:
            self._setup(Path(ctx.options.gatekeeper_config_dir))
        if self.runtime.directory is not None and ctx.options.proxyauth:
            raise exceptions.OptionsError(
                "proxyauth and a directory: section in gateway.yaml both sign people in: "
                "remove proxyauth (the directory signs people in)"
            )

    def _setup(self, config_dir: Path) -> None:
        try:
            settings = directory_settings(config_dir)
        except ConfigError as e:
            raise exceptions.OptionsError(
                "invalid gateway.yaml:\n" + "\n".join(str(p) for p in e.problems)
            ) from e
        self.done()
        runtime = self.runtime
        if settings is None:
            runtime.directory, runtime.file_policy = None, runtime.holder
            return
        state_dir = Path(ctx.options.gatekeeper_state_dir)
        runtime.directory = LiveDirectory(settings, runtime.holder, lambda: runtime.metrics,
                                          state_dir)
        runtime.file_policy = runtime.directory.inbox

    def running(self) -> None:
        if self.runtime.directory is not None:
            self.runtime.directory.start()

    def done(self) -> None:
        if self.runtime.directory is not None:
            self.runtime.directory.stop()
