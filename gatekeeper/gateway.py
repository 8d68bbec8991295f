"""The gateway settings (`gateway.yaml`) and the nftables table rendered from them.

The proxy only governs traffic that reaches it, so on the office gateway a firewall must stop
browsers going around it: QUIC and DNS over TLS are refused, and direct LAN web traffic is
redirected to a transparent listener of the proxy. In explicit mode that listener is a second
one (`transparent_port`) beside the regular proxy the browsers are configured for, so a PAC
file's DIRECT still works for other sites while a direct connection to a social site is policed
by source address. `render_ruleset()` returns nft text, `gatekeeper.firewall` hands it to `nft`;
`gatekeeper serve` (gatekeeper.cli.serve) takes the listeners it is not given from the same file.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gatekeeper.config.checker import FileChecker
from gatekeeper.config.yamlsrc import ConfigError, Node, read_yaml
from gatekeeper.core.hosts import validate_domain
from gatekeeper.core.model import IPNetwork
from gatekeeper.directory.settings import DirectorySettings, parse_directory

GATEWAY_FILE = "gateway.yaml"
TABLE = "inet gatekeeper"
# Linux interface names: at most 15 bytes; no quotes or backslashes (they end up in nft text).
INTERFACE_NAME = re.compile(r"\A(?!\.{1,2}\Z)[A-Za-z0-9_.-]{1,15}\Z")
WEB_PORTS = (80, 443)
DEFAULT_PROXY_PORT, DEFAULT_METRICS_PORT = 8080, 9464  # also `gatekeeper serve`'s without a file
# proxy: keys -> defaults (the pac_port listener is off unless configured)
DEFAULT_PORTS: dict[str, int | None] = {
    "port": DEFAULT_PROXY_PORT, "transparent_port": 8081, "metrics_port": DEFAULT_METRICS_PORT,
    "pac_port": None,
}
MAX_WORKERS = 64  # `workers:`: proxy processes (one per core); a typo like 400 is refused


class GatewayMode(enum.StrEnum):
    """How browsers reach the proxy: configured to use it, or redirected to it by nftables."""

    EXPLICIT = "explicit"
    TRANSPARENT = "transparent"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The validated `gateway.yaml`."""

    mode: GatewayMode
    lan_interfaces: tuple[str, ...]
    lan_networks: tuple[IPNetwork, ...]
    proxy_address: str | None  # how LAN clients reach the proxy (IP or DNS name), for the PAC
    proxy_port: int  # explicit: the regular proxy; transparent: the transparent listener
    transparent_port: int  # explicit mode: the transparent listener for direct web traffic
    metrics_port: int  # the metrics listener, which also serves /proxy.pac and /wpad.dat
    pac_port: int | None  # a separate LAN-facing listener serving only the PAC file
    exempt_sources: tuple[IPNetwork, ...]
    exempt_destinations: tuple[IPNetwork, ...]
    directory: DirectorySettings | None = None  # the office directory (LDAP, AD), if used
    workers: int = 1  # proxy processes sharing the listeners (`gatekeeper serve --workers`)

    @property
    def redirect_port(self) -> int:
        """Where nftables sends LAN web traffic: always a transparent listener."""
        return self.transparent_port if self.mode is GatewayMode.EXPLICIT else self.proxy_port

    @property
    def client_ports(self) -> tuple[int, ...]:
        """Ports LAN clients may connect to directly (the redirect port only via the redirect)."""
        regular = (self.proxy_port,) if self.mode is GatewayMode.EXPLICIT else ()
        return (*regular, self.metrics_port, *((self.pac_port,) if self.pac_port else ()))

    def serve_modes(self) -> list[str]:
        """mitmproxy mode specs for `gatekeeper serve`; a spec without `@port` listens on
        `--listen-port` (`proxy: port`)."""
        if self.mode is GatewayMode.EXPLICIT:
            return ["regular", f"transparent@{self.transparent_port}"]
        return ["transparent"]

    def pac_proxy(self) -> str | None:
        """`host:port` for the PAC file; None in transparent mode (nothing to configure)."""
        if self.mode is GatewayMode.TRANSPARENT or self.proxy_address is None:
            return None
        host = self.proxy_address
        return f"[{host}]:{self.proxy_port}" if ":" in host else f"{host}:{self.proxy_port}"


