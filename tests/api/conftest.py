"""An API app for tests that need no chain, no signer and no per-test state: started once per
module on a seeded database (route guards, schema fuzzing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from fastapi import FastAPI
from pydantic import SecretStr

from backend.app import create_app
from backend.chain.signer_client import Signature
from backend.chain.typed_data import Domain, full_message
from backend.core.db import make_engine, make_sessionmaker, unit_of_work
from backend.core.settings import Settings
from backend.core.wiring import current_plan
from backend.ledger.genesis import seed
from devtools.anvil import DEV_PRIVATE_KEYS
from tests.fixtures.db import truncate_all
from tests.fixtures.services import TEST_REDIS_URL

OFFLINE_CONTRACT = "0x" + "00" * 19 + "01"


class LocalSigner:
    """In place of the signer service: signs EIP-712 payloads in process with the public
    TEST-ONLY Anvil key 1 (no policy: what these tests exercise is the API around it)."""

    async def sign(self, primary_type: str, message: dict[str, Any]) -> Signature:
        domain = Domain(chain_id=31337, verifying_contract=OFFLINE_CONTRACT)
        signed = Account.sign_typed_data(
            DEV_PRIVATE_KEYS[1], full_message=full_message(domain, primary_type, message)
        )
        return Signature(
            signature="0x" + bytes(signed.signature).hex(),
            digest="0x" + bytes(signed.message_hash).hex(),
            signer=Account.from_key(DEV_PRIVATE_KEYS[1]).address,
        )


def offline_settings(database_url: str, rpc_url: str = "http://127.0.0.1:9") -> Settings:
    """An app with no contract deployed and no signer service (nothing listens on port 9
    unless a real node's URL is given)."""
    return Settings(
        database_url=database_url,
        redis_url=TEST_REDIS_URL,
        rpc_url=rpc_url,
        contract_address=OFFLINE_CONTRACT,
        company_wallet=Account.create().address,
        jwt_secret=SecretStr("test-only-jwt-secret-" + "x" * 32),
        rate_limit_default="100000/minute",
        rate_limit_auth="100000/minute",
        rate_limit_admin="100000/minute",
        rate_limit_wallet="100000/minute",
        log_json=False,
    )


@pytest.fixture(scope="module")
async def offline_app(database_url: str) -> AsyncIterator[FastAPI]:
    settings = offline_settings(database_url)
    engine = make_engine(database_url)
    await truncate_all(engine)
    async with unit_of_work(make_sessionmaker(engine)) as session:
        await seed(session, settings.company_wallet, current_plan())
    await engine.dispose()
    app = create_app(settings, signer=LocalSigner())
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def offline_api(offline_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=offline_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client
