"""`gatekeeper serve`: run the proxy. Options left unset come from gateway.yaml, so on the
gateway the listeners always match the firewall."""

from __future__ import annotations

import argparse

from gatekeeper.cli.common import config_dir_arg, print_problems, state_dir_arg
from gatekeeper.config.yamlsrc import ConfigError
from gatekeeper.gateway import (
    DEFAULT_METRICS_PORT,
    DEFAULT_PROXY_PORT,
    MAX_WORKERS,
    GatewayConfig,
    gateway_file,
    load_gateway,
)
from gatekeeper.logs import LEVELS, LOG_FORMATS
from gatekeeper.pacfile import proxy_address


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the proxy",
        description="Run the enforcing proxy. Social-media hosts from the catalog are "
        "intercepted and checked against approvals.yaml; every other site is relayed "
        "undecrypted. Configuration changes are picked up live; SIGHUP forces a reload.",
    )
    config_dir_arg(p)
    state_dir_arg(p)
    p.add_argument("--listen-host", default="127.0.0.1", metavar="H",
                   help="proxy address (default: 127.0.0.1)")
    p.add_argument("--listen-port", type=int, metavar="P",
                   help="proxy port (default: proxy.port in gateway.yaml, else 8080)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="H",
                   help="metrics, health and PAC listener address (default: 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, metavar="P",
                   help="metrics, health and PAC listener port (default: proxy.metrics_port "
                   "in gateway.yaml, else 9464)")
    p.add_argument("--mode", action="append", metavar="MODE",
                   help="mitmproxy mode spec, repeatable: regular (explicit proxy: PAC, proxy "
                   "auth), transparent (redirected by nftables, employees known by source "
                   "address), or with a port: transparent@8081 (default: from gateway.yaml, "
                   "else regular)")
    _pac_arguments(p)
    p.add_argument("--workers", type=_worker_count, metavar="N",
                   help="proxy processes sharing the listening address, one per core to use "
                   "(default: workers in gateway.yaml, else 1)")
    p.add_argument("--metrics-employee-label", action="store_true",
                   help="add an employee label to the decision counters (off by default)")
    p.add_argument("--log-format", choices=LOG_FORMATS, default="auto",
                   help="log format (default: console on a terminal, JSON otherwise)")
    p.add_argument("--log-level", choices=LEVELS,
                   default="info", help="lowest level logged (default: info)")
    p.add_argument("--set", dest="mitmproxy_options", action="append", default=[],
                   metavar="OPTION=VALUE",
                   help="set any mitmproxy option, e.g. proxyauth=@/etc/gatekeeper/users.htpasswd "
                   "(repeatable)")
    p.set_defaults(handler=run_serve)


def _pac_arguments(parser: argparse.ArgumentParser) -> None:
    """`gatekeeper serve` options for the PAC file."""
    parser.add_argument(
        "--pac-proxy", type=proxy_address, metavar="HOST:PORT",
        help="proxy address the PAC file names (default: proxy.address:port from gateway.yaml, "
        "else the regular listener)")
    parser.add_argument(
        "--pac-host", default="", metavar="H",
        help="address of a separate listener serving only the PAC file (default: --listen-host)")
    parser.add_argument(
        "--pac-port", type=int, metavar="P",
        help="port of that listener (default: proxy.pac_port in gateway.yaml, else none: the "
        "PAC file is served on the metrics listener only)")


def run_serve(args: argparse.Namespace) -> int:
    from gatekeeper import logs
    from gatekeeper.serve import ServeSettings, serve

    logs.configure(args.log_format, args.log_level)
    cfg = None
    if gateway_file(args.config_dir).exists():
        try:
            cfg = load_gateway(args.config_dir)
        except ConfigError as e:
            print_problems(e)
            return 2
    proxy_port, metrics_port, pac_port = _gateway_ports(cfg)
    settings = ServeSettings(
        config_dir=args.config_dir,
        state_dir=args.state_dir,
        listen_host=args.listen_host,
        listen_port=_flag_or(args.listen_port, proxy_port),
        metrics_host=args.metrics_host,
        metrics_port=_flag_or(args.metrics_port, metrics_port),
        modes=args.mode or (cfg.serve_modes() if cfg else ["regular"]),
        pac_proxy=args.pac_proxy or (cfg.pac_proxy() if cfg else None) or "",
        pac_host=args.pac_host,
        pac_port=_flag_or(args.pac_port, pac_port),
        metrics_employee_label=args.metrics_employee_label,
        mitmproxy_options=args.mitmproxy_options,
    )
    workers = args.workers or (cfg.workers if cfg else 1)
    if workers > 1:
        from gatekeeper.workers import supervise

        return supervise(settings, workers, args.log_format, args.log_level)
    return serve(settings)


def _gateway_ports(cfg: GatewayConfig | None) -> tuple[int, int, int]:
    """(proxy, metrics, PAC-only listener or -1 for none) from gateway.yaml, else the defaults.
    Flags win over both, so on the gateway the listeners match the firewall unless told."""
    if cfg is None:
        return DEFAULT_PROXY_PORT, DEFAULT_METRICS_PORT, -1
    return cfg.proxy_port, cfg.metrics_port, cfg.pac_port or -1


def _worker_count(text: str) -> int:
    count = int(text)
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_WORKERS}")
    return count


def _flag_or(flag: int | None, default: int) -> int:
    return default if flag is None else flag