def gateway_file(config_dir: Path) -> Path:
    return config_dir / GATEWAY_FILE


def load_gateway(config_dir: Path) -> GatewayConfig:
    """Read and validate `gateway.yaml`; raises `ConfigError` listing every problem."""
    path = gateway_file(config_dir)
    return parse_gateway(path, read_yaml(path))


def parse_gateway(path: Path, root: Node) -> GatewayConfig:
    """Validate a parsed `gateway.yaml`; raises `ConfigError` listing every problem."""
    f = FileChecker(str(path), [])
    top = f.mapping(root, GATEWAY_FILE, required=("mode", "lan"),
                    optional=("proxy", "exempt", "directory", "workers"))
    if top is None:
        raise ConfigError(f.problems)
    mode = GatewayMode.EXPLICIT
    if "mode" in top:
        try:
            mode = GatewayMode(top["mode"].value)
        except ValueError:
            value = top["mode"].value
            f.error(top["mode"], f"mode must be 'explicit' or 'transparent', not {value!r}")

    interfaces: list[str] = []
    lan_networks: list[IPNetwork] = []
    if "lan" in top:
        lan = f.mapping(top["lan"], "lan", required=(), optional=("interfaces", "networks"))
        if lan is not None:
            if "interfaces" in lan:
                for item in f.strings(lan["interfaces"], "lan: interfaces", allow_empty=True):
                    if INTERFACE_NAME.match(item.value):
                        interfaces.append(item.value)
                    else:
                        f.error(item, f"lan: {item.value!r} is not a network interface name")
            lan_networks = _networks(f, lan.get("networks"), "lan: networks")
            if not interfaces and not lan_networks:
                f.error(top["lan"], "lan needs at least one interface or network")

    proxy_address = None
    ports: dict[str, int | None] = dict(DEFAULT_PORTS)
    if "proxy" in top:
        proxy = f.mapping(top["proxy"], "proxy", (), ("address", *DEFAULT_PORTS))
        if proxy is not None:
            if "address" in proxy:
                proxy_address = _host(f, proxy["address"], "proxy: address")
            for key in DEFAULT_PORTS:
                if key in proxy:
                    ports[key] = _port(f, proxy[key], f"proxy: {key}")
            _distinct_ports(f, top["proxy"], ports, mode)

    exempt_sources: list[IPNetwork] = []
    exempt_destinations: list[IPNetwork] = []
    if "exempt" in top:
        exempt = f.mapping(top["exempt"], "exempt", (), ("sources", "destinations"))
        if exempt is not None:
            exempt_sources = _networks(f, exempt.get("sources"), "exempt: sources")
            exempt_destinations = _networks(f, exempt.get("destinations"), "exempt: destinations")

    directory = parse_directory(f, top["directory"]) if "directory" in top else None
    workers = _workers(f, top["workers"]) if "workers" in top else 1

    if f.problems:
        raise ConfigError(f.problems)
    return GatewayConfig(
        mode=mode,
        lan_interfaces=tuple(dict.fromkeys(interfaces)),
        lan_networks=tuple(lan_networks),
        proxy_address=proxy_address,
        proxy_port=ports["port"] or 0,
        transparent_port=ports["transparent_port"] or 0,
        metrics_port=ports["metrics_port"] or 0,
        pac_port=ports["pac_port"],
        exempt_sources=tuple(exempt_sources),
        exempt_destinations=tuple(exempt_destinations),
        directory=directory,
        workers=workers,
    )


