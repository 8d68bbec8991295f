"""Issue 4 in a real browser: headless Chromium (Debian's) driven by Playwright, through a real
`gatekeeper serve`, with the approver's real CLI in between.

The employee opens a blocked page, sends a request from the block page's form; the approver
lists it with `gatekeeper requests --json` and grants it with `gatekeeper approve`; the
reloaded page shows the site. Then the approver turns on the Terms-of-Use requirement: the
page shows the interstitial, the employee accepts, and the page they asked for opens.
A screenshot of each page is kept under test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support import configs

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
GATEKEEPER = REPO / ".venv" / "bin" / "gatekeeper"
TERMS_PATH = "/legal/user-agreement"
PAGE = "/feed/?trk=nav"
TIMEOUT_MS = 15_000

if not CHROMIUM.exists():
    pytest.skip("needs Debian's chromium at /usr/bin/chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def spki_sha256(cert_pem: Path) -> str:
    """The base64 SHA-256 of the certificate's public key, as Chromium's
    --ignore-certificate-errors-spki-list takes it: mitmproxy signs every certificate it makes
    with its CA's key, so trusting that key trusts the proxy's certificates and nothing else."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def cli(proxy, *args: str) -> str:
    done = subprocess.run(
        [str(GATEKEEPER), *args, "--config-dir", str(proxy.config_dir),
         "--state-dir", str(proxy.state_dir)],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def reload_until(page, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Reload the page until `condition()` holds (a policy change is live within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        page.reload()
        if condition():
            return
        assert time.monotonic() < deadline, "the page did not change in time"
        time.sleep(0.2)


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_request_approve_and_accept_terms_in_chromium(gk, fake_sites, tmp_path):
    linkedin = fake_sites.linkedin
    services = configs.services_doc(linkedin={
        "name": "LinkedIn", "domains": ["linkedin.com", "licdn.com"],
        "terms_url": linkedin.url(TERMS_PATH),
    })
    approvals = configs.approvals_doc()
    approvals["require_terms_acknowledgement"] = False
    approvals["grants"] = [g for g in approvals["grants"] if g["employee"] != "bob"]
    config = configs.write_config(tmp_path / "browser-config", services=services,
                                  approvals=approvals)
    proxy = gk(config, args=["--set", "proxyauth=any"])
    linkedin.route("GET", "/feed/", lambda request: (
        200, [("Content-Type", "text/html; charset=utf-8")],
        "<!doctype html><title>LinkedIn feed</title><h1 id='site'>LinkedIn feed (fake)</h1>",
    ))

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            proxy={"server": proxy.proxy_url, "username": "bob", "password": "pw"},
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync",
                f"--ignore-certificate-errors-spki-list={spki_sha256(proxy.ca_cert)}",
            ],
        )
        try:
            context = browser.new_context()  # a fresh profile: no cookies, no cache
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            url = linkedin.url(PAGE)

            # 1. Blocked: the block page with the request form.
            response = page.goto(url)
            assert response.status == 403
            assert response.headers["x-gatekeeper-reason"] == "not_approved"
            assert page.locator("#approver").inner_text() == configs.APPROVER
            shoot(page, "1-block-page")

            # 2. The employee asks; the confirmation names the approver.
            page.fill("#justification", "I post the clinic's job openings.")
            shoot(page, "2-request-form-filled")
            page.click("#request-access button[type=submit]")
            page.wait_for_selector("#request-id")
            request_id = page.locator("#request-id").inner_text()
            assert configs.APPROVER in page.locator("#approver").inner_text()
            shoot(page, "3-request-sent")
            assert linkedin.requests_to(PAGE.split("?")[0]) == []

            # 3. The approver sees it and approves it with the CLI.
            [listed] = json.loads(cli(proxy, "requests", "--json"))
            assert (listed["id"], listed["employee"], listed["service"], listed["status"]) == (
                request_id, "bob", "linkedin", "pending")
            assert listed["justification"] == "I post the clinic's job openings."
            cli(proxy, "approve", request_id)

            # 4. The page the employee asked for now shows the site.
            page.goto(url)
            reload_until(page, lambda: page.locator("#site").count() == 1)
            shoot(page, "4-approved-site")

            # 5. The approver asks for the Terms of Use to be accepted: the interstitial.
            approvals_file = config / "approvals.yaml"
            text = approvals_file.read_text()
            assert "require_terms_acknowledgement: false" in text
            approvals_file.write_text(text.replace("require_terms_acknowledgement: false",
                                                   "require_terms_acknowledgement: true"))
            reload_until(page, lambda: page.locator("#accept-terms").count() == 1)
            assert page.locator("#terms-link").get_attribute("href") == linkedin.url(TERMS_PATH)
            shoot(page, "5-terms-interstitial")

            # 6. Accepting returns to the page asked for, which opens.
            with page.expect_navigation():
                page.click("#accept-terms button[type=submit]")
            assert page.url == url
            assert page.locator("#site").inner_text() == "LinkedIn feed (fake)"
            shoot(page, "6-after-accepting-terms")
        finally:
            browser.close()

    acknowledgements = json.loads(cli(proxy, "acknowledgements", "--json"))
    assert [(a["employee"], a["service"]) for a in acknowledgements] == [("bob", "linkedin")]
    [decided] = json.loads(cli(proxy, "requests", "--json", "--all"))
    assert decided["status"] == "approved"
