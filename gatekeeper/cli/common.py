"""What every `gatekeeper` command shares: the `--config-dir` and `--state-dir` options, the
handler type, and printing configuration problems (one `path:line: message` line each).

The directories come from one place, so a command works as printed from any directory: the
flag, else the environment variable (`GATEKEEPER_CONFIG_DIR`, `GATEKEEPER_STATE_DIR`), else
the same `KEY=VALUE` line in the installed environment file `/etc/gatekeeper/gatekeeper.env`
(the file the systemd units read; `$GATEKEEPER_ENV_FILE` names another), else `./config` and
`./state`.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.model import Policy
from gatekeeper.directory.store import office_policy

DEFAULT_CONFIG_DIR = "config"
DEFAULT_STATE_DIR = "state"
ENV_FILE = "/etc/gatekeeper/gatekeeper.env"
ENV_FILE_VARIABLE = "GATEKEEPER_ENV_FILE"
CONFIG_DIR_VARIABLE = "GATEKEEPER_CONFIG_DIR"
STATE_DIR_VARIABLE = "GATEKEEPER_STATE_DIR"
_FROM_ENV = f"$VAR, else VAR in {ENV_FILE}"
CONFIG_DIR_HELP = ("directory with services.yaml and approvals.yaml (default: "
                   + _FROM_ENV.replace("VAR", CONFIG_DIR_VARIABLE) + ", else ./config)")

CommandHandler = Callable[[argparse.Namespace], int]
AddCommand = Callable[[argparse._SubParsersAction], None]


def env_file_settings() -> dict[str, str]:
    """The `KEY=VALUE` lines of the installed environment file ({} when there is none)."""
    return dict(_read_env_file(os.environ.get(ENV_FILE_VARIABLE) or ENV_FILE))


@functools.lru_cache(maxsize=4)
def _read_env_file(path: str) -> tuple[tuple[str, str], ...]:
    """systemd `EnvironmentFile=` syntax: `#` comments, optional quotes around the value. A
    file that exists but cannot be read is said once on stderr: the defaults would name the
    wrong place."""
    env_file = Path(path)
    try:
        text = env_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError) as e:
        print(f"gatekeeper: cannot read {env_file} ({e}); its settings are not used",
              file=sys.stderr)
        return ()
    settings: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        settings[key] = value
    return tuple(settings.items())


def setting(name: str, default: str) -> str:
    """The environment variable `name`, else its line in the environment file, else `default`."""
    return os.environ.get(name) or env_file_settings().get(name) or default


def config_dir_arg(parser: argparse.ArgumentParser, text: str = CONFIG_DIR_HELP) -> None:
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=Path(setting(CONFIG_DIR_VARIABLE, DEFAULT_CONFIG_DIR)),
        metavar="DIR",
        help=text,
    )


def state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(setting(STATE_DIR_VARIABLE, DEFAULT_STATE_DIR)),
        metavar="DIR",
        help="directory for the state database, keys and the proxy CA (default: "
        + _FROM_ENV.replace("VAR", STATE_DIR_VARIABLE) + ", else ./state)",
    )


def print_problems(error: ConfigError) -> None:
    """Every problem of a configuration error on stderr, one `path:line: message` per line."""
    for problem in error.problems:
        print(problem, file=sys.stderr)


def load_or_report(config_dir: Path, state_dir: Path | None = None) -> Policy | None:
    """The policy, or None after printing every problem as `path:line: message` to stderr.
    With an office directory, its employees are those of the last list the proxy saved in
    `state_dir` (none: only approvals.yaml's)."""
    try:
        return office_policy(config_dir, state_dir)
    except ConfigError as e:
        print_problems(e)
        return None
