# gatekeeper in a container: the proxy, its metrics/health listener and the PAC file.
#   docker build -t gatekeeper .
#   docker run -d --name gatekeeper -p 8080:8080 -p 8082:8082 -p 127.0.0.1:9464:9464 \
#     -v gatekeeper-config:/etc/gatekeeper -v gatekeeper-state:/var/lib/gatekeeper gatekeeper
#   docker exec gatekeeper gatekeeper requests          # the approver's commands, as printed
# The config volume holds services.yaml, approvals.yaml and gateway.yaml (edits are picked up
# live), writable by the image's user 10001 so that `gatekeeper approve` can edit it; the state
# volume holds the CA (ca/mitmproxy-ca.pem is its private key): keep it, back it up, never bake
# it into an image. See docs/deployment.md ("Docker").
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEKEEPER_CONFIG_DIR=/etc/gatekeeper \
    GATEKEEPER_STATE_DIR=/var/lib/gatekeeper

RUN groupadd --system --gid 10001 gatekeeper \
 && useradd --system --uid 10001 --gid gatekeeper --no-create-home \
        --home-dir /var/lib/gatekeeper --shell /usr/sbin/nologin gatekeeper

WORKDIR /tmp/gatekeeper-src
COPY pyproject.toml README.md ./
COPY gatekeeper ./gatekeeper
RUN pip install . \
 && rm -rf /tmp/gatekeeper-src

# The shipped example policy as the config volume's initial content (no secrets in it), owned
# by the service user: a named volume starts as a copy, writable by the approver's commands.
RUN install -d -o gatekeeper -g gatekeeper -m 0755 /etc/gatekeeper \
 && install -d -o gatekeeper -g gatekeeper -m 0700 /var/lib/gatekeeper
COPY --chown=10001:10001 config/services.yaml config/approvals.yaml config/gateway.yaml /etc/gatekeeper/

WORKDIR /var/lib/gatekeeper
VOLUME ["/etc/gatekeeper", "/var/lib/gatekeeper"]
USER 10001:10001
# 8080 proxy, 8081 transparent listener, 8082 PAC file (ports from config/gateway.yaml), 9464 metrics
EXPOSE 8080 8081 8082 9464

# No curl in the slim image: ask /healthz with the standard library (non-2xx raises, exit 1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]

ENTRYPOINT ["gatekeeper"]
# The directories come from GATEKEEPER_CONFIG_DIR and GATEKEEPER_STATE_DIR above, for `serve`
# and for every command run with `docker exec` alike.
CMD ["serve", "--listen-host", "0.0.0.0", "--metrics-host", "0.0.0.0"]
