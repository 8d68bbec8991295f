"""`gatekeeper check` for the `directory:` section of gateway.yaml; `--online` signs in."""

from __future__ import annotations

import sys
from pathlib import Path

from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.directory import compose, leaver_grants
from gatekeeper.core.model import Policy
from gatekeeper.directory.client import DirectoryUnavailableError, fetch_people
from gatekeeper.directory.store import directory_settings


def check_directory(config_dir: Path, policy: Policy, *, online: bool) -> int:
    """Validate the section (its bind password file included); with `online`, read the
    employees as the proxy would and say who they are. Returns the exit status."""
    try:
        settings = directory_settings(config_dir)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return 1
    if settings is None:
        if online:
            print("gatekeeper check --online: gateway.yaml has no directory: section; "
                  "nothing to sign in to", file=sys.stderr)
        return 0
    who = f"members of {settings.group}" if settings.group else "accounts"
    print(f"directory: {settings.url} ({settings.preset}): {who} under {settings.base_dn} "
          f"matching {settings.filter}")
    if not online:
        return 0
    try:
        directory = fetch_people(settings)
    except DirectoryUnavailableError as e:
        print(f"directory: cannot read the employees from {settings.url}: {e}", file=sys.stderr)
        return 1
    composition = compose(policy, directory)
    added = len(composition.policy.employees) - len(policy.employees)
    print(f"directory: signed in as {settings.bind_dn}: {len(directory.people)} accounts, "
          f"{added} employees from the directory ({len(composition.skipped)} left out), "
          f"{len(composition.policy.employees)} employees in all")
    for person_id, why in composition.skipped:
        print(f"  left out: {person_id}: {why}")
    for grant in leaver_grants(composition.policy):
        print(f"warning: the grant of {grant.employee!r} for {grant.service} names nobody in "
              "approvals.yaml or the directory's employees (a leaver?): "
              f"gatekeeper revoke {grant.employee} {grant.service}", file=sys.stderr)
    return 0
