"""The admin console (/admin) in headless Chromium, with a test wallet injected: an admin sees
the pending rewards, builds a batch, signs it, acknowledges the anomaly that holds payouts,
submits it (the settlement worker does each step) and sees it executed on chain; an auditor
reads the same console without its actions."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from playwright.async_api import expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.db import unit_of_work
from backend.models import Anomaly
from devtools import dapp
from devtools.wallet import send_as_wallet
from tests.fixtures.services import new_wallet
from tests.web.conftest import BROWSER_TEST, ChainClock, OpenPage, Staff, screenshot

pytestmark = BROWSER_TEST


async def register_confirmed(
    http: httpx.AsyncClient, w3: Web3, acct: LocalAccount, sponsor: str
) -> None:
    """`acct` registers under `sponsor` the way a dapp does, and the listener confirms it."""
    tokens = await dapp.sign_in(http, acct)
    r = await dapp.register(http, acct, sponsor, tokens)
    assert r.status_code == 200, r.text
    receipt: Any = await asyncio.to_thread(send_as_wallet, w3, acct, r.json()["tx"])
    assert receipt["status"] == 1
    async with asyncio.timeout(60):
        while True:
            me = await http.get("/users/me", headers=dapp.bearer(tokens))
            if me.json()["status"] == "active":
                return
            await asyncio.sleep(0.3)


async def test_an_admin_builds_signs_and_submits_a_batch_and_sees_it_executed(
    open_page: OpenPage,
    http: httpx.AsyncClient,
    listener: None,
    settlement_worker: None,
    chain_clock: ChainClock,
    w3: Web3,
    sessions: async_sessionmaker[AsyncSession],
    company: LocalAccount,
    staff: Staff,
) -> None:
    chain_clock.start()
    # Two participants, the second sponsored by the first: both sponsors earn rewards.
    first, second = new_wallet(w3), new_wallet(w3)
    await register_confirmed(http, w3, first, company.address)
    await register_confirmed(http, w3, second, first.address)
    # An open anomaly (moving no funds) holds every submission until someone acknowledges it:
    # the signed batch waits for the admin's Submit.
    async with unit_of_work(sessions) as session:
        anomaly = Anomaly(kind="unexpected-test", detail="set by the browser test", log={})
        session.add(anomaly)
        await session.flush()
        anomaly_id = anomaly.id

    page = await open_page(staff.admin, "/admin/")
    await page.get_by_role("button", name="Connect wallet").click()
    await expect(page.locator("#roles")).to_have_text("admin, participant")
    rewards = page.locator("#rewards tbody tr")
    await expect(rewards.first).to_contain_text("pending")
    await expect(page.locator("#treasury-balanced")).to_have_text("balanced")
    await screenshot(page, "admin-1-pending-rewards")

    await page.get_by_role("button", name="Build batch").click()
    await expect(page.locator("#message")).to_contain_text("built")
    batch = page.locator("#batches tbody tr").first
    await expect(batch).to_contain_text("built")
    await expect(page.locator("#rewards")).to_contain_text("No reward lines match.")
    await screenshot(page, "admin-2-batch-built")

    await batch.get_by_role("button", name="Sign").click()
    await expect(batch.locator(".badge")).to_have_text("signed", timeout=60_000)
    await screenshot(page, "admin-3-batch-signed")

    # The console says why payouts wait, and lists the anomaly to investigate.
    await expect(page.locator("#payouts-blocked")).to_contain_text("1 unacknowledged anomaly")
    row = page.locator("#anomalies tbody tr").first
    await expect(row).to_contain_text("unexpected-test")
    await row.get_by_role("button", name="Acknowledge…").click()
    await expect(page.get_by_label("acknowledge anomaly id")).to_have_value(str(anomaly_id))
    await page.get_by_label("what you found").fill("a test anomaly: nothing moved")
    await page.get_by_role("button", name="Acknowledge", exact=True).click()
    await expect(page.locator("#message")).to_contain_text(f"Anomaly {anomaly_id}")
    await expect(page.locator("#anomalies")).to_contain_text("No open anomaly.")
    await expect(page.locator("#payouts-blocked")).to_have_text("Payouts are not blocked.")
    await batch.get_by_role("button", name="Submit").click()
    await expect(batch.locator(".badge")).to_have_text("executed", timeout=90_000)
    await expect(page.locator("#treasury-balanced")).to_have_text("balanced")
    await screenshot(page, "admin-4-batch-executed")

    # The audit log shows each step, by this admin.
    await page.get_by_label("action").fill("payout.submit")
    await page.locator("#audit-filters").get_by_role("button", name="Filter").click()
    await expect(page.locator("#audit tbody tr")).to_have_count(1)
    await screenshot(page, "admin-5-audit-log")

    # An auditor reads the same console, with no action to take.
    desk = await open_page(staff.auditor, "/admin/")
    await desk.get_by_role("button", name="Connect wallet").click()
    await expect(desk.locator("#roles")).to_have_text("auditor, participant")
    await expect(desk.locator("#batches tbody tr").first.locator(".badge")).to_have_text("executed")
    await expect(desk.locator("#read-only")).to_be_visible()
    await expect(desk.get_by_role("button", name="Build batch")).to_be_hidden()
    await expect(desk.get_by_role("button", name="Freeze")).to_be_hidden()
    await screenshot(desk, "admin-6-auditor-read-only")
