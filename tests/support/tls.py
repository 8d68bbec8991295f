"""A throw-away certificate authority for fake upstream sites.

The proxy runs with `ssl_insecure=true` in tests, so the CA only has to make real, well-formed
certificates whose fingerprints a test can compare (passthrough proof).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_VALIDITY = dt.timedelta(days=30)


class SiteCA:
    """One CA per test session; `issue` writes a leaf certificate and key as PEM files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatekeeper test CA")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = directory / "test-ca.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, hostnames: list[str]) -> tuple[Path, Path]:
        """A certificate for `hostnames` (DNS names or IP literals): (cert_path, key_path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hostnames]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        stem = self.directory / hashlib.sha256(",".join(hostnames).encode()).hexdigest()[:16]
        cert_path, key_path = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + self.cert.public_bytes(serialization.Encoding.PEM)
        )
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@functools.cache
def shared_ca() -> SiteCA:
    """The process-wide test CA (made on first use, in a temporary directory)."""
    return SiteCA(Path(tempfile.mkdtemp(prefix="gatekeeper-test-ca-")))


def issue(hostnames: list[str]) -> tuple[Path, Path]:
    """Issue a leaf certificate from the process-wide test CA: (cert_path, key_path)."""
    return shared_ca().issue(hostnames)


def cert_sha256(der: bytes) -> str:
    """Hex SHA-256 of a DER certificate, as compared by passthrough tests."""
    return hashlib.sha256(der).hexdigest()


def pem_sha256(cert_path: Path) -> str:
    """`cert_sha256` of the first (leaf) certificate in a PEM file."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert_sha256(cert.public_bytes(serialization.Encoding.DER))
