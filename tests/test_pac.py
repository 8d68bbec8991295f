"""The PAC file: what it routes where (run in node's JS engine and, in test_pac_browser.py,
in Chromium's), where it is served, that it follows reloads, and `gatekeeper pac`."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import configs
from support.proxy import free_port, port_open

from gatekeeper import cli
from gatekeeper import pacfile as pac
from gatekeeper.config.loader import load_policy

NODE = shutil.which("node")
# Mozilla's own definition of the PAC helper (netwerk/base/ascii_pac_utils.js).
DNS_DOMAIN_IS = """
function dnsDomainIs(host, domain) {
  return (host.length >= domain.length &&
          host.substring(host.length - domain.length) == domain);
}
"""
ROUTES = {
    "www.facebook.com": True,
    "facebook.com": True,
    "WWW.FaceBook.COM": True,
    "www.facebook.com.": True,
    "static.xx.fbcdn.net": True,
    "x.com": True,
    "mitm.it": True,  # the proxy's own certificate page
    "evilfacebook.com": False,
    "facebook.com.evil.net": False,
    "notx.com": False,
    "bank.example": False,
    "192.0.2.10": False,
}


def find_proxy(script: bytes, hosts: list[str]) -> dict[str, str]:
    """`FindProxyForURL` for each host, run by node."""
    program = (script.decode() + DNS_DOMAIN_IS + f"var hosts = {json.dumps(hosts)};\n"
               "var out = {};\n"
               "hosts.forEach(function (h) {\n"
               "  out[h] = FindProxyForURL('https://' + h + '/', h);\n"
               "});\n"
               "process.stdout.write(JSON.stringify(out));\n")
    result = subprocess.run([NODE or "node", "-e", program], capture_output=True, text=True,
                            timeout=30, check=True)
    return json.loads(result.stdout)


@pytest.mark.skipif(NODE is None, reason="needs node to run the PAC script")
def test_governed_domains_and_their_subdomains_go_to_the_proxy_nothing_else(tmp_path: Path):
    policy = load_policy(configs.write_config(tmp_path))
    answers = find_proxy(pac.render_pac(policy, "192.0.2.1:8080"), list(ROUTES))
    expected = {host: "PROXY 192.0.2.1:8080" if governed else "DIRECT"
                for host, governed in ROUTES.items()}
    assert answers == expected


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("192.0.2.1:8080", "192.0.2.1:8080"), ("GW.Clinic.Example:3128", "gw.clinic.example:3128"),
     ("gateway:8080", "gateway:8080"), ("[2001:db8::1]:8080", "[2001:db8::1]:8080")],
)
def test_proxy_address_accepts_host_and_port(text: str, parsed: str):
    assert pac.proxy_address(text) == parsed


@pytest.mark.parametrize(
    "text", ["192.0.2.1", "gw:0", "gw:99999", 'gw:80"; alert(1)//', "gw bad:80", "-gw:80",
             "[nope]:80", "300.1.1.1:80"],
)
def test_proxy_address_refuses_anything_else(text: str):
    with pytest.raises(argparse.ArgumentTypeError):
        pac.proxy_address(text)


def write_gateway(config_dir: Path, mode: str = "explicit", extra: str = "") -> Path:
    (config_dir / "gateway.yaml").write_text(
        f"mode: {mode}\nlan: {{networks: [192.0.2.0/24]}}\n"
        f"proxy:\n  address: 192.0.2.1\n  port: 3128\n{extra}"
    )
    return config_dir


def test_pac_command_names_the_proxy_from_gateway_yaml_or_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config_dir = configs.write_config(tmp_path)
    assert cli.main(["pac", "--config-dir", str(config_dir)]) == 0
    assert 'var GATEKEEPER_PROXY = "PROXY 127.0.0.1:8080";' in capsys.readouterr().out

    write_gateway(config_dir)
    assert cli.main(["pac", "--config-dir", str(config_dir)]) == 0
    out = capsys.readouterr().out
    assert 'var GATEKEEPER_PROXY = "PROXY 192.0.2.1:3128";' in out
    assert '"facebook.com",' in out and "fbcdn.net" in out

    assert cli.main(["pac", "--config-dir", str(config_dir), "--proxy", "gw:9"]) == 0
    assert '"PROXY gw:9"' in capsys.readouterr().out

    write_gateway(config_dir, mode="transparent")
    assert cli.main(["pac", "--config-dir", str(config_dir)]) == 1
    assert "transparent mode: browsers need no PAC" in capsys.readouterr().err


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


@pytest.mark.e2e
def test_served_on_the_metrics_listener_from_the_live_catalog(gk, config_dir: Path):
    proxy = gk(config_dir, hosts={})
    for path in pac.PATHS:
        status, content_type, body = fetch(f"{proxy.metrics_url}{path}")
        assert (status, content_type) == (200, pac.CONTENT_TYPE)
        assert f'"PROXY 127.0.0.1:{proxy.listen_port}"' in body, "the regular listener"
        assert '"linkedin.com"' in body and '"tiktok.com"' not in body

    services = configs.services_doc(tiktok={"name": "TikTok", "domains": ["tiktok.com"]})
    configs.write_config(config_dir, services=services)
    proxy.wait_for_log(lambda event: event.get("event") == "config_reloaded", timeout=10)
    assert '"tiktok.com"' in fetch(f"{proxy.metrics_url}/proxy.pac")[2], (
        "the PAC file must follow the catalog in force"
    )


@pytest.mark.e2e
def test_gateway_yaml_sets_the_listeners_and_the_pac_gets_its_own(gk, config_dir: Path):
    transparent_port, pac_port = free_port(), free_port()
    write_gateway(config_dir, extra=f"  transparent_port: {transparent_port}\n"
                                    f"  pac_port: {pac_port}\n")
    proxy = gk(config_dir, hosts={})
    assert port_open(transparent_port), "explicit mode also listens transparent"

    status, content_type, body = fetch(f"http://127.0.0.1:{pac_port}/wpad.dat")
    assert (status, content_type) == (200, pac.CONTENT_TYPE)
    assert '"PROXY 192.0.2.1:3128"' in body, "proxy.address and port from gateway.yaml"
    assert fetch(f"http://127.0.0.1:{pac_port}/metrics")[0] == 404, "metrics stay off it"
    assert fetch(f"http://127.0.0.1:{pac_port}/healthz")[0] == 404
    assert fetch(f"{proxy.metrics_url}/proxy.pac")[2] == body


@pytest.mark.e2e
def test_serve_refuses_an_invalid_gateway_yaml(gk, config_dir: Path):
    (config_dir / "gateway.yaml").write_text("mode: explicit\nlan: {}\n")
    proxy = gk(config_dir, hosts={}, wait=False)
    assert proxy.wait_exit() == 2
    assert "gateway.yaml:2: lan needs at least one interface or network" in proxy.stderr
