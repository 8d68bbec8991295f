"""Issue 12 in a real browser: headless Chromium through a real `gatekeeper serve`, the
approver deciding in the console from the link in the captured e-mail.

An employee requests LinkedIn from the block page; the notification reaches a real SMTP server
(aiosmtpd); the approver opens its link, signs in (the password set with `gatekeeper
approver-password`) and approves with an expiry; the employee's page opens within a second of
the approval. A request for Facebook is denied with a reason, which the employee's block page
then shows. An employee who opens the console is refused. The approver adds a colleague on
the Employees page. Screenshots are kept under
test-artifacts/screenshots/console-*.png.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
from collections.abc import Iterator

import pytest
from support import configs
from support.smtp import Inbox, running_inbox
from test_browser_e2e import CHROMIUM, GATEKEEPER, TIMEOUT_MS, shoot, spki_sha256, sync_api
from test_notify import smtp_settings

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PASSWORD = "the approver's long password"
FEED = "/feed/"
LINK = re.compile(r"https://gatekeeper\.office/requests/[0-9a-z]+\?t=[0-9]+\.[0-9a-f]+")
EXPIRES = dt.date.today() + dt.timedelta(days=60)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with running_inbox() as server:
        yield server


def wait_for_link(inbox: Inbox, count: int, timeout: float = 20.0) -> str:
    """The console link in the `count`-th message the approver received."""
    deadline = time.monotonic() + timeout
    while len(inbox.messages) < count:
        assert time.monotonic() < deadline, "no notification arrived"
        time.sleep(0.05)
    body = inbox.messages[count - 1].get_content()
    found = LINK.search(body)
    assert found, body
    return found.group(0)


def launch(playwright, proxy, user: str):
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        proxy={"server": proxy.proxy_url, "username": user, "password": "pw"},
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync",
              f"--ignore-certificate-errors-spki-list={spki_sha256(proxy.ca_cert)}"],
    )
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return browser, page


def test_the_approver_decides_from_the_mailed_link_in_the_console(gk, fake_sites, inbox,
                                                                   tmp_path):
    messages, smtp_port = inbox
    linkedin, facebook = fake_sites.linkedin, fake_sites.facebook
    approvals = configs.approvals_doc()
    approvals["grants"] = [g for g in approvals["grants"] if g["employee"] != "bob"]
    approvals["employees"]["ivy"] = {"email": configs.APPROVER}  # the approver works here
    approvals["notify"] = {"smtp": smtp_settings(smtp_port)}
    config = configs.write_config(tmp_path / "console-config", approvals=approvals)
    state = tmp_path / "state-1"  # where `gk` puts its first proxy's state
    subprocess.run([str(GATEKEEPER), "approver-password", "--password-stdin",
                    "--config-dir", str(config), "--state-dir", str(state)],
                   input=PASSWORD + "\n", text=True, check=True, timeout=30)
    proxy = gk(config, args=["--set", "proxyauth=any"])
    assert proxy.state_dir == state
    for site, title in ((linkedin, "LinkedIn feed"), (facebook, "Facebook feed")):
        site.route("GET", FEED, lambda request, title=title: (
            200, [("Content-Type", "text/html; charset=utf-8")],
            f"<!doctype html><title>{title}</title><h1 id='site'>{title} (fake)</h1>",
        ))

    with sync_api.sync_playwright() as playwright:
        employee_browser, employee = launch(playwright, proxy, "bob")
        approver_browser, approver = launch(playwright, proxy, "ivy")
        try:
            # 1. The employee asks for LinkedIn from the block page.
            assert employee.goto(linkedin.url(FEED)).status == 403
            employee.fill("#justification", "I post the clinic's job openings.")
            employee.click("#request-access button[type=submit]")
            request_id = employee.locator("#request-id").inner_text()
            employee.goto(linkedin.url(FEED))
            assert employee.locator("#request-state").get_attribute("data-status") == "pending"
            assert employee.locator("#request-access").count() == 0  # no second form
            shoot(employee, "console-1-employee-pending")

            # 2. The approver opens the link from the e-mail: the request, after sign-in.
            link = wait_for_link(messages, 1)
            assert f"/requests/{request_id}?" in link
            opened = approver.goto(link)
            assert opened.status == 200
            assert request_id in approver.locator("#notice").inner_text()
            shoot(approver, "console-2-sign-in")
            approver.fill("#user", configs.APPROVER)
            approver.fill("#password", PASSWORD)
            with approver.expect_navigation():
                approver.click("#sign-in button[type=submit]")
            assert approver.locator("#request-id").inner_text() == request_id
            assert "job openings" in approver.locator("#justification").inner_text()
            shoot(approver, "console-3-request")

            # 3. Approve with an expiry; the employee's page opens within a second.
            approver.fill(f"#approve-{request_id} input[name=expires]", EXPIRES.isoformat())
            with approver.expect_navigation():
                approver.click(f"#approve-{request_id} button[type=submit]")
            assert "Approved" in approver.locator("#message").inner_text()
            approved_at = time.monotonic()
            shoot(approver, "console-4-approved")
            while employee.goto(linkedin.url(FEED)).status != 200:
                assert time.monotonic() - approved_at < 10, "the grant never took effect"
                time.sleep(0.05)
            elapsed = time.monotonic() - approved_at
            assert employee.locator("#site").inner_text() == "LinkedIn feed (fake)"
            assert elapsed < 1.0, f"the employee's page opened {elapsed:.2f} s after approval"
            shoot(employee, "console-5-employee-allowed")
            assert f"expires: {EXPIRES.isoformat()}" in (config / "approvals.yaml").read_text()

            # 4. The link works once.
            again = approver_browser.new_context().new_page()
            assert again.goto(link).status == 410
            again.close()

            # 5. A request for Facebook, denied with a reason: the block page says so.
            assert employee.goto(facebook.url(FEED)).status == 403
            employee.fill("#justification", "Patients message us there.")
            employee.click("#request-access button[type=submit]")
            second = employee.locator("#request-id").inner_text()
            approver.goto("https://gatekeeper.office/requests")
            approver.fill(f"#deny-{second} input[name=reason]", "Reception does not need it")
            with approver.expect_navigation():
                approver.click(f"#deny-{second} button[type=submit]")
            assert "Denied" in approver.locator("#message").inner_text()
            assert employee.goto(facebook.url(FEED)).status == 403
            assert employee.locator("#denial-reason").inner_text() == "Reception does not need it"
            assert employee.locator("#request-access").count() == 1  # a way to ask again
            shoot(employee, "console-6-employee-denied")

            # 6. An employee who opens the console is refused; nothing goes upstream.
            refused = employee.goto("https://gatekeeper.office/requests")
            assert refused.status == 403
            assert refused.headers["x-gatekeeper-console"] == "not_the_approver"
            shoot(employee, "console-7-employee-refused")

            # 7. The approver adds a colleague on the Employees page (approvals.yaml).
            approver.goto("https://gatekeeper.office/employees")
            approver.fill("#add-employee input[name=employee]", "dora")
            approver.fill("#add-employee input[name=email]", "dora@clinic.example")
            with approver.expect_navigation():
                approver.click("#add-employee button[type=submit]")
            assert "Added: employee dora" in approver.locator("#message").inner_text()
            assert "dora@clinic.example" in (config / "approvals.yaml").read_text()
            shoot(approver, "console-8-employee-added")
        finally:
            employee_browser.close()
            approver_browser.close()
