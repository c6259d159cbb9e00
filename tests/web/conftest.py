"""The browser tests' stack: the API served by a real uvicorn (the pages and the API on one
origin), the listener and the settlement worker as real processes, on the test Anvil,
PostgreSQL and Redis; headless Debian chromium driven by Playwright; a test wallet injected
into each page as `window.ethereum`.

TEST-ONLY keys: every wallet here is a fresh random account funded with anvil_setBalance.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from redis import Redis
from web3 import Web3

from backend.app import create_app
from backend.core.settings import Settings
from devtools.processes import REPO_ROOT, free_port, stop_process
from tests.fixtures.services import new_wallet, settings_env

CHROMIUM = os.environ.get("AUTOPOOL_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
PAGES_BUILT = (REPO_ROOT / "web" / "dist" / "app" / "index.html").is_file()

# A page's first screen waits on several API calls: generous waits for a loaded CI machine.
expect.set_options(timeout=20_000)

# Every browser test: `pytestmark = BROWSER_TEST`.
BROWSER_TEST = [
    pytest.mark.chain,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no browser at {CHROMIUM}"),
]


@dataclass
class Staff:
    admin: LocalAccount
    auditor: LocalAccount


@pytest.fixture
def staff(w3: Web3) -> Staff:
    return Staff(admin=new_wallet(w3), auditor=new_wallet(w3))


@pytest.fixture
def web_settings(settings: Settings, staff: Staff) -> Settings:
    return settings.model_copy(
        update={"admin_wallets": staff.admin.address, "auditor_wallets": staff.auditor.address}
    )


@pytest.fixture
async def server(web_settings: Settings, seeded: int) -> AsyncIterator[str]:
    """The API (and with it /app and /admin) on a real uvicorn on loopback; its base URL."""
    if not PAGES_BUILT:
        pytest.fail("the web pages are not built: run `make compile`")
    app: FastAPI = create_app(web_settings)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    web = uvicorn.Server(config)
    task = asyncio.create_task(web.serve())
    while not web.started:  # uvicorn offers no event to wait on
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    web.should_exit = True
    await task


def _start(name: str, args: list[str], settings: Settings, log_dir: Path, **extra: str) -> Any:
    env = {**os.environ, **settings_env(settings), **extra}
    out = (log_dir / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=out, stderr=out)


@pytest.fixture
def listener(web_settings: Settings, tmp_path: Path) -> Iterator[None]:
    """The chain listener process: final registrations and payouts reach the ledger."""
    proc = _start(
        "listener", ["-m", "listener"], web_settings, tmp_path, AUTOPOOL_LISTENER_POLL_SECONDS="0.2"
    )
    yield
    stop_process(proc)


@pytest.fixture
def settlement_worker(web_settings: Settings, tmp_path: Path) -> Iterator[None]:
    """The settlement worker's Dramatiq process, on an empty queue (a stale message of an
    earlier test would act on its own batches). Its schedule is left out: here the admin
    drives every step from the page."""
    with Redis.from_url(web_settings.redis_url) as redis:
        redis.flushdb()
    proc = _start(
        "worker",
        [
            "-m",
            "dramatiq",
            "backend.payouts.tasks",
            "backend.treasury.tasks",
            "--processes",
            "1",
            "--threads",
            "2",
            "--queues",
            "settlement",
        ],
        web_settings,
        tmp_path,
    )
    yield
    stop_process(proc)


class ChainClock:
    """Anvil mines a block per transaction only; finality needs blocks after it. The clock
    mines one block every `interval` seconds while it runs."""

    def __init__(self, w3: Web3, interval: float = 0.5) -> None:
        self.w3 = w3
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.w3.provider.make_request, "evm_mine", [])  # type: ignore[arg-type]
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


@pytest.fixture
async def chain_clock(w3: Web3) -> AsyncIterator[ChainClock]:
    clock = ChainClock(w3)
    yield clock
    await clock.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        await chromium.close()


# The page's `window.ethereum`: every request goes to the Python wallet below.
WALLET_JS = """
(() => {
  const request = async ({ method, params }) => {
    const answer = JSON.parse(await window.__testWallet(method, JSON.stringify(params ?? [])));
    if (answer.error) {
      const error = new Error(answer.error.message);
      error.code = answer.error.code;
      throw error;
    }
    return answer.result;
  };
  window.ethereum = { isTestWallet: true, request, on() {}, removeListener() {} };
})();
"""


def wallet_handler(w3: Web3, acct: LocalAccount) -> Callable[[str, str], Awaitable[str]]:
    """An EIP-1193 wallet for `acct` (TEST-ONLY key): accounts, chain id, personal_sign, and
    eth_sendTransaction signed with eth-account and sent raw to Anvil."""

    def send(tx: dict[str, Any]) -> str:
        full: dict[str, Any] = {
            "from": acct.address,
            "to": Web3.to_checksum_address(tx["to"]),
            "data": tx.get("data", "0x"),
            "value": int(tx.get("value", "0x0"), 16),
            "chainId": int(tx.get("chainId", hex(w3.eth.chain_id)), 16),
            "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
            "gasPrice": w3.eth.gas_price,
        }
        full["gas"] = w3.eth.estimate_gas(full)  # type: ignore[arg-type]
        signed = acct.sign_transaction(full)
        return w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()

    async def handle(method: str, params_json: str) -> str:
        params = json.loads(params_json)
        try:
            if method in ("eth_requestAccounts", "eth_accounts"):
                result: Any = [acct.address]
            elif method == "eth_chainId":
                result = hex(await asyncio.to_thread(lambda: w3.eth.chain_id))
            elif method == "personal_sign":
                message = bytes.fromhex(params[0].removeprefix("0x"))
                signature = acct.sign_message(encode_defunct(primitive=message)).signature
                result = "0x" + signature.hex().removeprefix("0x")
            elif method == "eth_sendTransaction":
                result = await asyncio.to_thread(send, params[0])
            else:
                return json.dumps({"error": {"code": 4200, "message": f"unsupported {method}"}})
        except Exception as exc:
            return json.dumps({"error": {"code": -32603, "message": str(exc)}})
        return json.dumps({"result": result})

    return handle


OpenPage = Callable[[LocalAccount, str], Awaitable[Page]]


@pytest.fixture
async def open_page(browser: Browser, w3: Web3, server: str) -> AsyncIterator[OpenPage]:
    """A new browser context per wallet, with that wallet injected, at `server` + path."""
    contexts: list[BrowserContext] = []

    async def open_as(acct: LocalAccount, path: str) -> Page:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(30_000)
        contexts.append(context)
        await context.expose_function("__testWallet", wallet_handler(w3, acct))
        await context.add_init_script(WALLET_JS)
        page = await context.new_page()
        page.on("pageerror", lambda error: print(f"page error: {error}"))
        await page.goto(server + path)
        return page

    yield open_as
    for context in contexts:
        await context.close()


async def screenshot(page: Page, name: str) -> None:
    """Save the page (whole length) to artifacts/screenshots/<name>.png: CI keeps the folder."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
async def http(server: str) -> AsyncIterator[httpx.AsyncClient]:
    """A plain API client on the same server (for setting the scene the way a dapp would)."""
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        yield client
