"""Request paths as a lenient server would read them, so a spelling cannot dodge a rule.

`//a`, `/./a`, `/b/../a`, `/a;jsessionid=1`, `/%61`, `\\a` are all `/a` to some server, and
`/A` is `/a` to a case-insensitive one. Pure code.
"""

from __future__ import annotations

import re
import urllib.parse

# `;params` of a segment (servlet containers ignore them).
_SEGMENT_PARAMS = re.compile(r";[^/]*")
_DECODE_ROUNDS = 3  # `%252e` is `%2e` to one decoder and `.` to a server that decodes twice


def canonical_path(path: str) -> str:
    """`path` (without its query) percent-decoded, `;params` and `\\` read as a server
    might, empty and dot segments resolved; keeps a trailing slash."""
    for _ in range(_DECODE_ROUNDS):
        decoded = urllib.parse.unquote(path, errors="replace")
        if decoded == path:
            break
        path = decoded
    path = _SEGMENT_PARAMS.sub("", path.replace("\\", "/"))
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    trailing = "/" if path.endswith(("/", "/.", "/..")) and segments else ""
    return "/" + "/".join(segments) + trailing


def path_key(path: str) -> str:
    """The canonical path, lower case, without a trailing slash: the form in which the
    proxy's own endpoints are compared, so no spelling of one reaches the upstream."""
    return canonical_path(path).lower().rstrip("/") or "/"
