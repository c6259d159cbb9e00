"""The devnet demo scenario: many wallets using the public API exactly as a dapp would.

Each wallet signs in with SIWE, asks `POST /users/register` for its signed payload and sends the
returned `tx` itself; many wallets do so at once (a slot whose parent is not final yet answers
503 `slot-unavailable` with Retry-After, and the wallet retries). Then some participants retop
up, some are frozen (and some of those unfrozen again), an operator builds, signs and submits
payout batches until nothing is left to pay, and the summary is read back from the API and the
chain: every figure shown is derived from the ledger or the chain.

DEV/TEST ONLY: wallets are created on the fly and funded with `anvil_setBalance` (Anvil) or
`hardhat_setBalance` (a Hardhat node).
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from web3 import AsyncHTTPProvider, AsyncWeb3

FUNDING_WEI = 1_000 * 10**18
TERMINAL = {"executed", "expired", "failed"}


@dataclass
class Wallet:
    acct: LocalAccount
    token: str = ""
    user_id: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Report:
    registered: int = 0
    retopups: int = 0
    withdrawals: int = 0
    frozen: list[int] = field(default_factory=list)
    unfrozen: list[int] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    gas: dict[int, int] = field(default_factory=dict)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


class Dapp:
    """One API client and one chain client shared by every simulated wallet."""

    def __init__(self, api: str, rpc_url: str, seed: int = 1) -> None:
        self.http = httpx.AsyncClient(base_url=api, timeout=60)
        self.w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url))
        self.rng = random.Random(seed)
        self._set_balance: str | None = None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def sign_in(self, wallet: Wallet) -> None:
        r = await self.http.get("/auth/nonce", params={"wallet": wallet.acct.address})
        r.raise_for_status()
        nonce = r.json()
        sig = wallet.acct.sign_message(encode_defunct(text=nonce["message"])).signature
        r = await self.http.post(
            "/auth/wallet",
            json={
                "wallet": wallet.acct.address,
                "signature": "0x" + sig.hex(),
                "nonce": nonce["nonce"],
            },
        )
        r.raise_for_status()
        body = r.json()
        wallet.token = body["accessToken"]
        wallet.user_id = int(body["user"]["id"]) if body["user"].get("id") else 0

    async def call(
        self, method: str, path: str, wallet: Wallet, json: Any = None, attempts: int = 120
    ) -> httpx.Response:
        """An authenticated call; 503 and 429 answers are retried after their Retry-After, and
        a dropped connection (a keep-alive connection the server closed as it was reused)
        after a moment, as wallets do. Every call the scenario makes is safe to repeat."""
        for attempt in range(attempts):
            try:
                r = await self.http.request(method, path, json=json, headers=wallet.headers)
            except httpx.TransportError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.5)
                continue
            if r.status_code not in (429, 503):
                return r
            await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))
        return r

    async def send(self, wallet: Wallet, tx: dict[str, Any]) -> dict[str, Any]:
        """Sign and send the `{to, data, value, chainId}` the API returned; its receipt."""
        acct = wallet.acct
        full: dict[str, Any] = {
            "from": acct.address,
            "to": AsyncWeb3.to_checksum_address(tx["to"]),
            "data": tx["data"],
            "value": int(tx["value"]),
            "chainId": int(tx["chainId"]),
            "nonce": await self.w3.eth.get_transaction_count(acct.address, "pending"),
            "gasPrice": await self.w3.eth.gas_price,
        }
        full["gas"] = await self.w3.eth.estimate_gas(full)  # type: ignore[arg-type]
        signed = acct.sign_transaction(full)
        tx_hash = await self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = await self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise RuntimeError(f"{acct.address}: transaction {tx_hash.hex()} reverted")
        return dict(receipt)

    async def fund(self, wallet: Wallet) -> None:
        if self._set_balance is None:  # Anvil's method, or a Hardhat node's
            version = str(await self.w3.client_version)
            hardhat = version.lower().startswith("hardhat")
            self._set_balance = "hardhat_setBalance" if hardhat else "anvil_setBalance"
        await self.w3.provider.make_request(
            self._set_balance,  # type: ignore[arg-type]
            [wallet.acct.address, hex(FUNDING_WEI)],
        )

    async def me(self, wallet: Wallet) -> dict[str, Any]:
        r = await self.call("GET", "/users/me", wallet)
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        wallet.user_id = int(body["id"])
        return body

    async def wait_for(self, predicate: Any, what: str, seconds: float = 180) -> Any:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            value = await predicate()
            if value:
                return value
            await asyncio.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}")


async def register_all(dapp: Dapp, company: str, count: int, concurrency: int) -> list[Wallet]:
    """`count` wallets registered at once (at most `concurrency` in flight), each under a
    sponsor drawn from the company and the wallets registered before it."""
    wallets: list[Wallet] = []
    sponsors = [company]
    gate = asyncio.Semaphore(concurrency)
    with progress() as bar:
        task = bar.add_task("registering wallets", total=count)

        async def one() -> None:
            async with gate:
                wallet = Wallet(Account.create())
                sponsor = dapp.rng.choice(sponsors)
                await dapp.fund(wallet)
                await dapp.sign_in(wallet)
                r = await dapp.call("POST", "/users/register", wallet, {"referrer": sponsor})
                for _ in range(120):  # a sponsor whose own registration is not final yet
                    if r.status_code != 422 or "referrer-not-active" not in r.text:
                        break
                    await asyncio.sleep(0.5)
                    r = await dapp.call("POST", "/users/register", wallet, {"referrer": sponsor})
                if r.status_code != 200:
                    raise RuntimeError(f"register: {r.status_code} {r.text}")
                await dapp.send(wallet, r.json()["tx"])
                wallets.append(wallet)
                sponsors.append(wallet.acct.address)
                bar.advance(task)

        await asyncio.gather(*(one() for _ in range(count)))
    return wallets


async def level_nodes(dapp: Dapp) -> dict[int, dict[str, Any]]:
    r = await dapp.http.get("/pool/summary")
    r.raise_for_status()
    return {int(level["level"]): level for level in r.json()["levels"]}


async def wait_confirmed(dapp: Dapp, nodes: int) -> None:
    """Until level 1 holds `nodes` confirmed nodes (the listener settled every registration)."""

    async def done() -> bool:
        return int((await level_nodes(dapp))[1]["nodes"]) >= nodes

    await dapp.wait_for(done, f"the listener to confirm {nodes} level-1 nodes")


async def retopups(dapp: Dapp, wallets: list[Wallet], count: int, concurrency: int = 32) -> int:
    """`count` distinct wallets retop up at once (up to `concurrency` in flight), as many
    dapps would."""
    gate = asyncio.Semaphore(concurrency)
    with progress() as bar:
        task = bar.add_task("retopups", total=count)

        async def one(wallet: Wallet) -> None:
            async with gate:
                await dapp.me(wallet)
                r = await dapp.call("POST", f"/users/{wallet.user_id}/retopup", wallet)
                if r.status_code != 200:
                    raise RuntimeError(f"retopup: {r.status_code} {r.text}")
                await dapp.send(wallet, r.json()["tx"])
                bar.advance(task)

        chosen = dapp.rng.sample(wallets, min(count, len(wallets)))
        await asyncio.gather(*(one(w) for w in chosen))
    return len(chosen)


async def set_frozen(dapp: Dapp, admin: Wallet, user_id: int, frozen: bool) -> None:
    verb = "freeze" if frozen else "unfreeze"
    r = await dapp.call(
        "POST", f"/admin/users/{user_id}/{verb}", admin, {"reason": f"devnet demo {verb}"}
    )
    if r.status_code != 200:
        raise RuntimeError(f"{verb} {user_id}: {r.status_code} {r.text}")


async def batches_in_flight(dapp: Dapp, operator: Wallet) -> list[dict[str, Any]]:
    r = await dapp.call("GET", "/payouts?limit=100", operator)
    r.raise_for_status()
    return [b for b in r.json()["items"] if b["status"] not in TERMINAL]


async def drive_batch(dapp: Dapp, operator: Wallet, batch_id: int) -> dict[str, Any]:
    """Ask the worker to sign and submit a batch (it may already be doing so on its own
    schedule) and wait until the listener has seen it executed."""
    await dapp.call("POST", f"/payouts/{batch_id}/sign", operator)  # 202, or 409 if past it
    loop = asyncio.get_running_loop()
    deadline, submitted = loop.time() + 180, False
    while loop.time() < deadline:
        r = await dapp.call("GET", f"/payouts/{batch_id}", operator)
        batch: dict[str, Any] = r.json()
        if batch["status"] in TERMINAL:
            return batch
        if batch["status"] == "signed" and not submitted:
            await dapp.call("POST", f"/payouts/{batch_id}/submit", operator)
            submitted = True
        await asyncio.sleep(0.5)
    raise RuntimeError(f"batch {batch_id} did not execute in time")


async def pay_out(dapp: Dapp, operator: Wallet, report: Report, max_batches: int = 100) -> None:
    """Build batches until nothing is left to pay; every batch (the operator's, and any the
    worker built on its schedule) is seen executed."""
    seen = {int(b["id"]) for b in report.batches}
    for _ in range(max_batches):
        r = await dapp.call("POST", "/payouts/build-batch", operator, {})
        if r.status_code in (200, 201, 202):
            ids = [int(r.json()["id"])]
        elif r.status_code == 409 and r.json().get("type", "").endswith("nothing-to-pay"):
            ids = []
        else:
            raise RuntimeError(f"build-batch: {r.status_code} {r.text}")
        ids += [int(b["id"]) for b in await batches_in_flight(dapp, operator)]
        if not ids:
            return
        for batch_id in dict.fromkeys(ids):
            batch = await drive_batch(dapp, operator, batch_id)
            if batch_id in seen:
                continue
            seen.add(batch_id)
            if batch["status"] != "executed":
                raise RuntimeError(f"batch {batch_id} ended {batch['status']}")
            report.batches.append(batch)
            if batch.get("txHash"):
                receipt = await dapp.w3.eth.get_transaction_receipt(batch["txHash"])
                report.gas[batch_id] = int(receipt["gasUsed"])
    raise RuntimeError(f"still paying after {max_batches} batches")


async def withdraw(dapp: Dapp, wallets: list[Wallet], count: int) -> int:
    """Up to `count` participants with pending rewards ask for them now (served by an
    immediate batch of their own). The worker's schedule may have batched them first: a 409
    (nothing pending any more) or 403 (frozen) is a fine answer too."""
    asked = 0
    for wallet in dapp.rng.sample(wallets, min(count * 5, len(wallets))):
        if asked >= count:
            break
        me = await dapp.me(wallet)
        if int(me["balances"]["byStatus"].get("pending", 0)) == 0:
            continue
        r = await dapp.call("POST", "/users/withdraw", wallet)
        if r.status_code == 202:
            asked += 1
        elif r.status_code not in (403, 409):
            raise RuntimeError(f"withdraw: {r.status_code} {r.text}")
    return asked


async def run(
    api: str,
    rpc_url: str,
    company_key: str,
    admin_key: str,
    participants: int,
    concurrency: int = 32,
    seed: int = 1,
) -> tuple[Report, dict[str, Any]]:
    """The whole scenario; returns what it did and the summary it read back."""
    dapp = Dapp(api, rpc_url, seed)
    report = Report()
    try:
        company = Wallet(Account.from_key(company_key))
        admin = Wallet(Account.from_key(admin_key))
        await dapp.sign_in(admin)
        wallets = await register_all(dapp, company.acct.address, participants, concurrency)
        report.registered = len(wallets)
        await wait_confirmed(dapp, participants + 1)

        report.retopups = await retopups(dapp, wallets, max(1, participants // 20), concurrency)
        for wallet in dapp.rng.sample(wallets, min(3, len(wallets))):
            await dapp.me(wallet)
            await set_frozen(dapp, admin, wallet.user_id, True)
            report.frozen.append(wallet.user_id)
        # More registrations while some sponsors are frozen: their rewards are held.
        more = await register_all(
            dapp, company.acct.address, max(1, participants // 10), concurrency
        )
        wallets += more
        report.registered += len(more)
        await wait_confirmed(dapp, report.registered + 1)
        report.withdrawals = await withdraw(dapp, wallets, max(1, participants // 20))
        await pay_out(dapp, admin, report)
        for user_id in report.frozen[:-1]:
            await set_frozen(dapp, admin, user_id, False)
            report.unfrozen.append(user_id)
        await pay_out(dapp, admin, report)
        # Every batch, the operator's and the worker's scheduled ones, with its gas.
        r = await dapp.call("GET", "/payouts?limit=200", admin)
        report.batches = sorted(r.json()["items"], key=lambda b: int(b["id"]))
        for b in report.batches:
            if b.get("txHash") and b["status"] == "executed":
                receipt = await dapp.w3.eth.get_transaction_receipt(b["txHash"])
                report.gas[int(b["id"])] = int(receipt["gasUsed"])
        await dapp.sign_in(company)
        summary = await read_summary(dapp, [company, *wallets])
        r = await dapp.call("GET", "/monitoring/reconciliation", admin)
        summary["reconciliation"] = r.json().get("latest") if r.status_code == 200 else None
    finally:
        await dapp.aclose()
    return report, summary


async def read_summary(dapp: Dapp, wallets: list[Wallet]) -> dict[str, Any]:
    """Figures as the API serves them: pool levels, every participant's rewards by type and
    status (each from its own `/users/me`), the treasury's reconciliation."""
    rewards: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    gate = asyncio.Semaphore(16)

    async def add(wallet: Wallet) -> None:
        async with gate:
            me = await dapp.me(wallet)
        for kind, by_status in me["balances"]["byType"].items():
            for status, total in by_status.items():
                rewards[kind][status] += int(total)

    await asyncio.gather(*(add(w) for w in wallets))
    r = await dapp.http.get("/treasury/summary")
    r.raise_for_status()
    return {
        "levels": await level_nodes(dapp),
        "rewards": {k: dict(v) for k, v in rewards.items()},
        "treasury": r.json(),
    }


