"""The reference dapp page (/app) in headless Chromium, with a test wallet injected: a
participant signs in, registers under the company wallet, and sees the placement pending and
then confirmed once the chain has made it final."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from playwright.async_api import expect
from web3 import Web3

from tests.fixtures.services import new_wallet
from tests.web.conftest import BROWSER_TEST, ChainClock, OpenPage, screenshot

pytestmark = BROWSER_TEST


async def test_a_participant_registers_and_sees_the_placement_go_pending_then_confirmed(
    open_page: OpenPage,
    listener: None,
    chain_clock: ChainClock,
    w3: Web3,
    company: LocalAccount,
) -> None:
    participant = new_wallet(w3)
    page = await open_page(participant, "/app/")
    await expect(page.get_by_role("button", name="Connect wallet")).to_be_visible()
    await screenshot(page, "app-1-signed-out")

    await page.get_by_role("button", name="Connect wallet").click()
    await expect(page.locator("#wallet")).to_have_text(participant.address)
    await expect(page.locator("#placement-state")).to_have_text("not registered")
    # The sponsor defaults to the company wallet the plan names.
    await expect(page.get_by_label("Sponsor wallet")).to_have_value(company.address)
    await screenshot(page, "app-2-signed-in")

    # No block is mined after the registration's own, so it cannot be final yet.
    await page.get_by_role("button", name="Register").click()
    await expect(page.locator("#placement-state")).to_have_text("pending", timeout=30_000)
    await expect(page.locator("#placement-detail")).to_contain_text("slot 1")
    await expect(page.locator("#placement-detail")).to_contain_text("included")
    await screenshot(page, "app-3-placement-pending")

    chain_clock.start()  # blocks on top of it: final after the confirmation depth
    await expect(page.locator("#placement-state")).to_have_text("confirmed", timeout=60_000)
    await expect(page.locator("#placement-detail")).to_have_text("level 1, slot 1")
    await expect(page.locator("#status")).to_have_text("active")
    positions = page.locator("#positions tbody tr")
    await expect(positions).to_have_count(1)
    await expect(positions.first.locator("td")).to_have_text(["1", "1", "0 / 14", "no", "0 BNB"])
    await expect(page.get_by_role("button", name="Register")).to_be_hidden()
    await screenshot(page, "app-4-placement-confirmed")
