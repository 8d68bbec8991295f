"""A debug hook for tests, loaded into a real proxy with `--set scripts=<this file>`: on
SIGUSR1 it writes how many `Policy` objects are not freed yet to `<state dir>/live-policies`:
the ones in force or in use, and any kept only by garbage that waits for Python's next full
collection (which does not run first: waiting for it is the fault to catch). Never part of
the product."""

from __future__ import annotations

import gc
import signal
from pathlib import Path

from mitmproxy import ctx

from gatekeeper.core.model import Policy

REPORT = "live-policies"


def _report(signum: int, frame: object) -> None:
    count = sum(isinstance(o, Policy) for o in gc.get_objects())
    path = Path(ctx.options.confdir).parent / REPORT  # confdir is <state dir>/ca
    tmp = path.with_name(f".{REPORT}.tmp")
    tmp.write_text(str(count))
    tmp.replace(path)


signal.signal(signal.SIGUSR1, _report)