def print_summary(report: Report, summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    eth = 10**18

    def bnb(wei: int) -> str:
        return f"{wei / eth:,.4f}"  # display only; the wei figures are exact

    pool = Table(title="Pool")
    for col in ("level", "nodes", "completed matrices", "auto-progressions", "queue"):
        pool.add_column(col, justify="right")
    for level, row in sorted(summary["levels"].items()):
        if int(row["nodes"]):
            pool.add_row(
                str(level),
                str(row["nodes"]),
                str(row["completedMatrices"]),
                str(row["autoProgressions"]),
                str(row["queue"]),
            )
    console.print(
        f"participants registered: {report.registered}, retopups: {report.retopups}, "
        f"withdraw requests: {report.withdrawals}, "
        f"frozen: {len(report.frozen)} (unfrozen again: {len(report.unfrozen)})"
    )
    console.print(pool)

    statuses = sorted({s for by in summary["rewards"].values() for s in by})
    rewards = Table(title="Rewards (BNB) by type and status")
    rewards.add_column("type")
    for status in statuses:
        rewards.add_column(status, justify="right")
    for kind, by in sorted(summary["rewards"].items()):
        rewards.add_row(kind, *(bnb(by.get(s, 0)) for s in statuses))
    console.print(rewards)

    batches = Table(title="Payout batches")
    for col in ("batch", "status", "recipients", "total (BNB)", "gas", "gas/recipient"):
        batches.add_column(col, justify="right")
    for b in report.batches:
        gas = report.gas.get(int(b["id"]), 0)
        batches.add_row(
            str(b["id"]),
            b["status"],
            str(b["recipientCount"]),
            bnb(int(b["total"])),
            f"{gas:,}",
            f"{gas // max(1, int(b['recipientCount'])):,}",
        )
    console.print(batches)

    t = summary["treasury"]
    recon = Table(title=f"Reconciliation at block {t['block']}")
    recon.add_column("")
    recon.add_column("wei", justify="right")
    recon.add_row("contract balance", str(t["contract_balance"]))
    recon.add_row("inflows - outflows", str(int(t["inflows"]) - int(t["outflows"])))
    for bucket, wei in t["liabilities"].items():
        recon.add_row(f"liabilities: {bucket}", str(wei))
    recon.add_row("difference (contract - ledger)", str(t["ledger_difference"]))
    console.print(recon)
    job = summary.get("reconciliation")
    if job:
        console.print(
            f"last reconciliation job: block {job['block']}, surplus {job['surplus']} wei, "
            f"difference {job['difference']} wei, recipient mismatches "
            f"{len(job['recipientMismatches'])}, ok={job['ok']}"
        )
