"""Shared fixtures for the end-to-end tests; the harness API is described in support/__init__.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import configs
from support.fakesite import FakeSite
from support.proxy import GatekeeperProcess, ProxyProcess, can_unshare

SITE_HOSTNAMES = {
    "facebook": ["www.facebook.com", "facebook.com", "static.xx.fbcdn.net"],
    "linkedin": ["www.linkedin.com", "linkedin.com", "static.licdn.com"],
    "x": ["x.com", "twitter.com"],
    "bank": ["bank.example", "www.bank.example"],
}


class Sites(dict[str, FakeSite]):
    """The running fake sites by short name; `sites.facebook` works as well as `sites["..."]`."""

    def __getattr__(self, name: str) -> FakeSite:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def hosts(self) -> dict[str, str]:
        """Every host name of every site -> the site's loopback address."""
        return {name: site.address for site in self.values() for name in site.hostnames}


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return configs.write_config(tmp_path / "config")


@pytest.fixture
def fake_sites() -> Iterator[Sites]:
    sites = Sites()
    try:
        for name, hostnames in SITE_HOSTNAMES.items():
            sites[name] = FakeSite(hostnames, plain_http=True).start()
        yield sites
    finally:
        for site in sites.values():
            site.stop()


@pytest.fixture
def gk(request: pytest.FixtureRequest, tmp_path: Path, config_dir: Path,
       fake_sites: Sites) -> Iterator[Any]:
    started: list[ProxyProcess] = []

    def launch(config: Path | None = None, *, args: tuple[str, ...] | list[str] = (),
              hosts: dict[str, str] | None = None, wait: bool = True, name: str | None = None,
              cls: type[ProxyProcess] = GatekeeperProcess, **kwargs: Any) -> ProxyProcess:
        hosts = fake_sites.hosts() if hosts is None else hosts
        if hosts and not can_unshare():
            pytest.skip("needs root and unshare(1) to give the proxy its own /etc/hosts")
        proc = cls(
            config or config_dir,
            tmp_path / f"state-{len(started) + 1}",
            args=args,
            hosts=hosts,
            name=name or request.node.name,
            **kwargs,
        )
        started.append(proc)
        return proc.start(wait=wait)

    yield launch
    problems = []
    for proc in started:
        if proc.running:
            try:
                proc.stop()
            except AssertionError as e:
                problems.append(str(e))
        else:
            proc.kill()  # already ended: only collect its readers
    assert not problems, "\n".join(problems)
