# Fresh machine: `make bench` (default suite on the local CPU, writes reports/<run>/) or `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup bench test test-fast overhead docs arm64-rootfs clean

setup: $(STAMP)

# torch==2.13.0 first: the local CPU wheel. Any wider torch spec would pull GBs of CUDA packages.
# openssh-server: the SSH-target tests start a real sshd on 127.0.0.1; chromium: the report is checked in a real
# headless browser. Without them (not root, no apt) those tests skip, naming the package.
$(STAMP): pyproject.toml
	@if { [ ! -x /usr/sbin/sshd ] || ! command -v chromium >/dev/null; } && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server chromium >/dev/null; fi
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,executorch,cluster,loadgen,diffusers,docs]'
	touch $(STAMP)

bench: setup
	$(PY) -m harness run

# The emulated arm64 target's rootfs: built once (~5-10 min), then restored from ~/.cache/edge-harness.
arm64-rootfs:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/arm64-rootfs.sh >/dev/null; \
	else echo "not root: the emulated arm64 tests will skip (scripts/arm64-rootfs.sh needs root)"; fi

test: setup arm64-rootfs
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

overhead: setup
	$(PY) benchmarks/overhead.py

# The documentation site: docs/ (and pages generated from the code) → site/index.html.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache site
