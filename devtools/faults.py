"""`python -m devtools.faults`: the whole system under faults — nothing lost, nothing paid
twice (issue 14).

Starts the stack as separate processes on Anvil (signer, two API replicas, the listener, the
settlement worker, a fresh database and its own redis-server), drives it through the public API
as dapps do (registrations, retopups, freezes and unfreezes, withdraw requests, payout
batches; requests spread over both replicas, retried on connection errors and 503 like real
wallets), while a fault injector, at moments drawn from `--seed`, SIGKILLs and restarts each
process, reorganises the chain inside the non-final window, restarts Redis, terminates the
stack's PostgreSQL connections, takes the signer away for several seconds and leaves a
settlement transaction stuck under a base-fee spike until the worker bumps it.

Then it drains and checks, from the chain's own logs and plain SQL (no ledger code): the
contract balance and claimable bucket against the ledger to the wei, every recipient's
on-chain payouts against their settled rewards, nothing payable left unpaid, every on-chain
registration in the ledger exactly once, and no process wedged. A failure prints the seed and
the first difference and exits 1.

TEST/DEV ONLY: the public Anvil keys, `anvil_*`/`evm_*` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from eth_account import Account
from rich.console import Console
from rich.table import Table
from web3 import Web3
from web3.exceptions import TimeExhausted

from devtools import scenario
from devtools.anvil import DEV_PRIVATE_KEYS
from devtools.replicas import ReplicaTransport, problem_type
from devtools.scenario import Dapp, Report, Wallet
from devtools.stack import (
    ADMIN_KEY,
    COMPANY_KEY,
    SENDER_KEY,
    RedisServer,
    Stack,
    local_stack,
    wait_http,
)

console = Console(width=120)
# Blocks below the head before the listener settles an event. A reorg replaces at most
# REORG_MAX_BLOCKS blocks, well inside this window, so it never reaches a final block.
CONFIRMATIONS = 6
REORG_MAX_BLOCKS = 3
# The reorg that drops a settlement transaction waits for the worker to see it mined.
SETTLEMENT_REORG_MAX_BLOCKS = CONFIRMATIONS - 1
START = time.monotonic()

FAULT_COUNTS = {
    "kill-listener": 3,
    "kill-worker": 3,
    "kill-api": 3,
    "kill-signer": 2,
    "signer-outage": 1,
    "reorg": 2,
    "reorg-settlement": 1,
    "redis-restart": 2,
    "pg-terminate": 3,
    "stuck-tx": 1,
}


def say(msg: str) -> None:
    print(f"[faults {time.monotonic() - START:6.1f}s] {msg}", flush=True)


def topic(signature: str) -> str:
    return "0x" + Web3.keccak(text=signature).hex().removeprefix("0x")


T_REGISTRATION = topic("RegistrationAccepted(address,address,uint256,uint256,bytes32,uint256)")
T_PAID = topic("PayoutExecuted(uint256,address,uint256)")
T_DEFERRED = topic("PayoutDeferred(uint256,address,uint256)")
T_CLAIMED = topic("Claimed(address,uint256)")
T_CLAIMED_TO = topic("ClaimedTo(address,address,uint256)")
T_BATCH = topic("BatchExecuted(uint256,uint256,uint256,uint256)")


class CheckFailed(Exception):
    """A guarantee does not hold: the message is the first difference found."""


class Chain:
    """Raw JSON-RPC to Anvil (no web3 formatters: the checks share no code with the ledger)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=30)

    async def rpc(self, method: str, *params: Any) -> Any:
        r = await self.http.post(
            "", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        )
        body = r.json()
        if "error" in body:
            raise RuntimeError(f"{method}: {body['error']}")
        return body["result"]

    async def head(self) -> int:
        return int(await self.rpc("eth_blockNumber"), 16)

    async def logs(self, address: str, to_block: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        step = 5_000
        for start in range(0, to_block + 1, step):
            out += await self.rpc(
                "eth_getLogs",
                {
                    "address": address,
                    "fromBlock": hex(start),
                    "toBlock": hex(min(to_block, start + step - 1)),
                },
            )
        return out

    async def call_uint(self, to: str, data: str, block: int) -> int:
        return int(await self.rpc("eth_call", {"to": to, "data": data}, hex(block)), 16)

    async def aclose(self) -> None:
        await self.http.aclose()


def selector(signature: str) -> str:
    return "0x" + Web3.keccak(text=signature).hex().removeprefix("0x")[:8]


def addr_topic(value: str) -> str:
    return Web3.to_checksum_address("0x" + value[-40:])


@dataclass
class Sent:
    wallet: str
    raw: bytes
    settled: bool = False


class FaultDapp(Dapp):
    """The scenario's dapp over both API replicas (retrying like a wallet), whose wallets
    remember every transaction they signed and broadcast it again if a reorg drops it."""

    def __init__(self, urls: list[str], rpc_url: str, seed: int) -> None:
        super().__init__(urls[0], rpc_url, seed)
        self.transport = ReplicaTransport(urls)
        self.http = httpx.AsyncClient(base_url="http://api", transport=self.transport, timeout=60)
        self.sent: dict[str, Sent] = {}
        self.rebroadcasts = 0
        self.signin_restarts = 0

    async def sign_in(self, wallet: Wallet) -> None:
        """SIWE as the scenario does it; a sign-in whose nonce was consumed by an attempt the
        client never heard back from (a connection lost after the nonce's commit: the API
        consumes it whatever the outcome) is started again with a new nonce, as a dapp does
        on 401 `nonce-invalid`."""
        for attempt in range(5):
            try:
                await super().sign_in(wallet)
                return
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 401 or attempt == 4:
                    raise
                self.signin_restarts += 1

    async def call(
        self, method: str, path: str, wallet: Wallet, json: Any = None, attempts: int = 120
    ) -> httpx.Response:
        """An authenticated call; an expired access token (a long run outlives its 10
        minutes) is renewed by signing in again, as a dapp does."""
        r = await super().call(method, path, wallet, json, attempts)
        if r.status_code == 401 and "expired" in r.text:
            await self.sign_in(wallet)
            r = await super().call(method, path, wallet, json, attempts)
        return r

    async def refund(self, address: str) -> None:
        """A reorg also reverts `anvil_setBalance`: the wallet is funded again."""
        await self.w3.provider.make_request(
            "anvil_setBalance",  # type: ignore[arg-type]
            [address, hex(scenario.FUNDING_WEI)],
        )

    async def broadcast(self, raw: bytes, address: str) -> None:
        for _ in range(2):
            try:
                await self.w3.eth.send_raw_transaction(raw)
                return
            except Exception as exc:
                text = str(exc).lower()
                if "insufficient funds" in text:
                    await self.refund(address)
                    continue
                # Already in the pool or mined; priced under a base-fee spike: it waits.
                if not any(
                    s in text
                    for s in (
                        "already known",
                        "already imported",
                        "nonce too low",
                        "base fee",
                        "underpriced",
                    )
                ):
                    raise
                return

    async def send(self, wallet: Wallet, tx: dict[str, Any]) -> dict[str, Any]:
        acct = wallet.acct
        full: dict[str, Any] = {
            "from": acct.address,
            "to": Web3.to_checksum_address(tx["to"]),
            "data": tx["data"],
            "value": int(tx["value"]),
            "chainId": int(tx["chainId"]),
            "nonce": await self.w3.eth.get_transaction_count(acct.address, "pending"),
            "gasPrice": await self.w3.eth.gas_price,
        }
        try:
            estimate = await self.w3.eth.estimate_gas(full)  # type: ignore[arg-type]
        except Exception as exc:
            if "insufficient funds" not in str(exc).lower():
                raise
            await self.refund(acct.address)
            estimate = await self.w3.eth.estimate_gas(full)  # type: ignore[arg-type]
        # A margin, as wallets add: the estimate is made on the head's state, and a reorg can
        # drop the registration that first wrote this payload nonce's bitmap word (a cold word
        # costs ~15,000 gas more).
        full["gas"] = estimate * 5 // 4 + 20_000
        signed = acct.sign_transaction(full)
        tx_hash = "0x" + signed.hash.hex().removeprefix("0x")
        self.sent[tx_hash] = Sent(acct.address, bytes(signed.raw_transaction))
        for _ in range(40):
            await self.broadcast(signed.raw_transaction, acct.address)
            try:
                receipt = await self.w3.eth.wait_for_transaction_receipt(
                    signed.hash, timeout=20, poll_latency=0.5
                )
            except TimeExhausted:
                continue  # dropped by a reorg (or priced out for now): send it again
            if receipt["status"] != 1:
                used = int(receipt["gasUsed"])
                raise RuntimeError(
                    f"{acct.address}: transaction {tx_hash} reverted in block "
                    f"{receipt['blockNumber']} (gas used {used} of {full['gas']})"
                )
            return dict(receipt)
        raise RuntimeError(f"{acct.address}: transaction {tx_hash} never mined")

    async def rebroadcast_dropped(self, chain: Chain) -> int:
        """Send again every signed transaction the chain no longer has (a reorg dropped it),
        as a wallet whose transaction disappeared does; the ones deep enough are settled."""
        head = await chain.head()
        sent = 0
        for tx_hash, item in list(self.sent.items()):
            if item.settled:
                continue
            receipt = await chain.rpc("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                if int(receipt["blockNumber"], 16) <= head - 4 * CONFIRMATIONS:
                    item.settled = True
                continue
            if await chain.rpc("eth_getTransactionByHash", tx_hash) is None:
                await self.broadcast(item.raw, item.wallet)
                sent += 1
        self.rebroadcasts += sent
        return sent


@dataclass
class Run:
    """What the driver and the injector share, and what the summary shows."""

    seed: int
    faults: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    last_fault: float = 0.0  # wall clock (time.time) when the last fault ended
    injector_done: asyncio.Event = field(default_factory=asyncio.Event)
    main_done: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the scenario's main part is done: the injector finishes its round and stops."""
    extra_wallets: list[Wallet] = field(default_factory=list)
    signer_503: int = 0
    bumps: int = 0


class Injector:
    def __init__(
        self,
        run: Run,
        stack: Stack,
        redis: RedisServer,
        chain: Chain,
        dapp: FaultDapp,
        admin: Wallet,
        pg_admin: str,
        db_name: str,
        gap: tuple[float, float],
        counts: dict[str, int],
    ) -> None:
        self.run, self.stack, self.redis, self.chain = run, stack, redis, chain
        self.dapp, self.admin, self.pg_admin, self.db_name = dapp, admin, pg_admin, db_name
        self.gap = gap
        self.rng = random.Random(run.seed)
        self.plan = [kind for kind, n in counts.items() for _ in range(n)]
        self.rng.shuffle(self.plan)
        self.api_turn = 0
        self.last_nudge = ""

    async def main(self) -> None:
        try:
            await asyncio.sleep(self.rng.uniform(*self.gap) + 3)
            retried: set[str] = set()
            rounds = 0
            # The whole plan at least once; more rounds while the scenario's main part runs,
            # so a long run (2,000 participants) meets faults in every phase.
            while rounds == 0 or not self.run.main_done.is_set():
                plan = list(self.plan)
                if rounds:
                    self.rng.shuffle(plan)
                for kind in plan:
                    if not await self.inject(kind) and kind not in retried:
                        retried.add(kind)
                        plan.append(kind)  # once more, later
                    self.run.last_fault = time.time()
                    await asyncio.sleep(self.rng.uniform(*self.gap))
                rounds += 1
            self.run.notes.append(f"{rounds} round(s) of the fault plan")
        finally:
            self.run.injector_done.set()

    async def inject(self, kind: str) -> bool:
        detail = await getattr(self, kind.replace("-", "_"))()
        if detail is None:
            self.run.faults[kind] += 1
            say(f"fault: {kind}")
            return True
        self.run.skipped[kind] += 1
        say(f"fault skipped: {kind} ({detail})")
        return False

    async def restart(self, name: str, down: float = 0.0) -> None:
        self.stack.kill(name)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.stack.start, name)

    async def kill_listener(self) -> None:
        await self.restart("listener", self.rng.uniform(0, 2))

    async def kill_worker(self) -> None:
        await self.restart("worker", self.rng.uniform(0, 2))

    async def kill_api(self) -> None:
        """The replica counts as back once it answers /health, as behind a load balancer's
        health check (the dapp's requests meanwhile go to the other replica): a fault that
        follows may address it directly (`signer_outage`), never while it is still booting."""
        turn = self.api_turn % len(self.stack.api_ports)
        self.api_turn += 1
        await self.restart(f"api-{turn}", self.rng.uniform(0, 2))
        await asyncio.to_thread(wait_http, f"{self.stack.api_urls[turn]}/health", 60)

    async def kill_signer(self) -> None:
        await self.restart("signer")

    async def signer_outage(self) -> str | None:
        """The signer away for several seconds: a registration is answered 503
        `signer-unavailable` with Retry-After (asked directly, without retries); the probe
        wallet then registers once the signer is back."""
        self.stack.kill("signer")
        started = time.monotonic()
        wallet = Wallet(Account.create())
        await self.dapp.fund(wallet)
        await self.dapp.sign_in(wallet)
        company = Account.from_key(COMPANY_KEY).address
        seen = ""
        only_slot_waits = True  # every answer: no leasable slot, so the signer is never asked
        async with httpx.AsyncClient(base_url=self.stack.api_urls[0], timeout=30) as raw:
            while time.monotonic() - started < 6:
                r = await raw.post(
                    "/users/register", json={"referrer": company}, headers=wallet.headers
                )
                seen = problem_type(r)
                only_slot_waits &= r.status_code == 503 and "slot-unavailable" in seen
                if r.status_code == 503 and "signer-unavailable" in seen:
                    if "retry-after" not in r.headers:
                        raise CheckFailed("503 signer-unavailable without Retry-After")
                    self.run.signer_503 += 1
                await asyncio.sleep(1)
        await asyncio.sleep(max(0.0, 6 - (time.monotonic() - started)))
        await asyncio.to_thread(self.stack.start, "signer")
        if only_slot_waits:
            # Every free slot waited for its parent's payment: the request never reached the
            # step that asks the signer, so this outage could not be observed through it.
            return f"no leasable slot during the outage ({seen}): the signer was never asked"
        if not self.run.signer_503:
            raise CheckFailed(f"the API never answered 503 signer-unavailable (last: {seen})")
        r = await self.dapp.call("POST", "/users/register", wallet, {"referrer": company})
        if r.status_code != 200:
            raise CheckFailed(f"probe registration after the outage: {r.status_code} {r.text}")
        await self.dapp.send(wallet, r.json()["tx"])
        self.run.extra_wallets.append(wallet)
        return None

    async def cursor(self) -> int:
        conn = await asyncpg.connect(self.pg_db)
        try:
            return int(
                await conn.fetchval("SELECT coalesce(max(last_block), 0) FROM blockchain_sync")
            )
        finally:
            await conn.close()

    @property
    def pg_db(self) -> str:
        return self.pg_admin.rsplit("/", 1)[0] + "/" + self.db_name

    async def reorg(self) -> str | None:
        """Snapshot, let a few blocks be mined (wallets' transactions in them), revert, and
        mine different ones: a transfer nobody else sends first, then whatever the wallets
        broadcast again. The listener's cursor stays below the snapshot: inside the non-final
        window."""
        snapshot_block = await self.chain.head()
        snap = await self.chain.rpc("evm_snapshot")
        await asyncio.sleep(self.rng.uniform(1.2, REORG_MAX_BLOCKS - 0.3))
        return await self._revert(snap, snapshot_block, "reorg")

    async def reorg_settlement(self) -> str | None:
        """A reorg that drops a mined settlement transaction: mining paused until the worker's
        batch transaction is in the pool, snapshot, mined, seen by the worker (its attempt
        `mined`), then reverted away. The worker must still get the batch executed once."""
        sender = Account.from_key(SENDER_KEY).address
        snap, snapshot_block = "", 0

        async def snapshot(_found: dict[str, Any]) -> None:
            nonlocal snap, snapshot_block
            snapshot_block = await self.chain.head()
            snap = await self.chain.rpc("evm_snapshot")

        found = await self._catch_sender_tx(sender, snapshot)
        if found is None:
            return f"no settlement transaction in the pool in 4 tries; build: {self.last_nudge}"
        seen = "not yet seen by the worker"
        deadline = time.monotonic() + SETTLEMENT_REORG_MAX_BLOCKS - 0.5
        while time.monotonic() < deadline:
            conn = await asyncpg.connect(self.pg_db)
            try:
                status = await conn.fetchval(
                    "SELECT status FROM tx_attempts WHERE tx_hash = $1", found["hash"]
                )
            finally:
                await conn.close()
            if status == "mined":
                seen = "marked mined by the worker"
                break
            await asyncio.sleep(0.3)
        detail = await self._revert(
            snap, snapshot_block, "reorg-settlement", SETTLEMENT_REORG_MAX_BLOCKS
        )
        if detail is None:
            self.run.notes.append(
                f"  dropped settlement transaction {found['hash']} (nonce "
                f"{int(found['nonce'], 16)}), {seen}"
            )
        return detail

    async def _revert(
        self, snap: str, snapshot_block: int, kind: str, max_blocks: int = REORG_MAX_BLOCKS
    ) -> str | None:
        replaced = await self.chain.head() - snapshot_block
        cursor = await self.cursor()
        if replaced > max_blocks or cursor >= snapshot_block:
            # Too deep for the non-final window: left alone (the snapshot is simply unused).
            return f"{replaced} blocks, cursor {cursor}, snapshot {snapshot_block}: not reverted"
        await self.chain.rpc("evm_revert", snap)
        other = Account.from_key(DEV_PRIVATE_KEYS[6])
        tx = {
            "to": Account.create().address,
            "value": 1,
            "gas": 21_000,
            "gasPrice": int(await self.chain.rpc("eth_gasPrice"), 16) * 2,
            "nonce": int(
                await self.chain.rpc("eth_getTransactionCount", other.address, "latest"), 16
            ),
            "chainId": self.stack.chain_id,
        }
        raw = Account.sign_transaction(tx, other.key).raw_transaction
        await self.chain.rpc("eth_sendRawTransaction", "0x" + raw.hex().removeprefix("0x"))
        dropped = await self.dapp.rebroadcast_dropped(self.chain)
        self.run.notes.append(
            f"{kind} at block {snapshot_block}: {replaced} blocks replaced (listener cursor "
            f"{cursor}), {dropped} dropped wallet transactions sent again"
        )
        return None

    async def payable(self) -> bool:
        """Whether some reward can go into a batch now (or a batch is on its way)."""
        conn = await asyncpg.connect(self.pg_db)
        try:
            return bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM rewards r JOIN users u ON u.id = r.user_id "
                    "WHERE r.status = 'pending' AND NOT u.is_frozen) OR EXISTS (SELECT 1 FROM "
                    "payout_batches WHERE status IN ('built', 'signed'))"
                )
            )
        finally:
            await conn.close()

    async def _catch_sender_tx(
        self, sender: str, then: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> dict[str, Any] | None:
        """Up to four tries: wait until something is payable, pause mining, nudge a build and
        wait (at most 8 s: a chain that stops longer would starve everything else) for the
        worker's transaction in the pool; `then` runs on it while mining is still paused.
        Mining always resumes."""
        for _ in range(4):
            for _ in range(60):
                if await self.payable():
                    break
                await asyncio.sleep(1)
            await self.chain.rpc("evm_setIntervalMining", 0)
            try:
                found = await self._sender_tx_in_pool(sender)
                if found is not None:
                    await then(found)
                    return found
            finally:
                await self.chain.rpc("evm_setIntervalMining", 1)
            await asyncio.sleep(3)
        return None

    async def _sender_tx_in_pool(self, sender: str) -> dict[str, Any] | None:
        """With mining paused: nudge a build, then wait for the worker's transaction in the
        pool (not long when the worker paid everything just before the pause)."""
        r = await self.dapp.call("POST", "/payouts/build-batch", self.admin, {})
        self.last_nudge = problem_type(r)
        idle = "nothing-to-pay" in self.last_nudge and not await self.payable()
        deadline = time.monotonic() + (3 if idle else 8)
        while time.monotonic() < deadline:
            pool = await self.chain.rpc("txpool_content")
            for address, by_nonce in pool.get("pending", {}).items():
                if address.lower() == sender.lower():
                    found: dict[str, Any] = next(iter(by_nonce.values()))
                    return found
            await asyncio.sleep(0.3)
        return None

    async def redis_restart(self) -> None:
        self.redis.kill()
        await asyncio.sleep(self.rng.uniform(0.5, 2))
        await asyncio.to_thread(self.redis.start)

    async def pg_terminate(self) -> None:
        conn = await asyncpg.connect(self.pg_admin)
        try:
            n = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                self.db_name,
            )
        finally:
            await conn.close()
        self.run.notes.append(f"pg_terminate_backend: {n} connections")

    async def stuck_tx(self) -> str | None:
        """Mining paused until the worker's batch transaction is in the pool, then every
        block's base fee held at twice its gas price until the worker replaces it (same nonce,
        higher price); the replacement must be what is mined, never the original."""
        sender = Account.from_key(SENDER_KEY).address

        async def raise_fee(stuck: dict[str, Any]) -> None:
            price = int(stuck["gasPrice"], 16)
            await self.chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(price * 2))

        found = await self._catch_sender_tx(sender, raise_fee)
        if found is None:
            return f"no settlement transaction in the pool in 4 tries; build: {self.last_nudge}"
        nonce, first = int(found["nonce"], 16), found["hash"]
        price = int(found["gasPrice"], 16)
        deadline = time.monotonic() + 90
        while True:  # hold the fee until a replacement of that nonce is in the pool
            await self.chain.rpc("anvil_setNextBlockBaseFeePerGas", hex(price * 2))
            pool = await self.chain.rpc("txpool_content")
            mine = {k.lower(): v for k, v in pool.get("pending", {}).items()}
            current = mine.get(sender.lower(), {}).get(str(nonce))
            if current is not None and current["hash"] != first:
                break  # replaced in the pool
            if await self.chain.rpc("eth_getTransactionReceipt", first) is not None:
                raise CheckFailed(f"nonce {nonce} mined at the stuck price: the fault did not hold")
            latest = int(await self.chain.rpc("eth_getTransactionCount", sender, "latest"), 16)
            if latest > nonce:
                break  # replaced and already mined
            if time.monotonic() > deadline:
                raise CheckFailed(f"the worker never replaced stuck transaction nonce {nonce}")
            await asyncio.sleep(0.4)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            latest = int(await self.chain.rpc("eth_getTransactionCount", sender, "latest"), 16)
            if latest > nonce:
                break
            await asyncio.sleep(0.5)
        else:
            raise CheckFailed(f"the replaced settlement transaction (nonce {nonce}) never mined")
        if await self.chain.rpc("eth_getTransactionReceipt", first) is not None:
            raise CheckFailed(f"nonce {nonce} mined at the stuck price: the fault did not hold")
        self.run.bumps += 1
        self.run.notes.append(
            f"stuck transaction nonce {nonce} at {price} wei/gas: replaced by a bump, mined"
        )
        return None


