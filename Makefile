# One task runner. `make demo` installs everything and runs the local devnet demo;
# `make test` runs the test suite (real PostgreSQL, Redis and Anvil).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install services demo devnet test lint typecheck bench compile clean

install: $(BIN)/autopool-devnet node_modules/.bin/anvil

$(BIN)/autopool-devnet: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

node_modules/.bin/anvil: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

services:
	bash .ci/services.sh

compile: install
	npx --no-install hardhat compile --quiet

demo: install services compile
	$(BIN)/autopool-devnet --once

devnet: install services compile
	$(BIN)/autopool-devnet

test: install services compile
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

bench: install services compile
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_signer.py
	$(BIN)/python benchmarks/bench_gas.py

clean:
	rm -rf artifacts cache .pytest_cache .mypy_cache .ruff_cache
