"""structlog set-up: JSON lines on stdout (journald, Docker), a readable console on a TTY.

Events are named by what happened (`decision`, `config_reloaded`, ...). Fields are plain
values; nothing that identifies a non-social site, and never a password, cookie or body.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")
LEVELS = ("debug", "info", "warning", "error")


def configure(log_format: LogFormat = "auto", level: str = "info") -> None:
    """Configure structlog for the process; `auto` picks console on a TTY, JSON otherwise."""
    if log_format == "auto":
        log_format = "console" if sys.stdout.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer()
        if log_format == "console"
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        # A logger binds once; otherwise every call (even one its level filters out) would
        # rebuild it, tens of microseconds on every governed request.
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "gatekeeper") -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
