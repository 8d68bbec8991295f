"""Headless Chromium configured with nothing but the served PAC file (`--proxy-pac-url`).

A governed site goes through the proxy (Chromium shows the block page), a non-governed one
straight to the site. The proxy's hosts file sends bank.example to an address where nothing
listens, while Chromium resolves it to the real fake site itself (`--host-resolver-rules`):
the page can only load if Chromium went DIRECT. Screenshots land in test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support.fakesite import next_loopback_address

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
TIMEOUT_MS = 15_000

if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def spki_sha256(cert_pem: Path) -> str:
    """Base64 SHA-256 of the (first) certificate's public key, for Chromium's
    --ignore-certificate-errors-spki-list: exactly these keys are trusted, nothing else."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_chromium_with_the_pac_file_proxies_social_sites_and_goes_direct_elsewhere(
    gk, fake_sites
):
    facebook, bank = fake_sites.facebook, fake_sites.bank
    hosts = fake_sites.hosts()
    hosts.update(dict.fromkeys(bank.hostnames, next_loopback_address()))  # a dead end
    proxy = gk(hosts=hosts)
    trusted = [spki_sha256(proxy.ca_cert), spki_sha256(bank.cert_path)]

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync",
                f"--proxy-pac-url={proxy.metrics_url}/proxy.pac",
                f"--host-resolver-rules=MAP bank.example {bank.address}",
                f"--ignore-certificate-errors-spki-list={','.join(trusted)}",
            ],
        )
        try:
            page = browser.new_context().new_page()  # a fresh profile
            page.set_default_timeout(TIMEOUT_MS)

            blocked = page.goto(facebook.url("/"))
            assert blocked is not None and blocked.status == 403
            assert blocked.headers["x-gatekeeper-reason"] == "unknown_employee"
            assert "Facebook" in page.content()
            shoot(page, "pac-1-governed-site-through-the-proxy")

            direct = page.goto(bank.url("/"))
            assert direct is not None and direct.status == 200
            assert page.inner_text("body") == "hello from bank.example"
            shoot(page, "pac-2-other-site-direct")
        finally:
            browser.close()

    assert facebook.connections == 0, "a blocked request never reaches the site"
    assert bank.requests_to("/"), "Chromium reached bank.example itself"
    services = {event["service"] for event in proxy.events("decision")}
    assert services == {"facebook"}, "the proxy saw the social site only (page and favicon)"


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
