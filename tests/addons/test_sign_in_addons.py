"""Proxy sign-in in process: the sign-in addon with the directory's verifier (sign_in), the guard
that slows wrong passwords (proxy_login_guard) and the transparent listener's identity by
address (transparent)."""

from __future__ import annotations

import base64
from types import SimpleNamespace

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from support.flows import cycle, make_flow, metric, run_hooks

from gatekeeper.addons.directory import DirectoryEmployees
from gatekeeper.addons.proxy_login_guard import ProxyLoginGuard
from gatekeeper.addons.sign_in import ProxySignIn
from gatekeeper.addons.transparent import CHALLENGE, TransparentIdentity
from gatekeeper.sign_in import SignInResult


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class FakeSignIns:
    """What ProxySignIn asks of a verifier: a sign-in with an answer."""

    def __init__(self, answer: tuple[SignInResult, str | None]) -> None:
        self.answer = answer
        self.asked: list[str] = []
        self.verifier = SimpleNamespace(unavailable_text=b"directory not answering\n",
                                        unavailable_reason="directory_unavailable")

    async def sign_in(self, user: str, password: str, turn) -> tuple[SignInResult, str | None]:
        self.asked.append(user)
        return self.answer


class FakeDirectory:
    """The office directory as ProxySignIn sees it: its sign-ins."""

    def __init__(self, answer: tuple[SignInResult, str | None]) -> None:
        self.sign_ins = FakeSignIns(answer)


def sign_in_addon(runtime) -> ProxySignIn:
    return ProxySignIn(runtime, ProxyLoginGuard(runtime))


def test_without_a_directory_section_the_directory_addons_stay_out_of_the_way(
        runtime, tmp_path) -> None:
    employees, sign_in = DirectoryEmployees(runtime), sign_in_addon(runtime)

    async def configure(tctx) -> None:
        tctx.configure(employees, gatekeeper_config_dir=str(tmp_path / "config"))

    from gatekeeper.addons.lifecycle import Lifecycle

    run_hooks(Lifecycle(runtime), employees, call=configure)
    assert runtime.directory is None and runtime.file_policy is runtime.holder
    flow = cycle(sign_in, flow=make_flow("www.linkedin.com"))
    assert flow.response.status_code == 200 and "proxyauth" not in flow.metadata


def test_a_directory_sign_in_names_the_employee_and_drops_the_password(runtime) -> None:
    runtime.directory = FakeDirectory((SignInResult.SUCCESS, "alice"))
    flow = make_flow("www.linkedin.com", scheme="http",
                     headers={"proxy-authorization": basic("CLINIC\\alice", "s3cret")})
    cycle(sign_in_addon(runtime), flow=flow)
    assert flow.metadata["proxyauth"] == ("alice", "")
    assert "proxy-authorization" not in flow.request.headers


def test_a_wrong_password_gets_407_an_unreachable_directory_503(runtime) -> None:
    runtime.directory = FakeDirectory((SignInResult.REJECTED, None))
    wrong = cycle(sign_in_addon(runtime), flow=make_flow(
        "www.linkedin.com", scheme="http", headers={"proxy-authorization": basic("a", "b")}))
    assert wrong.response.status_code == 407
    runtime.directory = FakeDirectory((SignInResult.UNAVAILABLE, None))
    down = cycle(sign_in_addon(runtime), flow=make_flow(
        "www.linkedin.com", scheme="http", headers={"proxy-authorization": basic("a", "b")}))
    assert down.response.status_code == 503
    assert down.response.headers["X-Gatekeeper-Reason"] == "directory_unavailable"


def test_a_wrong_proxy_password_is_counted_and_the_realm_named(runtime) -> None:
    guard = ProxyLoginGuard(runtime)
    flow = make_flow("www.linkedin.com", headers={"proxy-authorization": basic("dave", "x")})
    flow.response = http.Response.make(407, b"", {"Proxy-Authenticate": 'Basic realm="x"'})

    async def judge(tctx) -> None:
        tctx.configure(guard, gatekeeper_proxy_realm="Clinic office")
        result = guard.requestheaders(flow)
        if result is not None:
            await result

    run_hooks(guard, call=judge)
    assert flow.response.headers["Proxy-Authenticate"] == 'Basic realm="Clinic office"'
    assert metric(runtime, "gatekeeper_proxy_auth_failures_total") == 1
    first = make_flow("www.linkedin.com")  # a browser's first try, without credentials
    first.response = http.Response.make(407)
    run_hooks(guard, call=lambda tctx: _none(guard.requestheaders(first)))
    assert metric(runtime, "gatekeeper_proxy_auth_failures_total") == 1


async def _none(result) -> None:
    assert result is None  # decided without waiting


def test_a_transparent_listener_withdraws_the_login_prompt(runtime) -> None:
    flow = make_flow("www.facebook.com")
    flow.client_conn.proxy_mode = ProxyMode.parse("transparent")
    flow.response = http.Response.make(401, b"", {"WWW-Authenticate": CHALLENGE})
    TransparentIdentity().requestheaders(flow)
    assert flow.response is None  # the decision by address stands
    explicit = make_flow("www.facebook.com")
    explicit.response = http.Response.make(401, b"", {"WWW-Authenticate": CHALLENGE})
    TransparentIdentity().requestheaders(explicit)
    assert explicit.response.status_code == 401
