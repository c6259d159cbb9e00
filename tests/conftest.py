"""Shared fixtures: chain (tests/fixtures/chain.py), database (tests/fixtures/db.py) and the
running services (tests/fixtures/services.py); the ledger invariants checked after every
database test (tests/fixtures/invariants.py)."""

pytest_plugins = [
    "tests.fixtures.chain",
    "tests.fixtures.db",
    "tests.fixtures.services",
    "tests.fixtures.invariants",
    "pytester",
]
