# LLMFlow. `make run` starts the proxy and the dashboard; `make test` runs the whole suite.
# Both install what they need on a fresh Debian/Ubuntu machine (Python 3.11, Node 20) and do
# nothing again when nothing changed (stamp files in .stamps/).

PYTHON ?= python3
VENV   := .venv
TVENV  := .venv-test
STAMPS := .stamps
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STATIC_SOURCES := $(shell find llmflow_dashboard/static llmflow_dashboard/templates -type f 2>/dev/null)
PYTEST_ARGS ?=

.PHONY: run test bench assets runtime clean help
BENCH_ARGS ?=

help:
	@echo "make run    - install (first time) and run the proxy (:8080) and dashboard (:3000)"
	@echo "make test   - install (first time) and run the whole test suite"
	@echo "make bench  - the benchmark (~20 min; BENCH_ARGS=--quick or --smoke)"
	@echo "make clean  - remove virtualenvs, built assets and stamps (keeps ./data)"

run: runtime assets
	$(VENV)/bin/python manage.py run

test: runtime assets $(STAMPS)/test-env $(STAMPS)/chromium $(STAMPS)/bench-tools
	$(TVENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: runtime assets $(STAMPS)/test-env $(STAMPS)/bench-tools
	$(TVENV)/bin/python bench/run.py $(BENCH_ARGS)

runtime: $(STAMPS)/runtime
assets: $(STAMPS)/assets

$(STAMPS)/runtime: requirements/core.txt requirements/proxy.txt requirements/web.txt requirements/dev.txt
	@mkdir -p $(STAMPS)
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements/dev.txt
	@touch $@

# The test runner's own environment: current provider SDKs cannot share one with mitmproxy 11.
# It also holds the Node OpenAI SDK the tests drive (tests/node, with its own lockfile).
# (requirements/bench.txt is test.txt plus the benchmark's plotting and profiling tools.)
$(STAMPS)/test-env: requirements/core.txt requirements/web.txt requirements/test.txt requirements/bench.txt tests/node/package-lock.json
	@mkdir -p $(STAMPS)
	[ -x $(TVENV)/bin/python ] || $(PYTHON) -m venv $(TVENV)
	$(TVENV)/bin/pip install -q --disable-pip-version-check -r requirements/bench.txt
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Front-end libraries from npm (lockfile), copied into static/vendor, then collected for whitenoise.
$(STAMPS)/assets: package.json package-lock.json $(STATIC_SOURCES) $(STAMPS)/runtime
	@mkdir -p $(STAMPS) llmflow_dashboard/static/vendor
	npm ci --no-audit --no-fund --loglevel=error
	cp node_modules/chart.js/dist/chart.umd.min.js node_modules/chart.js/dist/chart.umd.min.js.map llmflow_dashboard/static/vendor/
	$(VENV)/bin/python manage.py collectstatic --noinput -v0
	@touch $@

# Debian's Chromium for the browser tests (Playwright drives it; it cannot download its own).
$(STAMPS)/chromium:
	@mkdir -p $(STAMPS)
	command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }
	@touch $@

# nginx (the benchmark's fixed-response upstream) and wrk (its load generator), from Debian.
$(STAMPS)/bench-tools:
	@mkdir -p $(STAMPS)
	{ command -v wrk && { command -v nginx || [ -x /usr/sbin/nginx ]; }; } >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q nginx wrk; }
	@touch $@

clean:
	rm -rf $(VENV) $(TVENV) $(STAMPS) node_modules staticfiles llmflow_dashboard/static/vendor
