"""`gatekeeper ca`: print the proxy CA certificate's path and fingerprint, creating the CA."""

from __future__ import annotations

import argparse

from gatekeeper.ca import cert_path, ensure_ca, fingerprint
from gatekeeper.cli.common import state_dir_arg


def add_ca(subparsers: argparse._SubParsersAction) -> None:
    """`gatekeeper ca [--state-dir DIR]`."""
    parser = subparsers.add_parser(
        "ca", help="print the proxy CA certificate's path and fingerprint (creating the CA)",
        description="Print the path and SHA-256 fingerprint of the proxy's CA certificate, the "
        "file employees' machines must trust. Creates the CA first if the state directory has "
        "none yet (as the first start of `gatekeeper serve` would).",
    )
    state_dir_arg(parser)
    parser.set_defaults(handler=run_ca)


def run_ca(args: argparse.Namespace) -> int:
    created = ensure_ca(args.state_dir)
    path = cert_path(args.state_dir)
    print(f"certificate: {path}{'  (created now)' if created else ''}")
    print(f"sha256: {fingerprint(path)}")
    return 0
