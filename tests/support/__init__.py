"""End-to-end test harness: fake upstream sites, the real proxy process, test configs.

Import as `from support import ...` (pytest puts tests/ on sys.path via tests/conftest.py).

Fixtures (tests/conftest.py)
    config_dir   tmp dir with the default services.yaml + approvals.yaml (support.configs).
    fake_sites   a `Sites` dict of running FakeSites: "facebook" (www.facebook.com,
                 facebook.com, static.xx.fbcdn.net), "linkedin" (www.linkedin.com,
                 linkedin.com, static.licdn.com), "x" (x.com, twitter.com) and "bank"
                 (bank.example, www.bank.example: not social). Each has HTTPS and plain HTTP.
                 Attribute access works too: fake_sites.facebook. `fake_sites.hosts()` maps
                 every host name to its site's loopback address.
    gk           factory: gk(config_dir=None, *, args=(), hosts=None, wait=True, name=None,
                 cls=GatekeeperProcess, **kwargs) -> a started GatekeeperProcess, ready
                 (/readyz is 200 and the proxy port accepts) unless wait=False. config_dir
                 defaults to the config_dir fixture, hosts to fake_sites.hosts() (then it
                 needs root: skipped otherwise; hosts={} runs without a mount namespace).
                 Stopped at teardown (SIGTERM, exit 0 checked).

support.fakesite.FakeSite(hostnames, plain_http=False, address=None, https_port=0)
    .start()/.stop() or `with`; .address (127.77.P.N), .https_port, .http_port, .host,
    .url(path="/", scheme="https", host=None) -> "https://www.facebook.com:PORT/path",
    .connections (accepted TCP connections, both schemes), .requests (RecordedRequest:
    scheme, method, path incl. query, headers [(name, value)], body bytes, .header(name),
    .host), .requests_to(path), .cert_sha256 (hex SHA-256 of the DER leaf it presents),
    .route(method, path, handler): handler(RecordedRequest) -> (status, [(header, value)],
    body str|bytes); path is matched without the query. Default: 200 text/html
    "hello from <Host header host>".

support.proxy.GatekeeperProcess(config_dir, state_dir, *, args=(), hosts=None, prefix=(),
                                name="proxy", listen_port=None, metrics_port=None, env=None,
                                allowed_destinations=("127.0.0.0/8",))
    Runs `.venv/bin/gatekeeper serve` with explicit free ports, `--log-format json` and
    `--set ssl_insecure=true`, and allows loopback upstreams (`gatekeeper_allowed_destinations`,
    where the fake sites listen; `allowed_destinations=()` keeps the shipped refusal); its own
    listeners stay refused either way. With `hosts` it runs inside
    `unshare --mount` with a hosts file bind-mounted on /etc/hosts (exec: signals reach it).
    .start(wait=True), .wait_ready(), .wait_exit(timeout) -> status, .stop(expect_status=0),
    .kill(), .signal(sig), .running, .returncode,
    .proxy_url, .metrics_url, .listen_port, .metrics_port, .ca_cert (<state>/ca/...pem),
    .session(user=None, password=None) -> requests.Session via the proxy, verify=ca_cert,
    .proxy_url_for(user, password),
    .stdout / .stderr (text so far), .stdout_lines, .log_lines() -> [JSON events],
    .events("decision"), .wait_for_log(predicate, timeout=5) -> event,
    .scrape() -> {(sample_name, frozenset(labels.items())): value} over HTTP,
    .metric(name, **labels) -> sum of samples whose labels include `labels` (0.0 if none),
    .wait_for_metric(name, value, timeout=5, **labels),
    .artifact: this process's log file (every stdout/stderr line, prefixed "out: " /
    "err: ") in support.proxy.ARTIFACT_LOGS = test-artifacts/logs/run-<time>-<pid>/, one
    directory per pytest run: what a suite-wide secrets check should grep.
support.proxy.MitmdumpProcess: same API, runs `mitmdump -s addons/gatekeeper.py`.
support.proxy.free_port(), port_open(port), can_unshare().

support.configs
    services_doc(**extra_services), approvals_doc(mode="enforce"), employee(id, addresses=),
    grant(employee, service, **fields), to_yaml(doc), write_config(dir, services=, approvals=),
    write_htpasswd(path, {user: password}); APPROVER, COMPANY_DOMAIN.
support.tls
    issue(hostnames) -> (cert_path, key_path) from the session's test CA;
    shared_ca().cert_path: the CA to verify fake sites directly or through a passthrough;
    cert_sha256(der), pem_sha256(path).
"""
