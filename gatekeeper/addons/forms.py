"""The proxy's own form posts on governed hosts: their paths, their CSRF tokens, how a form is
read (bounded) and where the browser may be sent back to.

Shared by the `Portal` (which claims and answers the endpoints), the endpoints' owners (`Portal`
itself, `Terms`) and the pages that post to them (gatekeeper.addons.responses).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from mitmproxy import http

from gatekeeper.addons.runtime import Runtime, log
from gatekeeper.bodies import BodyError, BodyTooLargeError, declared_length, read_urlencoded_form

# Every path below it on a governed host is ours; in `path_key` form (lower case, no slash).
PORTAL_PREFIX = "/.well-known/gatekeeper"
REQUEST_ACCESS_PATH = f"{PORTAL_PREFIX}/request-access"
ACKNOWLEDGE_TERMS_PATH = f"{PORTAL_PREFIX}/acknowledge-terms"
REQUEST_PURPOSE = "request-access"  # CSRF purposes: a token of one form is no good for another
TERMS_PURPOSE = "acknowledge-terms"
MAX_FORM_BYTES = 16 * 1024  # a justification is at most 500 characters
MAX_RETURN_TO = 2048

Handler = Callable[[http.HTTPFlow], Awaitable[None]]


class PortalError(Exception):
    """A refused portal post: the status, a fixed outcome code and a sentence for the page."""

    def __init__(self, status: int, outcome: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.message = message


def check_csrf(runtime: Runtime, token: str, purpose: str, employee: str, subject: str) -> None:
    if runtime.csrf is None or not runtime.csrf.valid(token, purpose, employee, subject,
                                                     time.time()):
        log.warning("portal_csrf_refused", employee=employee, purpose=purpose)
        raise PortalError(403, "csrf_invalid", "This form has expired or did not come from "
                          "this page. Go back, reload the page and try again.")


def check_post(request: http.Request) -> None:
    """Before the body is read: only a plain, small, announced form post is read at all."""
    if request.method != "POST":
        raise PortalError(405, "method_not_allowed", "This address only accepts a form post.")
    headers = request.headers
    length = declared_length(request.method, headers, request.http_version)
    if length is None or length > MAX_FORM_BYTES:
        raise PortalError(413, "body_too_large", "The form is too large.")
    content_types = headers.get_all("content-type")
    if (len(content_types) != 1 or not _plain_form(content_types[0])
            or "content-encoding" in headers):  # browsers never encode a form
        raise PortalError(415, "invalid_form", "The form could not be read.")


def posted_form(flow: http.HTTPFlow) -> dict[str, str]:
    """The fields of a portal form post (its headers passed `check_post`), read by the
    bounded parser; 413 or 415 when it is not a small plain form."""
    try:
        return read_urlencoded_form(flow.request.raw_content or b"", MAX_FORM_BYTES)
    except BodyTooLargeError as e:
        raise PortalError(413, "body_too_large", "The form is too large.") from e
    except BodyError as e:
        raise PortalError(415, "invalid_form", "The form could not be read.") from e


def return_path(flow: http.HTTPFlow) -> str:
    """Where to send the browser back to: the page it asked for (GET), else the site's root."""
    path = flow.request.path
    if flow.request.method == "GET" and safe_return_to(path):
        return path
    return "/"


def safe_return_to(value: str) -> str | None:
    """`value` if it is a path on this host (so a redirect to it cannot leave the site), else
    None: no scheme, no `//host`, no backslash (browsers read `/\\host` as `//host`), no
    control characters."""
    if (not value.startswith("/") or value.startswith("//") or "\\" in value
            or len(value) > MAX_RETURN_TO or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)):
        return None
    return value


def _plain_form(content_type: str) -> bool:
    """`application/x-www-form-urlencoded`, with at most `charset=utf-8`: what a browser
    sends for the proxy's pages."""
    media, *params = (part.strip().lower() for part in content_type.split(";"))
    return media == "application/x-www-form-urlencoded" and all(
        param.replace(" ", "") in ("charset=utf-8", 'charset="utf-8"') for param in params
    )
