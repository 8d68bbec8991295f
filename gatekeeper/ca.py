"""The proxy's certificate authority (`gatekeeper ca`), for handing to employees' machines.

mitmproxy keeps its CA in its configuration directory, `<state dir>/ca/`. This command creates
it when missing (as mitmproxy would on the first start), so IT can distribute the certificate
before the proxy ever runs, and prints the certificate's path and SHA-256 fingerprint to compare
on a client before trusting it. The private key files are written with mode 0600.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

BASENAME = "mitmproxy"  # mitmproxy's file names: mitmproxy-ca.pem (key), mitmproxy-ca-cert.pem
KEY_SIZE = 2048  # mitmproxy's default `key_size`


def ca_dir(state_dir: Path) -> Path:
    return state_dir / "ca"


def cert_path(state_dir: Path) -> Path:
    return ca_dir(state_dir) / f"{BASENAME}-ca-cert.pem"


def ensure_ca(state_dir: Path) -> bool:
    """Create the CA in `<state dir>/ca/` unless it exists; True when it was created.

    Run as root for a state directory owned by the service user (before the first start),
    the new files are given to that user, so the proxy can read its key.
    """
    from mitmproxy.certs import CertStore

    directory = ca_dir(state_dir)
    if (directory / f"{BASENAME}-ca.pem").exists():
        return False
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.mkdir(exist_ok=True, mode=0o700)
    CertStore.from_store(directory, BASENAME, KEY_SIZE)  # key files 0600 (umask 077)
    owner = state_dir.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        for path in (directory, *directory.iterdir()):
            os.chown(path, owner.st_uid, owner.st_gid)
    return True


def fingerprint(path: Path) -> str:
    """SHA-256 of the certificate (DER), as `openssl x509 -noout -fingerprint -sha256` shows."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
