# Everything a newcomer needs: `make demo` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MINISTACK_VENV := .tools/ministack
MINISTACK_VERSION := 1.5.33

.PHONY: install tools node lint unit test fuzz faults demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# ministack pins its own botocore, so it lives in its own virtualenv and runs as a separate process.
tools: $(MINISTACK_VENV)/.installed

$(MINISTACK_VENV)/.installed: Makefile
	@test -x $(MINISTACK_VENV)/bin/python || $(PYTHON) -m venv $(MINISTACK_VENV)
	$(MINISTACK_VENV)/bin/python -m pip install --quiet 'ministack==$(MINISTACK_VERSION)'
	@touch $@

# The real Better Auth server the integration tests start (tests/better_auth_server.py), from its lock file.
BETTER_AUTH_DIR := tests/better_auth
node: $(BETTER_AUTH_DIR)/node_modules/.installed

$(BETTER_AUTH_DIR)/node_modules/.installed: $(BETTER_AUTH_DIR)/package-lock.json $(BETTER_AUTH_DIR)/package.json
	cd $(BETTER_AUTH_DIR) && npm ci --no-audit --no-fund
	@touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

test: install tools node lint
	$(BIN)/pytest

# The fast loop while editing: the unit tier only (fakes, no network, no process, no database, no leak
# scan: tests/unit/conftest.py fails a test that tries; ~10 s, no emulator, no npm, no lint).
unit: install
	$(BIN)/pytest tests/unit -q -p no:cacheprovider

# More hostile input than `make test` sends: 1,000 generated requests per operation and token state, with
# fresh random inputs each run (Hypothesis prints the seed of a failure so it can be replayed).
FUZZ_EXAMPLES ?= 1000
fuzz: install
	FUZZ_EXAMPLES_PER_OPERATION=$(FUZZ_EXAMPLES) FUZZ_RANDOM=1 $(BIN)/pytest tests/e2e/test_schemathesis.py -p no:cacheprovider

# Only the fault matrix (it is part of `make test` too): breaks real dependencies and prints the table.
faults: install tools
	$(BIN)/pytest tests/faults

# devtools/ (the stand-ins the demo starts) is not packaged, so the editable install does not map it: put the
# checkout on the path.
demo: install tools
	PYTHONPATH=$(CURDIR) $(BIN)/tryon demo

bench: install tools
	$(BIN)/python -m bench.issuance
	$(BIN)/python -m bench.verification
	$(BIN)/python -m bench.tryons
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) .tools var .mypy_cache .ruff_cache .pytest_cache *.egg-info
