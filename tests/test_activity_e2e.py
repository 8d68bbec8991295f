"""Issue 15 end to end: the shipped catalog's sign-ups and audited activities (the samples of
tests/catalog_samples.py), each sent through one real proxy to a fake site answering for the
real host names, then read back with `gatekeeper activity`.

A sign-up with a personal address is refused (`personal_account`, action `sign_up`) before the
site sees it; with the company address it passes and one account creation is recorded per
service (masked). Every audited activity is recorded exactly once, with its target.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import requests
from catalog_samples import SAMPLES, Sample
from support.cli import run_main
from support.fakesite import FakeSite
from support.waiting import wait_until
from test_signin_replays import shipped_config  # noqa: F401 (the fixture, shared with it)

pytestmark = pytest.mark.e2e  # starts a real proxy process

TIMEOUT = 10
COMPANY = "alice@clinic.example"
PERSONAL = "alice.private@gmail.com"
SIGNUPS = [s for s in SAMPLES if s.kind == "signups"]
AUDITED = [s for s in SAMPLES if s.kind == "audited"]
APP_CONSENT = next(s for s in SAMPLES if s.kind == "prohibited" and s.service == "facebook"
                   and s.action == "app_authorization")


def send(client: requests.Session, site: FakeSite, sample: Sample, account: str,
         accept: str = "application/json") -> requests.Response:
    url = f"https://{sample.host}:{site.https_port}{sample.path}"
    headers = {"Accept": accept}
    if sample.content_type:
        headers["Content-Type"] = sample.content_type
    return client.request(sample.method, url, data=sample.body_for(account), headers=headers,
                          timeout=TIMEOUT, allow_redirects=False)


def reached(site: FakeSite, sample: Sample) -> int:
    path = sample.path.split("?", 1)[0]
    return len([r for r in site.requests_to(path) if r.method == sample.method])


def test_sign_ups_and_activities_of_the_shipped_catalog(gk, request, capsys) -> None:
    config, args, password, vault = request.getfixturevalue("shipped_config")
    hosts = sorted({s.host for s in (*SIGNUPS, *AUDITED, APP_CONSENT)})
    with FakeSite(hosts) as site:
        proxy = gk(config, args=args, hosts=dict.fromkeys(hosts, site.address))
        client = proxy.session("alice", password)
        for sample in SIGNUPS:
            before = reached(site, sample)
            refused = send(client, site, sample, PERSONAL)
            assert refused.status_code == 403, sample.id
            assert refused.headers["X-Gatekeeper-Reason"] == "personal_account", sample.id
            assert refused.json()["action"] == "sign_up", sample.id
            assert reached(site, sample) == before, f"{sample.id}: the site saw the sign-up"
            assert send(client, site, sample, COMPANY).status_code == 200, sample.id
            assert reached(site, sample) == before + 1, sample.id
        page = send(client, site, SIGNUPS[0], PERSONAL, accept="text/html")
        assert '<strong id="action">sign_up</strong>' in page.text
        for sample in AUDITED:
            before = reached(site, sample)
            assert send(client, site, sample, COMPANY).status_code == 200, sample.id
            assert reached(site, sample) == before + 1, sample.id

        consent = send(client, site, APP_CONSENT, COMPANY)
        assert consent.json() == {"blocked": True, "service": "facebook",
                                  "reason": "prohibited_action",
                                  "action": "app_authorization"}

        expected = len(AUDITED) + len({s.service for s in SIGNUPS}) + len(SIGNUPS) + 2

        def report() -> dict:
            result = run_main(capsys, ["activity", "--json", "--config-dir", str(config),
                                       "--state-dir", str(proxy.state_dir)])
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)

        wait_until(lambda: sum(report()["totals"].values()) >= expected,
                   "every activity is in the state database")
        rows = {row["service"]: row for row in report()["activity"]}
        events = [e for row in rows.values() for e in row["events"]]
        recorded = Counter((e["service"], e["action"], e["target"]) for e in events
                           if e["outcome"] == "recorded")
        for sample in AUDITED:
            assert sample.target, sample.id
            assert recorded[(sample.service, sample.action, sample.target)] == 1, sample.id
        for service in {s.service for s in SIGNUPS}:
            assert recorded[(service, "account_created", "a***@clinic.example")] == 1, service
            assert rows[service]["counts"]["account_creations"] == 1
        refusals = Counter(e["service"] for e in events
                           if (e["action"], e["outcome"], e["target"])
                           == ("sign_up", "refused", "a***@gmail.com"))
        assert refusals == Counter(s.service for s in SIGNUPS) + Counter([SIGNUPS[0].service])
        assert sum(report()["totals"].values()) == expected  # nothing recorded twice
        assert rows["facebook"]["counts"]["friends_and_connections"] == 2
        assert rows["facebook"]["counts"]["app_authorizations_refused"] == 1
        assert ("app_authorization", "refused", "1234567890") in {
            (e["action"], e["outcome"], e["target"]) for e in rows["facebook"]["events"]}
        assert rows["linkedin"]["counts"]["friends_and_connections"] == 2

        text = run_main(capsys, ["activity", "--service", "reddit", "--config-dir",
                                 str(config), "--state-dir", str(proxy.state_dir)]).stdout
        assert "alice on reddit:" in text and "group_joined  AskVet" in text
        assert "facebook" not in text
        vault.check(proxy)
