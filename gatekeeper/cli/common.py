"""What every `gatekeeper` command shares: the `--config-dir` and `--state-dir` options, the
handler type, and printing configuration problems (one `path:line: message` line each)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.core.model import Policy
from gatekeeper.directory.store import office_policy

DEFAULT_CONFIG_DIR = "config"
DEFAULT_STATE_DIR = "state"
CONFIG_DIR_HELP = ("directory with services.yaml and approvals.yaml "
                   "(default: $GATEKEEPER_CONFIG_DIR or ./config)")

CommandHandler = Callable[[argparse.Namespace], int]
AddCommand = Callable[[argparse._SubParsersAction], None]


def config_dir_arg(parser: argparse.ArgumentParser, text: str = CONFIG_DIR_HELP) -> None:
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=Path(os.environ.get("GATEKEEPER_CONFIG_DIR", DEFAULT_CONFIG_DIR)),
        metavar="DIR",
        help=text,
    )


def state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("GATEKEEPER_STATE_DIR", DEFAULT_STATE_DIR)),
        metavar="DIR",
        help="directory for the state database, keys and the proxy CA "
        "(default: $GATEKEEPER_STATE_DIR or ./state)",
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
