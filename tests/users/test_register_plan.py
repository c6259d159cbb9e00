"""A registration carries the plan in force when it is asked for, also when a new version took
effect since this process last read which plan is in force (the one-statement registration
checks its guess and hands the request to the general path)."""

from __future__ import annotations

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from backend.core.db import unit_of_work
from backend.core.wiring import current_plan
from backend.plan.config import PlanConfig
from backend.plan_versions import service as plan_versions
from devtools import dapp
from tests.fixtures.ledger import grow_confirmed_tree

TREE = 15


async def test_a_new_plan_version_is_carried_by_the_next_registration(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], company: LocalAccount
) -> None:
    await grow_confirmed_tree(sessions, TREE)
    old = current_plan()
    first = await dapp.register(api, Account.create(), company.address)
    assert first.status_code == 200, first.text
    assert first.json()["payload"]["planHash"] == old.plan_hash_hex()
    assert int(first.json()["payload"]["amount"]) == old.level_prices[0]

    doubled = PlanConfig.model_validate(
        {
            **old.model_dump(mode="json"),
            "version": old.version + 1,
            "level_prices": [str(2 * p) for p in old.level_prices],
        }
    )
    async with unit_of_work(sessions) as s:
        await plan_versions.publish_version(s, doubled, None, "test")

    second = await dapp.register(api, Account.create(), company.address)
    assert second.status_code == 200, second.text
    payload = second.json()["payload"]
    assert payload["planHash"] == doubled.plan_hash_hex()
    assert int(payload["amount"]) == 2 * old.level_prices[0]
    assert int(second.json()["tx"]["value"]) == 2 * old.level_prices[0]
