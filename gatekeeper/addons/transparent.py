"""Identity by source address on transparent listeners, even with proxy logins on.

In explicit mode the gateway redirects direct LAN web traffic to a transparent listener, while
browsers configured for the proxy sign in to it (`proxyauth`). mitmproxy applies `proxyauth` to
every listener and answers a transparent request without credentials with a 401 login prompt
in the name of the site (a browser would show "www.facebook.com asks for a password"). There,
as in transparent mode, the employee is known by the device's address instead, so this addon
withdraws that prompt and lets the decision (by address: unknown means blocked) stand.
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.addons.proxyauth import REALM
from mitmproxy.proxy.mode_specs import TransparentMode

CHALLENGE = f'Basic realm="{REALM}"'


class TransparentIdentity:
    """Runs after mitmproxy's `proxyauth` and before gatekeeper's `Enforcer`."""

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if (
            response is not None
            and isinstance(flow.client_conn.proxy_mode, TransparentMode)
            and response.status_code == 401
            and response.headers.get("WWW-Authenticate") == CHALLENGE
            and "proxyauth" not in flow.metadata
        ):
            flow.response = None
