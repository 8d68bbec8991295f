"""HTML pages the proxy answers with itself (block page and friends), rendered with Jinja2.

Autoescaping is on for every template: service names, reasons and justifications come from
files and requests and must never become markup.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


@functools.cache
def environment() -> jinja2.Environment:
    """Built on the first page, not at start-up: Jinja2 is a large import and the proxy
    listens sooner without it."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("gatekeeper", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> bytes:
    """Render `template` (a file in gatekeeper/templates) to UTF-8 bytes."""
    return environment().get_template(template).render(**context).encode("utf-8")
