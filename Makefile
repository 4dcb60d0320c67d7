# Two entry points: `make run` serves on the embedded JSON store, `make test`
# runs lint, types and the whole suite. Both build .venv from the lock files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
DATA_DIR ?= ./data

.PHONY: run test test-deep browser nginx lint typecheck pytest lock bench wrk clean mutate-fsync

# scripts/install.sh builds .venv from a lock file with uv (installed once
# into .tools/uv, hash-pinned, when it is not on PATH) or, failing that, pip;
# the same hash-pinned lock files either way, with progress shown.
# Stamp files make re-runs instant while the lock files are unchanged.
$(VENV)/.run-installed: requirements.lock pyproject.toml requirements-uv.lock scripts/install.sh
	PYTHON=$(PYTHON) scripts/install.sh $(VENV) requirements.lock
	touch $@

$(VENV)/.dev-installed: requirements-dev.lock pyproject.toml requirements-uv.lock scripts/install.sh
	PYTHON=$(PYTHON) scripts/install.sh $(VENV) requirements-dev.lock
	touch $(VENV)/.run-installed $@

run: $(VENV)/.run-installed
	$(BIN)/valhalla serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

# The type check runs beside the suite: the tests wait on servers, browsers
# and disks more than they compute, so mypy takes CPU that would sit idle.
test: $(VENV)/.dev-installed browser nginx lint
	$(MAKE) --no-print-directory -j2 typecheck pytest

# The GO page tests drive Debian's chromium (Playwright with executable_path).
# Installed when missing and we can (root + apt-get); otherwise a message, and
# the UI tests skip locally (or fail where VALHALLA_TEST_REQUIRE_SERVICES=1).
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x "$(CHROMIUM)" ]; then \
		echo "browser: $(CHROMIUM) is installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser: installing Debian's chromium for the GO page tests"; \
		apt-get update && apt-get install -y --no-install-recommends chromium \
			|| echo "browser: could not install chromium; the UI tests will skip (fail in CI)"; \
	else \
		echo "browser: $(CHROMIUM) is missing and cannot be installed here (needs root and apt-get);"; \
		echo "browser: run 'sudo apt-get install chromium'. The UI tests skip until then (fail in CI)."; \
	fi

# The deployment tests (tests/ops/test_deploy.py) run Debian's nginx with the
# shipped deploy/nginx.conf in front of a live server. Installed like chromium:
# when missing and we can (root + apt-get); otherwise a message, and the test
# skips locally (or fails where VALHALLA_TEST_REQUIRE_SERVICES=1).
NGINX ?= /usr/sbin/nginx
nginx:
	@if [ -x "$(NGINX)" ]; then \
		echo "nginx: $(NGINX) is installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "nginx: installing Debian's nginx for the deployment tests"; \
		apt-get update && apt-get install -y --no-install-recommends nginx \
			|| echo "nginx: could not install nginx; the deployment test will skip (fail in CI)"; \
	else \
		echo "nginx: $(NGINX) is missing and cannot be installed here (needs root and apt-get);"; \
		echo "nginx: run 'sudo apt-get install nginx'. The deployment test skips until then (fail in CI)."; \
	fi

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# Three workers on two CPUs: most of the suite waits on subprocesses, sockets
# and fsync, and two workers left a quarter of the CPU idle.
# A test file stays on one worker (module-scoped servers start once).
PYTEST_ARGS ?= -n 3 --dist loadfile
pytest: $(VENV)/.dev-installed
	$(BIN)/pytest $(PYTEST_ARGS)

# Run before each stop: the long crash storms, the soak and the large
# property runs at their full size (about 15 minutes).
test-deep: $(VENV)/.dev-installed browser nginx lint typecheck
	VALHALLA_TEST_DEEP=1 $(BIN)/pytest $(PYTEST_ARGS)

# Regenerate the pinned lock files (needs `uv` on PATH; .tools/uv/bin/uv after
# a first `make run` is one). requirements-uv.lock pins the installer itself.
UV_VERSION ?= 0.13.10
lock:
	uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -o requirements.lock
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements-dev.lock
	echo "uv==$(UV_VERSION)" | uv pip compile - --universal --python-version 3.11 --generate-hashes -o requirements-uv.lock

# Mutation check of the durability code: remove each fsync of
# storage/json_store.py in turn (on a temp copy) and show the power-loss test
# fails for each. About 10 minutes; what each removal breaks: docs/dev/testing.md.
mutate-fsync: $(VENV)/.dev-installed
	$(BIN)/python -m tests.reliability.mutate_fsync

clean:
	rm -rf $(VENV) .tools .mypy_cache .pytest_cache .ruff_cache

# Benchmarks (docs/dev/performance.md): every guardrail on both backends, at
# full size (the 1,000,000-entry fixtures are built once and cached in
# bench/results/; PostgreSQL at 127.0.0.1:5432). Prints PASS/MISS per guardrail;
# add --strict to BENCH_ARGS to fail on a miss. Quicker:
#   make bench BENCH_ARGS="--entries 10000 --verify-entries 50000 --quick"
BENCH_ARGS ?=
bench: $(VENV)/.dev-installed wrk
	$(BIN)/python -m bench guardrails $(BENCH_ARGS)

# The GET benchmark's load generator: Debian's wrk, installed when missing and
# we can (root + apt-get), as `browser` does for chromium.
wrk:
	@if command -v wrk >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "wrk: installing Debian's wrk for the GET benchmark"; \
		apt-get update && apt-get install -y --no-install-recommends wrk \
			|| echo "wrk: could not install it; the GET guardrail is not measured"; \
	else \
		echo "wrk: missing; run 'sudo apt-get install wrk' (the GET guardrail is not measured)"; \
	fi
