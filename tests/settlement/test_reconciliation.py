"""The reconciliation job: stored, served, and a surplus reported apart from a deficit."""

from __future__ import annotations

import httpx
import pytest
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.db import unit_of_work
from backend.core.security import Role
from backend.core.settings import Settings
from backend.core.wiring import open_resources
from backend.ledger import surplus
from backend.models import ChainEvent, ReconciliationReport, Reward, SurplusCredit, User
from backend.monitoring import service as monitoring
from backend.payouts import service as payouts
from backend.treasury import service
from listener.sync import ChainSync
from tests.fixtures.flows import sponsor_chain
from tests.fixtures.services import Deployment, token_for
from tests.fixtures.wallets import mine


async def reconcile(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with open_resources(settings) as res, unit_of_work(sessions) as s:
        await service.reconcile(s, res.w3, settings.contract_address)


async def test_a_sound_ledger_reconciles_to_zero_after_payouts_and_is_served(
    app: FastAPI,
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 3)
    async with open_resources(settings) as res:
        await payouts.run_cycle(res, created_by="test")
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()
    await reconcile(settings, sessions)

    r = await api.get("/monitoring/reconciliation")
    assert r.status_code == 401
    r = await api.get(
        "/monitoring/reconciliation", headers=token_for(app, 1, company.address, Role.AUDITOR)
    )
    assert r.status_code == 200, r.text
    latest = r.json()["latest"]
    assert latest["ok"] is True and latest["difference"] == 0 and latest["surplus"] == "0"
    assert int(latest["contractBalance"]) == int(latest["liabilities"])
    assert latest["recipientMismatches"] == []


def force_bnb(w3: Web3, address: str, wei: int) -> None:
    """BNB that reaches the contract without an event, as SELFDESTRUCT does."""
    w3.provider.make_request(  # type: ignore[arg-type]
        "anvil_setBalance", [address, hex(w3.eth.get_balance(address) + wei)]
    )


async def latest_report(settings: Settings) -> ReconciliationReport:
    async with open_resources(settings) as res, res.sessions() as s:
        (report,) = await monitoring.reconciliation_reports(s, 1)
    return report


async def company_lines(sessions: async_sessionmaker[AsyncSession], company: str) -> list[Reward]:
    async with sessions() as s:
        rows = await s.scalars(
            select(Reward)
            .join(User, User.id == Reward.user_id)
            .where(User.wallet == company, Reward.surplus_credit_id.is_not(None))
        )
        return list(rows)


# The forced BNB is on chain without an event: the chain-side invariants would (rightly) flag it.
@pytest.mark.chain_diverged
async def test_a_surplus_is_credited_to_the_company_once_and_cannot_hide_a_deficit(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    forced = 3 * 10**18
    force_bnb(w3, deployment.contract.address, forced)
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()  # the range in which it appeared credits it
    await reconcile(settings, sessions)
    report = await latest_report(settings)
    assert (report.surplus, report.surplus_credited, report.difference, report.ok) == (
        forced,
        forced,
        0,
        True,
    )
    (line,) = await company_lines(sessions, company.address)
    assert (int(line.amount), line.status, line.kind, line.reason) == (
        forced,
        "pending",
        "COMPANY",
        "surplus",
    )
    async with sessions() as s:
        credit = await s.get(SurplusCredit, line.surplus_credit_id)
    assert credit is not None and int(credit.amount) == forced
    assert "beyond what its events account for" in credit.reason

    # Credited once: later ranges find nothing new.
    mine(w3, 3)
    await chain_sync.sync_once()
    await reconcile(settings, sessions)
    report = await latest_report(settings)
    assert (report.surplus, report.surplus_credited, report.difference, report.ok) == (
        forced,
        forced,
        0,
        True,
    )
    assert len(await company_lines(sessions, company.address)) == 1

    # The ledger now claims more than it owes on chain (a deficit the size of the surplus):
    # the surplus is subtracted first, so the deficit shows, and nothing more is credited.
    async with unit_of_work(sessions) as s:
        await s.execute(update(Reward).where(Reward.id == 1).values(amount=Reward.amount + forced))
    await reconcile(settings, sessions)
    report = await latest_report(settings)
    assert (report.surplus, report.deficit, report.ok) == (forced, forced, False)
    assert len(await company_lines(sessions, company.address)) == 1
    async with unit_of_work(sessions) as s:  # leave the ledger as the chain made it
        await s.execute(update(Reward).where(Reward.id == 1).values(amount=Reward.amount - forced))


@pytest.mark.chain_diverged
async def test_a_credited_surplus_is_paid_to_the_company_and_the_books_still_balance(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
) -> None:
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    # More than the rewards held back (held, reserved), so paying it must draw on the surplus.
    forced = 50 * 10**18
    force_bnb(w3, deployment.contract.address, forced)
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()
    (line,) = await company_lines(sessions, company.address)
    assert int(line.amount) == forced

    async with open_resources(settings) as res:
        await payouts.run_cycle(res, created_by="test")
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()
    (line,) = await company_lines(sessions, company.address)
    assert line.status == "paid"
    await reconcile(settings, sessions)
    report = await latest_report(settings)
    # The batch drew on the surplus (`SurplusDrawn`), the ledger owes nothing for the credit,
    # each recipient's payouts match, and nothing is credited twice.
    async with sessions() as s:
        drawn = await s.scalar(select(func.count()).where(ChainEvent.name == "SurplusDrawn"))
    assert drawn == 1
    assert (report.difference, report.ok) == (0, True)
    assert report.surplus == report.surplus_credited  # nothing uncredited, nothing twice
    assert len(await company_lines(sessions, company.address)) == 1
    assert report.recipient_mismatches == []
    assert int(report.contract_balance) == int(report.liabilities)


# Credits a surplus the chain does not hold: the chain-side invariants would (rightly) flag it.
@pytest.mark.chain_diverged
async def test_a_surplus_of_one_wei_is_credited_once_and_none_is_not(
    api: httpx.AsyncClient,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
) -> None:
    async with unit_of_work(sessions) as s:
        assert await surplus.credit_new(s, 0, 5, 6) == 0
        assert await surplus.credit_new(s, 1, 5, 6) == 1
        assert await surplus.credit_new(s, 1, 7, 8) == 0  # the same wei: already credited
    (line,) = await company_lines(sessions, company.address)
    assert int(line.amount) == 1
    async with sessions() as s:
        credit = await s.get(SurplusCredit, line.surplus_credit_id)
    assert credit is not None and "blocks 5-6" in credit.reason


@pytest.mark.chain_diverged
async def test_a_surplus_that_appears_with_a_payout_names_the_batch(
    api: httpx.AsyncClient,
    w3: Web3,
    chain_sync: ChainSync,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    settings: Settings,
    deployment: Deployment,
) -> None:
    """BNB that arrives in the same blocks as a payout (as a recipient returning it would) is
    credited with a reason naming the batches executed there, for the operator to look at."""
    await sponsor_chain(api, w3, chain_sync, company.address, 2)
    async with open_resources(settings) as res:
        await payouts.run_cycle(res, created_by="test")
    force_bnb(w3, deployment.contract.address, 10**15)
    mine(w3, chain_sync.confirmations)
    await chain_sync.sync_once()
    async with sessions() as s:
        executed = list(
            await s.scalars(select(ChainEvent).where(ChainEvent.name == "BatchExecuted"))
        )
        (credit,) = list(await s.scalars(select(SurplusCredit)))
    assert executed and int(credit.amount) == 10**15
    batch_ids = ", ".join(str(e.args["batchId"]) for e in executed)
    assert credit.reason.endswith(f"; payout batches executed in those blocks: {batch_ids}")
    assert credit.reason.startswith(f"{10**15} wei held by the contract beyond")
