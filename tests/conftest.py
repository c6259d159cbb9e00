"""Shared fixtures: chain (tests/fixtures/chain.py), database (tests/fixtures/db.py) and the
running services (tests/fixtures/services.py)."""

pytest_plugins = ["tests.fixtures.chain", "tests.fixtures.db", "tests.fixtures.services"]