async def driver(
    run: Run, dapp: FaultDapp, chain: Chain, admin: Wallet, participants: int, concurrency: int
) -> Report:
    """The scenario's steps (devtools/scenario.py) while the injector works, then more small
    rounds of registrations until it is done, then the final payout."""
    report = Report()
    company = Account.from_key(COMPANY_KEY).address
    await dapp.sign_in(admin)

    async def rebroadcaster() -> None:
        while True:
            await asyncio.sleep(3)
            try:
                await dapp.rebroadcast_dropped(chain)
            except Exception as exc:  # a transient RPC error: the next pass
                say(f"rebroadcast pass failed: {exc}")

    keeper = asyncio.create_task(rebroadcaster())
    try:
        first = max(1, participants * 7 // 10)
        wallets = await scenario.register_all(dapp, company, first, concurrency)
        await scenario.wait_confirmed(dapp, len(wallets) + 1)
        say(f"{len(wallets)} registrations confirmed")
        report.retopups = await scenario.retopups(dapp, wallets, max(1, participants // 20))
        for wallet in dapp.rng.sample(wallets, min(3, len(wallets))):
            await dapp.me(wallet)
            await scenario.set_frozen(dapp, admin, wallet.user_id, True)
            report.frozen.append(wallet.user_id)
        wallets += await scenario.register_all(
            dapp, company, max(1, participants - first), concurrency
        )
        await scenario.wait_confirmed(dapp, len(wallets) + 1)
        report.withdrawals = await scenario.withdraw(dapp, wallets, max(1, participants // 20))
        await scenario.pay_out(dapp, admin, report)
        for user_id in report.frozen[:-1]:
            await scenario.set_frozen(dapp, admin, user_id, False)
            report.unfrozen.append(user_id)
        run.main_done.set()
        rounds = 0
        while not run.injector_done.is_set():
            wallets += await scenario.register_all(dapp, company, 10, concurrency)
            rounds += 1
            if rounds % 3 == 0:
                report.withdrawals += await scenario.withdraw(dapp, wallets, 3)
        say(f"faults done; {rounds} extra registration rounds; draining")
        wallets += run.extra_wallets
        await dapp.rebroadcast_dropped(chain)
        await scenario.wait_confirmed(dapp, len(wallets) + 1)
        await scenario.pay_out(dapp, admin, report)
        report.registered = len(wallets)
    finally:
        keeper.cancel()
    return report


async def checks(
    stack: Stack, chain: Chain, dapp: FaultDapp, admin: Wallet, run: Run, pg_db: str
) -> list[tuple[str, str]]:
    """Every guarantee, from the chain's logs and plain SQL; raises CheckFailed at the first
    difference. Returns (check, figure) rows for the summary."""
    rows: list[tuple[str, str]] = []
    contract = stack.contract_address
    conn = await asyncpg.connect(pg_db)
    try:
        # No process wedged: each alive, answering, and the listener caught up after the
        # last fault.
        for name in [*stack.procs, "signer"]:
            if not stack.alive(name):
                raise CheckFailed(f"process {name} exited")
        assert stack.signer is not None
        async with httpx.AsyncClient(timeout=10) as direct:
            for url in [*stack.api_urls, stack.signer.url]:
                r = await direct.get(f"{url}/health")
                if r.status_code != 200:
                    raise CheckFailed(f"{url}/health answered {r.status_code}")
        head = await chain.head()
        deadline = time.monotonic() + 60
        while True:
            sync = await conn.fetchrow("SELECT * FROM blockchain_sync")
            assert sync is not None
            if sync["halted_reason"]:
                raise CheckFailed(f"listener halted: {sync['halted_reason']}")
            if int(sync["last_block"]) >= head - CONFIRMATIONS:
                break
            if time.monotonic() > deadline:
                raise CheckFailed(f"listener at block {sync['last_block']}, head {head}: wedged")
            await asyncio.sleep(1)
        if sync["updated_at"] is None or sync["updated_at"].timestamp() <= run.last_fault:
            raise CheckFailed(f"the listener's cursor has not moved since the last fault: {sync}")
        rows.append(("listener caught up", f"block {sync['last_block']} (head {head})"))
        halted = await conn.fetch("SELECT address, halted_reason FROM sender_accounts")
        for row in halted:
            if row["halted_reason"]:
                raise CheckFailed(f"sender {row['address']} halted: {row['halted_reason']}")
        anomalies = await conn.fetchval("SELECT count(*) FROM anomalies")
        if anomalies:
            raise CheckFailed(f"{anomalies} ledger anomalies recorded")
        in_flight = await conn.fetch(
            "SELECT id, status FROM payout_batches "
            "WHERE status NOT IN ('executed', 'expired', 'failed')"
        )
        if in_flight:
            raise CheckFailed(f"batches left in flight: {[dict(r) for r in in_flight]}")
        ended = dict(
            await conn.fetch("SELECT status, count(*) FROM payout_batches GROUP BY status")
        )
        if ended.get("failed"):
            raise CheckFailed(f"{ended['failed']} payout batches failed")

        # Let the chain move past the last events and the listener settle them.
        block = int(sync["last_block"])
        logs = await chain.logs(contract, block)

        # Registrations: each on-chain registration is one active user, at its block.
        chain_regs: dict[str, int] = {}
        for log in logs:
            if log["topics"][0] == T_REGISTRATION:
                user = addr_topic(log["topics"][1])
                if user in chain_regs:
                    raise CheckFailed(f"{user} registered twice on chain")
                chain_regs[user] = int(log["blockNumber"], 16)
        company = Account.from_key(COMPANY_KEY).address
        users = await conn.fetch(
            "SELECT wallet, status, activated_block FROM users WHERE wallet <> $1", company
        )
        active = {r["wallet"]: r["activated_block"] for r in users if r["status"] == "active"}
        for wallet, at in sorted(chain_regs.items()):
            if wallet not in active:
                raise CheckFailed(f"registration of {wallet} (block {at}) is not in the ledger")
            if active[wallet] != at:
                raise CheckFailed(f"{wallet} activated at {active[wallet]}, registered at {at}")
        extra = sorted(set(active) - set(chain_regs))
        if extra:
            raise CheckFailed(f"active in the ledger without a registration event: {extra[0]}")
        mine = {item.wallet for item in dapp.sent.values()}
        missing = sorted(w for w in mine if w not in chain_regs)
        if missing:
            raise CheckFailed(f"wallet {missing[0]} sent a registration that never settled")
        rows.append(("registrations: chain = ledger, once each", f"{len(chain_regs)}"))

        # Payouts: per recipient, on-chain paid + deferred (claimable or claimed) = the
        # ledger's paid + claimable; each batch id executed once, the same set as the ledger's.
        onchain: dict[str, int] = defaultdict(int)
        deferred: dict[str, int] = defaultdict(int)
        batches: Counter[int] = Counter()
        for log in logs:
            t = log["topics"][0]
            if t in (T_PAID, T_DEFERRED):
                who = addr_topic(log["topics"][2])
                onchain[who] += int(log["data"][2:66], 16)
                if t == T_DEFERRED:
                    deferred[who] += int(log["data"][2:66], 16)
            elif t == T_BATCH:
                batches[int(log["topics"][1], 16)] += 1
        twice = [b for b, n in batches.items() if n > 1]
        if twice:
            raise CheckFailed(f"batch {twice[0]} executed {batches[twice[0]]} times")
        executed = {
            int(r["id"])
            for r in await conn.fetch("SELECT id FROM payout_batches WHERE status = 'executed'")
        }
        if executed != set(batches):
            raise CheckFailed(
                f"executed batches differ: ledger-only {sorted(executed - set(batches))}, "
                f"chain-only {sorted(set(batches) - executed)}"
            )
        settled = {
            r["wallet"]: int(r["settled"])
            for r in await conn.fetch(
                "SELECT u.wallet, sum(r.amount) AS settled FROM rewards r "
                "JOIN users u ON u.id = r.user_id WHERE r.status IN ('paid', 'claimable') "
                "GROUP BY u.wallet"
            )
        }
        for who in sorted(set(onchain) | set(settled)):
            if onchain.get(who, 0) != settled.get(who, 0):
                raise CheckFailed(
                    f"{who}: on chain {onchain.get(who, 0)} wei paid+deferred, "
                    f"ledger {settled.get(who, 0)} wei paid+claimable"
                )
        claimable_ledger = {
            r["wallet"]: int(r["claimable"])
            for r in await conn.fetch(
                "SELECT u.wallet, b.claimable FROM user_balances b JOIN users u ON u.id = b.user_id"
                " WHERE b.claimable <> 0"
            )
        }
        sel = selector("claimable(address)")
        for who in sorted(set(deferred) | set(claimable_ledger)):
            view = await chain.call_uint(contract, sel + who[2:].lower().rjust(64, "0"), block)
            if view != claimable_ledger.get(who, 0):
                raise CheckFailed(
                    f"{who}: claimable {view} on chain, "
                    f"{claimable_ledger.get(who, 0)} in the ledger"
                )
        paid_total = sum(onchain.values())
        rows.append(
            (
                "per recipient: on-chain paid + claimable = settled rewards",
                f"{len(onchain)} recipients, {paid_total} wei, {len(batches)} batches once "
                f"each ({ended.get('expired', 0)} expired and rebuilt)",
            )
        )

        # Buckets: the rewards by status against the balances, the contract against both.
        by_status = {
            r["status"]: int(r["total"])
            for r in await conn.fetch(
                "SELECT status, sum(amount) AS total FROM rewards GROUP BY status"
            )
        }
        sums = await conn.fetchrow(
            "SELECT sum(pending) AS pending, sum(held) AS held, sum(reserved) AS reserved, "
            "sum(batched) AS batched, sum(claimable) AS claimable, sum(paid) AS paid "
            "FROM user_balances"
        )
        assert sums is not None
        for bucket in ("pending", "held", "reserved", "batched", "claimable", "paid"):
            if int(sums[bucket] or 0) != by_status.get(bucket, 0):
                raise CheckFailed(
                    f"bucket {bucket}: balances {sums[bucket]}, rewards {by_status.get(bucket, 0)}"
                )
        liabilities = sum(
            by_status.get(b, 0) for b in ("pending", "held", "reserved", "batched", "claimable")
        )
        balance = int(await chain.rpc("eth_getBalance", contract, hex(block)), 16)
        surplus = await chain.call_uint(contract, selector("surplus()"), block)
        claimable_chain = await chain.call_uint(contract, selector("totalClaimable()"), block)
        if claimable_chain != by_status.get("claimable", 0):
            raise CheckFailed(
                f"claimable bucket: contract {claimable_chain}, "
                f"ledger {by_status.get('claimable', 0)}"
            )
        if balance - surplus != liabilities:
            raise CheckFailed(
                f"contract balance {balance} - surplus {surplus} != ledger liabilities "
                f"{liabilities} (difference {balance - surplus - liabilities} wei)"
            )
        rows.append(
            (
                "contract = ledger by bucket (independent SQL)",
                f"balance {balance} wei, surplus {surplus}, difference 0",
            )
        )

        # The product's own reconciliation, run by the worker after the last fault.
        deadline = time.monotonic() + 60
        while True:
            r = await dapp.call("GET", "/monitoring/reconciliation", admin)
            latest = r.json().get("latest") if r.status_code == 200 else None
            if latest and int(latest["block"]) >= block:
                break
            if time.monotonic() > deadline:
                raise CheckFailed(f"no reconciliation report at block >= {block}: worker wedged?")
            await asyncio.sleep(2)
        if int(latest["difference"]) != 0 or not latest["ok"] or latest["recipientMismatches"]:
            raise CheckFailed(f"reconciliation report not ok: {latest}")
        r = await dapp.http.get("/treasury/summary")
        summary = r.json()
        if int(summary["ledger_difference"]) != 0 or not summary["balanced"]:
            raise CheckFailed(f"treasury summary: {summary}")
        rows.append(
            (
                "GET /monitoring/reconciliation, /treasury/summary",
                f"difference {latest['difference']} wei at block {latest['block']}, "
                f"ledger_difference {summary['ledger_difference']}",
            )
        )

        # Nothing payable left unpaid: no pending reward of an unfrozen participant, nothing
        # batched.
        left = await conn.fetch(
            "SELECT u.wallet, r.status, sum(r.amount) AS total FROM rewards r "
            "JOIN users u ON u.id = r.user_id "
            "WHERE r.status = 'batched' OR (r.status = 'pending' AND NOT u.is_frozen) "
            "GROUP BY u.wallet, r.status"
        )
        if left:
            first = left[0]
            raise CheckFailed(
                f"{len(left)} payable balances left unpaid, first {first['wallet']}: "
                f"{first['total']} wei {first['status']}"
            )
        rows.append(("payable rewards all paid", "0 pending (unfrozen), 0 batched"))
        progressed = await conn.fetchval(
            "SELECT count(*) FROM reconciliation_reports WHERE created_at > to_timestamp($1)",
            run.last_fault,
        )
        if not progressed:
            raise CheckFailed("the worker ran no reconciliation after the last fault")
        rows.append(("worker progressed after the last fault", f"{progressed} reports"))
    finally:
        await conn.close()
    return rows


def print_summary(
    run: Run, report: Report, rows: list[tuple[str, str]], dapp: FaultDapp, seconds: float
) -> None:
    faults = Table(title=f"Faults injected (seed {run.seed})")
    faults.add_column("kind")
    faults.add_column("injected", justify="right")
    faults.add_column("skipped", justify="right")
    for kind in FAULT_COUNTS:
        faults.add_row(kind, str(run.faults[kind]), str(run.skipped[kind]))
    console.print(faults)
    for note in run.notes:
        console.print(f"  {note}")
    stats = dapp.transport.stats
    work = Table(title="Work")
    work.add_column("")
    work.add_column("", justify="right")
    work.add_row("registrations (wallets)", str(report.registered))
    work.add_row("retopups", str(report.retopups))
    work.add_row("frozen / unfrozen", f"{len(report.frozen)} / {len(report.unfrozen)}")
    work.add_row("withdraw requests", str(report.withdrawals))
    work.add_row(
        "payout batches executed", str(sum(b["status"] == "executed" for b in report.batches))
    )
    work.add_row("client: connection errors retried", str(stats.connection_errors))
    for kind, n in sorted(stats.retried_statuses.items()):
        work.add_row(f"client: {kind} retried", str(n))
    work.add_row("client: requests by replica port", str(dict(stats.by_replica)))
    work.add_row("signer outage: 503 signer-unavailable + Retry-After seen", str(run.signer_503))
    work.add_row("stuck settlement transactions replaced by a bump", str(run.bumps))
    work.add_row("wallet transactions sent again", str(dapp.rebroadcasts))
    work.add_row("sign-ins restarted (nonce consumed, answer lost)", str(dapp.signin_restarts))
    work.add_row("duration", f"{seconds:.0f} s")
    console.print(work)
    table = Table(title="Checks")
    table.add_column("check")
    table.add_column("result")
    for check, figure in rows:
        table.add_row(check, f"[green]ok[/green] {figure}")
    console.print(table)


async def scenario_main(
    args: argparse.Namespace, stack: Stack, redis: RedisServer, rpc_url: str, db_name: str
) -> int:
    run = Run(seed=args.seed)
    chain = Chain(rpc_url)
    dapp = FaultDapp(stack.api_urls, rpc_url, args.seed)
    admin = Wallet(Account.from_key(ADMIN_KEY))
    lo, hi = (float(x) for x in args.fault_gap.split(","))
    only = set(filter(None, args.only.split(","))) or set(FAULT_COUNTS)
    unknown = only - set(FAULT_COUNTS)
    if unknown:
        raise SystemExit(f"unknown fault kinds {sorted(unknown)}: {sorted(FAULT_COUNTS)}")
    counts = {
        k: max(1, round(v * args.fault_scale)) if k in only else 0 for k, v in FAULT_COUNTS.items()
    }
    injector = Injector(run, stack, redis, chain, dapp, admin, args.pg, db_name, (lo, hi), counts)
    started = time.monotonic()
    pg_db = args.pg.rsplit("/", 1)[0] + "/" + db_name
    try:
        inject = asyncio.create_task(injector.main())
        drive = asyncio.create_task(
            driver(run, dapp, chain, admin, args.participants, args.concurrency)
        )
        done, _ = await asyncio.wait({inject, drive}, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                for other in (inject, drive):
                    other.cancel()
                raise task.exception()  # type: ignore[misc]
        report = await drive
        await inject
        rows = await checks(stack, chain, dapp, admin, run, pg_db)
        r = await dapp.call("GET", "/payouts?limit=200", admin)
        report.batches = r.json()["items"]
        print_summary(run, report, rows, dapp, time.monotonic() - started)
        console.print(f"[green]all checks passed[/green] (seed {args.seed})")
        return 0
    except CheckFailed as exc:
        console.print(f"[red]CHECK FAILED[/red] (seed {args.seed}): {exc}")
        console.print(f"faults so far: {dict(run.faults)}; notes: {run.notes}")
        return 1
    finally:
        await dapp.aclose()
        await dapp.transport.aclose()
        await chain.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="The whole stack under injected faults")
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16, help="wallets in flight at once")
    parser.add_argument("--seed", type=int, default=None, help="fault schedule (default: random)")
    parser.add_argument("--fault-gap", default="1,4", help="seconds between faults: uniform(lo,hi)")
    parser.add_argument(
        "--fault-scale", type=float, default=1.0, help="multiply each fault kind's count"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated fault kinds to inject (default: all)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "AUTOPOOL_DEVNET_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    rerun = (
        f"python -m devtools.faults --seed {args.seed} --participants {args.participants} "
        f"--concurrency {args.concurrency} --fault-gap {args.fault_gap} "
        f"--fault-scale {args.fault_scale}" + (f" --only {args.only}" if args.only else "")
    )
    say(f"seed {args.seed} (rerun: {rerun})")

    code = 1
    with local_stack(
        args.pg,
        "faults",
        apis=2,
        extra_env={
            "AUTOPOOL_CONFIRMATIONS": str(CONFIRMATIONS),
            "AUTOPOOL_LISTENER_STANDBY_POLL_SECONDS": "1",
        },
    ) as local:
        say(
            f"stack up: APIs {local.stack.api_urls}, redis {local.redis.url}, anvil "
            f"{local.anvil.rpc_url}, database {local.db_name}, logs {local.stack.logs}"
        )
        try:
            code = asyncio.run(
                scenario_main(args, local.stack, local.redis, local.anvil.rpc_url, local.db_name)
            )
        except Exception as exc:
            # Where it came from, not only what: a CI log is all a flaky failure leaves.
            console.print_exception(max_frames=20)
            console.print(f"[red]FAILED[/red] (seed {args.seed}): {type(exc).__name__}: {exc}")
        local.keep = code != 0 or args.keep
    sys.exit(code)


if __name__ == "__main__":
    main()
