# One task runner. `make demo` installs everything and runs the local devnet demo;
# `make test` runs the test suite (real PostgreSQL, Redis and Anvil).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install services demo devnet test lint typecheck bench compile clean mutation lock

install: $(BIN)/autopool-devnet node_modules/.bin/anvil

# Every Python package at the exact version and hash of requirements.lock (pip refuses anything
# else, pip itself included), then the project on top without resolving anything again.
$(BIN)/autopool-devnet: pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

# Re-resolve requirements.lock from pyproject.toml (docs/operations.md "Updating the lock"):
#   make lock                       keep every pin that still satisfies pyproject.toml
#   make lock UPGRADE=--upgrade     newest allowed versions of everything
#   make lock UPGRADE="--upgrade-package aiohttp"
lock: install
	$(BIN)/uv pip compile pyproject.toml requirements-tools.in --extra dev --generate-hashes \
		--universal --python-version 3.11 --custom-compile-command "make lock" \
		$(UPGRADE) -o requirements.lock

node_modules/.bin/anvil: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

services:
	bash .ci/services.sh

# The contracts (offline solc-js), then the web pages: TypeScript types generated from
# docs/openapi.json, type-checked, bundled into web/dist (served at /app and /admin).
compile: install
	npx --no-install hardhat compile --quiet
	npm run --silent web:build

demo: install services compile
	$(BIN)/autopool-devnet --once

devnet: install services compile
	$(BIN)/autopool-devnet

test: install services compile
	$(BIN)/pytest -q -n auto --dist loadgroup

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Mutation testing of one module (not in CI: slow). docs/testing.md lists the latest scores.
#   make mutation MODULE=backend.payouts.service
mutation: install services compile
	@test -n "$(MODULE)" || (echo "usage: make mutation MODULE=backend.payouts.service" && exit 2)
	$(BIN)/python -m devtools.mutation $(MODULE)

typecheck: install
	$(BIN)/mypy

bench: install services compile
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_signer.py
	$(BIN)/python benchmarks/bench_gas.py

clean:
	rm -rf artifacts cache .pytest_cache .mypy_cache .ruff_cache
