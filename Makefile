# gatekeeper: `make run` starts the proxy on config/, `make test` runs the whole suite.
# Each target installs what it needs: a virtualenv in .venv and, for the tests, the Debian
# packages the end-to-end tests and the benchmark drive (chromium, nftables, iproute2, prometheus,
# hey, nginx; buildah, podman and debootstrap build the Docker image) when run as root.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSTEM_PACKAGES := chromium nftables iproute2 prometheus systemd util-linux hey slapd ldap-utils nginx-light \
                   buildah podman debootstrap

.PHONY: run test lint bench soak system-deps clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (set PYTHON=...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/gatekeeper serve

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "make: missing Debian packages:$$missing (tests that need them are skipped)" >&2; fi; \
	fi

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP) system-deps
	$(BIN)/python bench/run.py

# Minutes of mixed traffic with reloads and a locked state database (as root): make soak MINUTES=10
MINUTES ?= 5
soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes $(MINUTES)

clean:
	rm -rf $(VENV) state test-artifacts
