"""Fixtures of the in-process addon tests (mitmproxy's `taddons`/`tflow` style): a policy, a
runtime holding it, and the default documents to tweak. See support/flows.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import configs
from support.flows import make_policy, make_runtime, run_hooks

from gatekeeper.addons.accounts import Accounts
from gatekeeper.addons.lifecycle import Lifecycle
from gatekeeper.addons.runtime import Runtime
from gatekeeper.core.model import Policy

LINKEDIN = {**configs.LINKEDIN_ACCOUNTS,
            "terms_url": "https://www.linkedin.com/legal/user-agreement"}


@pytest.fixture
def services() -> configs.Doc:
    """The default catalog, LinkedIn with terms, a login rule, a session cookie, a tenant
    header, a prohibited and an audited action."""
    return configs.services_doc(linkedin=LINKEDIN)


@pytest.fixture
def approvals() -> configs.Doc:
    """The default approvals; alice's LinkedIn grant names her company account."""
    doc = configs.approvals_doc()
    doc["grants"][0]["accounts"] = ["alice@clinic.example"]
    return doc


@pytest.fixture
def policy(tmp_path: Path, services: configs.Doc, approvals: configs.Doc) -> Policy:
    return make_policy(tmp_path / "config", services=services, approvals=approvals)


@pytest.fixture
def runtime(tmp_path: Path, policy: Policy) -> Runtime:
    return make_runtime(tmp_path, policy)


@pytest.fixture
def accounts(runtime: Runtime, tmp_path: Path) -> Accounts:
    """The accounts addon, started: its session bindings read from the state database."""
    addon = Accounts(runtime)

    async def start(tctx) -> None:  # the bindings, read through the state worker
        addon.running()

    run_hooks(Lifecycle(runtime), addon, call=start, gatekeeper_state_dir=str(tmp_path / "state"))
    return addon
