"""Shared fixtures. Chain fixtures live in tests/fixtures/chain.py, database ones in
tests/fixtures/db.py."""

pytest_plugins = ["tests.fixtures.chain"]
