"""gateway.yaml validation and the nft text rendered from it (no kernel involved)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from gatekeeper.cli import firewall
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.gateway import GatewayMode, load_gateway, render_ruleset

REPO = Path(__file__).resolve().parent.parent
VALID = """\
mode: transparent
lan:
  interfaces: [eth1]
  networks: [192.168.10.0/24, "fd00:10::/64"]
proxy:
  address: gw.clinic.example
  port: 3128
  metrics_port: 9464
exempt:
  sources: [192.168.10.2]
  destinations: [192.168.20.0/24]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "gateway.yaml").write_text(text)
    return tmp_path


def test_shipped_example_is_valid_and_explicit():
    cfg = load_gateway(REPO / "config")
    assert cfg.mode is GatewayMode.EXPLICIT
    assert cfg.lan_interfaces and cfg.lan_networks and cfg.exempt_sources


def test_valid_file_is_loaded(tmp_path: Path):
    cfg = load_gateway(write(tmp_path, VALID))
    assert cfg.mode is GatewayMode.TRANSPARENT
    assert cfg.lan_interfaces == ("eth1",)
    assert cfg.lan_networks == (
        ipaddress.ip_network("192.168.10.0/24"), ipaddress.ip_network("fd00:10::/64"),
    )
    assert cfg.proxy_address == "gw.clinic.example"
    assert (cfg.proxy_port, cfg.metrics_port) == (3128, 9464)
    assert (cfg.transparent_port, cfg.pac_port) == (8081, None), "the defaults"
    assert cfg.exempt_destinations == (ipaddress.ip_network("192.168.20.0/24"),)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("mode: sideways\nlan: {networks: [10.0.0.0/8]}\n", 1,
         "mode must be 'explicit' or 'transparent', not 'sideways'"),
        ("mode: explicit\n", 1, "gateway.yaml is missing required key 'lan'"),
        ("mode: explicit\nlan: {}\n", 2, "lan needs at least one interface or network"),
        ("mode: explicit\nlan:\n  interfaces: ['eth0\"; flush ruleset']\n", 3,
         "lan: 'eth0\"; flush ruleset' is not a network interface name"),
        ("mode: explicit\nlan:\n  interfaces: [averyverylongname0]\n", 3,
         "lan: 'averyverylongname0' is not a network interface name"),
        ("mode: explicit\nlan:\n  networks: [192.168.300.0/24]\n", 3,
         "lan: networks: '192.168.300.0/24' is not an IP address or CIDR"),
        ("mode: explicit\nlan: {networks: [10.0.0.0/8]}\nproxy: {port: 70000}\n", 3,
         "proxy: port must be a port number (1-65535)"),
        ("mode: explicit\nlan: {networks: [10.0.0.0/8]}\nproxy: {port: 9464}\n", 3,
         "proxy: port and metrics_port must differ"),
        ("mode: explicit\nlan: {networks: [10.0.0.0/8]}\nproxy: {transparent_port: 8080}\n", 3,
         "proxy: port and transparent_port must differ"),
        ("mode: explicit\nlan: {networks: [10.0.0.0/8]}\nproxy: {pac_port: 9464}\n", 3,
         "proxy: metrics_port and pac_port must differ"),
        ("mode: explicit\nlan: {networks: [10.0.0.0/8]}\nproxy: {address: 'not a host'}\n", 3,
         "proxy: address 'not a host' is not an IP address or host name"),
        ("mode: explicit\nlan: {networks: [10.0.0.0/8]}\nexempt: {source: [10.0.0.1]}\n", 3,
         "unknown key 'source' in exempt (known keys: destinations, sources)"),
        ("mode: explicit\nlan: {networks: [10.0.0.0/8]}\nexempt: {sources: 10.0.0.1}\n", 3,
         "exempt: sources must be a list"),
    ],
)
def test_every_problem_is_reported_with_its_line(
    tmp_path: Path, text: str, line: int, message: str
):
    with pytest.raises(ConfigError) as caught:
        load_gateway(write(tmp_path, text))
    problems = [str(p) for p in caught.value.problems]
    assert f"{tmp_path / 'gateway.yaml'}:{line}: {message}" in problems


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"gateway\.yaml: cannot read"):
        load_gateway(tmp_path)


def test_ruleset_replaces_one_table_in_one_file(tmp_path: Path):
    text = render_ruleset(load_gateway(write(tmp_path, VALID)))
    statements = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert statements[:3] == [
        "table inet gatekeeper {}", "delete table inet gatekeeper", "table inet gatekeeper {",
    ]
    assert text.count("table inet gatekeeper {\n") == 1 and text.rstrip().endswith("}")


def test_every_rule_carries_a_comment(tmp_path: Path):
    text = render_ruleset(load_gateway(write(tmp_path, VALID)))
    rules = [
        line.strip() for line in text.splitlines()
        if line.startswith("\t\t") and not line.strip().startswith(
            ("type ", "flags", "auto-merge", "comment", "elements")
        )
    ]
    assert rules and all(' comment "' in rule for rule in rules), rules


def test_transparent_mode_redirects_to_the_configured_port(tmp_path: Path):
    text = render_ruleset(load_gateway(write(tmp_path, VALID)))
    assert "type nat hook prerouting priority dstnat" in text
    assert "tcp dport { 80, 443 } redirect to :3128" in text
    assert "fib daddr type local return" in text
    assert "ip6 saddr @lan_v6 jump lan_redirect" in text
    assert "ip saddr @exempt_src_v4 return" in text and "ip daddr @exempt_dst_v4 return" in text
    # The transparent listener takes redirected connections only (a direct one would make
    # mitmproxy connect to itself); the LAN reaches the metrics/PAC port directly.
    assert "tcp dport { 9464 } accept" in text
    assert "tcp dport 3128 ct status dnat accept" in text
    assert "tcp dport { 9464, 3128 } reject with tcp reset" in text


def test_explicit_mode_redirects_direct_web_to_the_transparent_listener(tmp_path: Path):
    explicit = VALID.replace("transparent", "explicit").replace(
        "metrics_port: 9464", "metrics_port: 9464\n  transparent_port: 3129\n  pac_port: 8082")
    cfg = load_gateway(write(tmp_path, explicit))
    text = render_ruleset(cfg)
    assert "tcp dport { 80, 443 } redirect to :3129" in text
    assert "tcp dport { 3128, 9464, 8082 } accept" in text
    assert "tcp dport 3129 ct status dnat accept" in text
    assert "tcp dport { 80, 443 } reject with tcp reset" in text, "what escaped the redirect"
    for rule in ("udp dport 443 reject", "tcp dport 853 reject", "udp dport 853 reject"):
        assert rule in text
    assert cfg.serve_modes() == ["regular", "transparent@3129"]
    assert cfg.pac_proxy() == "gw.clinic.example:3128"


def test_transparent_mode_serves_one_transparent_listener_and_no_pac(tmp_path: Path):
    cfg = load_gateway(write(tmp_path, VALID))
    assert cfg.serve_modes() == ["transparent"] and cfg.pac_proxy() is None


def test_render_command_prints_the_ruleset(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    config_dir = write(tmp_path, VALID)
    assert firewall.main(["render", "--config-dir", str(config_dir)]) == 0
    assert capsys.readouterr().out == render_ruleset(load_gateway(config_dir))


def test_commands_exit_1_with_path_line_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config_dir = write(tmp_path, "mode: explicit\nlan: {}\n")
    assert firewall.main(["apply", "--config-dir", str(config_dir)]) == 1
    assert f"{config_dir / 'gateway.yaml'}:2: lan needs" in capsys.readouterr().err