def _distinct_ports(
    f: FileChecker, node: Node, ports: dict[str, int | None], mode: GatewayMode
) -> None:
    """Each listener needs its own port (transparent_port is unused in transparent mode)."""
    used = [key for key in DEFAULT_PORTS if ports[key]
            and not (key == "transparent_port" and mode is GatewayMode.TRANSPARENT)]
    for i, first in enumerate(used):
        for second in used[i + 1:]:
            if ports[first] == ports[second]:
                f.error(node, f"proxy: {first} and {second} must differ")


def _networks(f: FileChecker, node: Node | None, what: str) -> list[IPNetwork]:
    if node is None:
        return []
    networks = []
    for item in f.strings(node, what, allow_empty=True):
        try:
            networks.append(ipaddress.ip_network(item.value.strip(), strict=False))
        except ValueError:
            f.error(item, f"{what}: {item.value!r} is not an IP address or CIDR")
    return networks


def _workers(f: FileChecker, node: Node) -> int:
    if node.kind != "int" or not 1 <= node.value <= MAX_WORKERS:
        f.error(node, f"workers must be a number of processes (1-{MAX_WORKERS})")
        return 1
    return int(node.value)


def _port(f: FileChecker, node: Node, what: str) -> int:
    if node.kind != "int" or not 1 <= node.value <= 65535:
        f.error(node, f"{what} must be a port number (1-65535)")
        return 0
    return int(node.value)


def _host(f: FileChecker, node: Node, what: str) -> str | None:
    text = f.string(node, what)
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        return validate_domain(text)
    except ValueError:
        f.error(node, f"{what} {text!r} is not an IP address or host name")
        return None


# --- nftables -------------------------------------------------------------------------------


def render_ruleset(cfg: GatewayConfig) -> str:
    """The nft script for the whole `inet gatekeeper` table.

    It creates the table (a no-op when it exists), deletes it and defines it anew: `nft -f`
    runs a file as one transaction, so applying replaces the old table atomically, or changes
    nothing when any line fails, and applying it twice gives the same table.
    """
    sets = _Sets(cfg)
    web = _port_set(WEB_PORTS)
    exempt = sets.exempt_rules()
    redirect = cfg.redirect_port
    to_proxy = ("LAN web traffic goes to the transparent proxy"
                if cfg.mode is GatewayMode.TRANSPARENT else
                "LAN web traffic that skips the proxy goes to its transparent listener")
    chains = _base_chain("prerouting", "nat hook prerouting priority dstnat", sets, "lan_redirect")
    chains += _chain("lan_redirect", [
        *exempt,
        'fib daddr type local return comment "traffic to the gateway itself is not redirected"',
        f'tcp dport {web} redirect to :{redirect} comment "{to_proxy}"',
    ])
    # Traffic to the gateway itself ends there and cannot go around the proxy, so QUIC and DoT
    # are only refused when forwarded; the input chain keeps the listeners off the WAN side,
    # and the transparent listener off direct connections (it would connect to itself).
    chains += _base_chain(
        "input", "filter hook input priority filter", sets, "lan_input",
        first=['iif "lo" accept comment "local clients, such as health checks"'],
        last=[f"tcp dport {_port_set((*cfg.client_ports, redirect))} reject with tcp reset "
              'comment "gatekeeper listeners answer the LAN only"'],
    )
    chains += _chain("lan_input", [
        f"tcp dport {_port_set(cfg.client_ports)} accept "
        'comment "LAN clients reach the proxy, the PAC file and the metrics"',
        f"tcp dport {redirect} ct status dnat accept "
        'comment "the transparent listener takes redirected connections only"',
    ])
    chains += _base_chain("forward", "filter hook forward priority filter", sets, "lan_forward")
    chains += _chain("lan_forward", [
        *exempt,
        "udp dport 443 reject with icmpx type port-unreachable "
        'comment "QUIC (HTTP/3) around the proxy: browsers fall back to TCP"',
        'tcp dport 853 reject with tcp reset comment "DNS over TLS"',
        'udp dport 853 reject with icmpx type port-unreachable comment "DNS over QUIC"',
        f'tcp dport {web} reject with tcp reset comment "LAN web traffic that was not redirected"',
    ])
    header = [
        f"# gatekeeper firewall ({cfg.mode} mode), generated from {GATEWAY_FILE}: do not edit.",
        "# Apply with `gatekeeper firewall apply`: one nft transaction replaces the whole table.",
        f"table {TABLE} {{}}",
        f"delete table {TABLE}",
        f"table {TABLE} {{",
        f'\tcomment "gatekeeper: {cfg.mode} proxy, web traffic redirected to port {redirect}"',
    ]
    return "\n".join([*header, *sets.definitions(), *chains, "}"]) + "\n"


