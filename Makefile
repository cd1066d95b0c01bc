# Everything here runs from a clean clone: `make test` builds its own virtualenv from
# the hash-locked requirements, then checks and tests against real PostgreSQL and NATS.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck test test-unit test-integration test-e2e lock emulator run demo bench clean

install: $(STAMP)

$(STAMP): requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/dev.txt
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy shared services

# The whole suite: lint, types, then unit, integration and end-to-end tests.
test: lint typecheck
	$(BIN)/python scripts/test_infra.py run -- $(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install
	$(BIN)/python scripts/test_infra.py run -- $(BIN)/python -m pytest tests/integration

test-e2e: install
	$(BIN)/python scripts/test_infra.py run -- $(BIN)/python -m pytest tests/e2e

# Re-resolve the locked dependencies after editing requirements/*.in (needs network).
lock: install
	$(BIN)/python -m pip install --quiet uv
	cd requirements && ../$(BIN)/uv pip compile runtime.in --generate-hashes --python-version 3.11 -o runtime.txt
	cd requirements && ../$(BIN)/uv pip compile dev.in --generate-hashes --python-version 3.11 -o dev.txt

# The whole gateway on this machine, behind one address: SQLite files, or DATABASE_URL.
run: install
	$(BIN)/python scripts/run_local.py

# The whole path once, printed: a workspace, a provider, a grant, a call and its events.
demo: install
	$(BIN)/python scripts/demo.py

# The proxy's added latency, throughput and memory, side by side with the upstream.
bench: install
	$(BIN)/python scripts/test_infra.py run -- $(BIN)/python bench/run.py

# A provider emulator on 127.0.0.1:8900 for trying the gateway by hand.
emulator: install
	$(BIN)/python -m tests.emulator --port 8900 --key sk-emulator-0123456789abcdef

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
