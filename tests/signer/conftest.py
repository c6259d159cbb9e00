"""Signer test fixtures: settings, in-process SigningServices on the test database (through the
signer's own role), ledger rows to sign against, and payload builders."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devtools.processes import signer_database_url
from signer.keys import LocalKey
from signer.main import build_service
from signer.service import SigningService
from signer.settings import SignerSettings
from tests.fixtures.services import reset_signer_state
from tests.signer.ledger_rows import LedgerRows

# TEST-ONLY: Anvil's public dev key 1 (the backend signer role in tests/fixtures/chain.py).
DEV_SIGNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TOKEN = "test-token-" + "x" * 32
ETHER = 10**18


def owner_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def make_settings(tmp_path: Path, test_database_url: str, **overrides: Any) -> SignerSettings:
    values: dict[str, Any] = {
        "key_backend": "raw",
        "raw_key": DEV_SIGNER_KEY,
        "auth_token": TOKEN,
        "chain_id": 31337,
        "contract_address": CONTRACT,
        "audit_log_path": tmp_path / "audit.jsonl",
        "audit_fsync": "always",
        "database_url": signer_database_url(test_database_url),
        "max_batch_total_wei": 100 * ETHER,
        "max_batch_recipients": 5,
        "rolling_24h_cap_wei": 250 * ETHER,
        "rate_limit_payout_batch": "1000/minute",
    }
    values.update(overrides)
    return SignerSettings(_env_file=None, **values)


def process_env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `python -m signer` process on the test database (raw dev key)."""
    return {
        "AUTOPOOL_SIGNER_KEY_BACKEND": "raw",
        "AUTOPOOL_SIGNER_RAW_KEY": DEV_SIGNER_KEY,
        "AUTOPOOL_SIGNER_AUTH_TOKEN": TOKEN,
        "AUTOPOOL_SIGNER_CHAIN_ID": "31337",
        "AUTOPOOL_SIGNER_CONTRACT_ADDRESS": CONTRACT,
        "AUTOPOOL_SIGNER_AUDIT_LOG_PATH": str(tmp_path / "audit.jsonl"),
        "AUTOPOOL_SIGNER_DATABASE_URL": signer_database_url(database_url),
        **{f"AUTOPOOL_SIGNER_{k.upper()}": v for k, v in extra.items()},
    }


@pytest.fixture
async def signer_state(database_url: str) -> str:
    """An empty signer schema (no anchor, no outflows) on the test database; its URL."""
    await reset_signer_state(database_url)
    return database_url


@pytest.fixture
def settings_factory(tmp_path: Path, signer_state: str) -> Callable[..., SignerSettings]:
    return lambda **overrides: make_settings(tmp_path, signer_state, **overrides)


ServiceFactory = Callable[..., Awaitable[SigningService]]


@pytest.fixture
async def service_factory(
    settings_factory: Callable[..., SignerSettings],
) -> AsyncIterator[ServiceFactory]:
    """Started services (`build_service` + `start`), closed at the end of the test."""
    started: list[SigningService] = []

    async def factory(settings: SignerSettings | None = None, **kwargs: Any) -> SigningService:
        kwargs.setdefault("key", LocalKey.from_hex(DEV_SIGNER_KEY))
        svc = build_service(settings or settings_factory(), **kwargs)
        await svc.start()
        started.append(svc)
        return svc

    yield factory
    for svc in started:
        await svc.aclose()


@pytest.fixture
async def ledger(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> AsyncIterator[LedgerRows]:
    """Rows written as the owner role on a truncated ledger (the invariants run afterwards)."""
    conn = await asyncpg.connect(owner_dsn(database_url))
    try:
        yield LedgerRows(conn)
    finally:
        await conn.close()


@pytest.fixture
async def service(ledger: LedgerRows, service_factory: ServiceFactory) -> SigningService:
    return await service_factory()


def registration(**overrides: Any) -> dict[str, Any]:
    """A well-formed registration that the ledger knows nothing of."""
    msg: dict[str, Any] = {
        "user": "0x" + "11" * 20,
        "referrer": "0x" + "22" * 20,
        "slot": 1,
        "amount": 20 * ETHER,
        "planHash": "0x" + "ab" * 32,
        "nonce": 1,
        "deadline": int(time.time()) + 600,
    }
    msg.update(overrides)
    return msg


def batch(amounts: list[int], **overrides: Any) -> dict[str, Any]:
    """A well-formed payout batch that the ledger knows nothing of."""
    msg: dict[str, Any] = {
        "batchId": 1,
        "payouts": [
            {"recipient": "0x" + f"{i + 1:02x}" * 20, "amount": a} for i, a in enumerate(amounts)
        ],
        "nonce": 1,
        "deadline": int(time.time()) + 600,
    }
    msg.update(overrides)
    return msg
