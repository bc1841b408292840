# One command for the demo, one for the tests, one for the checks.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-cluster test check bench setup clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev,bench]'
	@touch $(STAMP)

setup: $(STAMP)
	@./deploy/ensure-mosquitto.sh

demo: setup
	$(BIN)/python -m demo $(DEMO_ARGS)

# The same demo on a PostgreSQL ledger (its own server in a temporary folder), two collectors.
demo-cluster: setup
	@./deploy/ensure-postgresql.sh
	$(BIN)/python -m demo --cluster $(DEMO_ARGS)

test: setup
	@./tests/interop/ensure-go.sh
	@./deploy/ensure-postgresql.sh
	@./deploy/ensure-chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff check provenance hardware agent collector firmware_stubs witness common demo bench tests
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