def _port_set(ports: Iterable[int]) -> str:
    return "{ " + ", ".join(str(p) for p in ports) + " }"


class _Sets:
    """The named sets the configuration needs (empty ones are left out) and rules using them."""

    def __init__(self, cfg: GatewayConfig) -> None:
        self.interfaces = cfg.lan_interfaces
        self.lan = _by_version(cfg.lan_networks)
        self.sources = _by_version(cfg.exempt_sources)
        self.destinations = _by_version(cfg.exempt_destinations)

    def definitions(self) -> list[str]:
        lines: list[str] = []
        if self.interfaces:
            names = ", ".join(f'"{name}"' for name in self.interfaces)
            lines += _set("lan_interfaces", "ifname", "LAN interfaces", names, interval=False)
        for name, networks, what in (
            ("lan", self.lan, "LAN networks"),
            ("exempt_src", self.sources, "exempt sources"),
            ("exempt_dst", self.destinations, "exempt destinations"),
        ):
            for version, items in networks.items():
                kind = "ipv4_addr" if version == 4 else "ipv6_addr"
                elements = ", ".join(str(n) for n in items)
                lines += _set(f"{name}_v{version}", kind, what, elements, interval=True)
        return lines

    def lan_jumps(self, target: str) -> list[str]:
        """Rules sending LAN traffic (from a LAN interface or a LAN network) to `target`."""
        rules = []
        if self.interfaces:
            rules.append(f'iifname @lan_interfaces jump {target} comment "from a LAN interface"')
        for version in self.lan:
            rules.append(f"{_family(version)} saddr @lan_v{version} jump {target} "
                         'comment "from a LAN network"')
        return rules

    def exempt_rules(self) -> list[str]:
        rules = []
        for version in self.sources:
            rules.append(f'{_family(version)} saddr @exempt_src_v{version} return '
                         'comment "exempt source: not governed"')
        for version in self.destinations:
            rules.append(f'{_family(version)} daddr @exempt_dst_v{version} return '
                         'comment "exempt destination: not governed"')
        return rules


def _by_version(networks: Iterable[IPNetwork]) -> dict[int, list[IPNetwork]]:
    grouped: dict[int, list[IPNetwork]] = {}
    for network in networks:
        grouped.setdefault(network.version, []).append(network)
    return dict(sorted(grouped.items()))


def _family(version: int) -> str:
    return "ip" if version == 4 else "ip6"


def _set(name: str, kind: str, comment: str, elements: str, *, interval: bool) -> list[str]:
    flags = ["\t\tflags interval", "\t\tauto-merge"] if interval else []
    return [
        f"\tset {name} {{",
        f"\t\ttype {kind}",
        *flags,
        f'\t\tcomment "{comment}"',
        f"\t\telements = {{ {elements} }}",
        "\t}",
    ]


def _chain(name: str, rules: list[str], hook: str | None = None) -> list[str]:
    head = [f"\t\ttype {hook}; policy accept;"] if hook else []
    return [f"\tchain {name} {{", *head, *(f"\t\t{rule}" for rule in rules), "\t}"]


def _base_chain(
    name: str,
    hook: str,
    sets: _Sets,
    target: str,
    first: list[str] | None = None,
    last: list[str] | None = None,
) -> list[str]:
    """A hooked chain that sends LAN traffic to the regular chain `target`."""
    return _chain(name, [*(first or []), *sets.lan_jumps(target), *(last or [])], hook)
