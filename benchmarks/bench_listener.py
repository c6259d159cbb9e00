"""Listener benchmark: backfill rates from a local Anvil into PostgreSQL, in one run.

    python benchmarks/bench_listener.py [--registrations 2000] [--span 2000]

Setup: Anvil with AutoPool deployed, `--registrations` registrations on chain (each wallet
sends its own signed `register`, slots 1..N in order under the company, as the API would lease
them), a migrated and seeded database of its own (dropped at the end).

Measured, each over the same block range:
  * getLogs   — `eth_getLogs` through the raw client (`backend.chain.rpc`) in adaptive spans:
                the floor any backfill stands on;
  * raw       — the same logs decoded and stored in `chain_events` by the listener's
                `store_events` (one statement per 5,000 logs), no ledger work: ingest only;
  * ledger    — the listener's `sync_once` from an empty ledger: each registration stored,
                placed, its reward lines written, balances moved — in bulk
                (`backend.ledger.bulk`), as a backfill runs; `--per-event` measures the
                per-event path (live mode's) instead.

The last line reads `raw_events_per_s=N registrations_per_s=N getlogs_events_per_s=N`.
TEST-ONLY keys: Anvil's public dev keys; nothing here touches a real chain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import asyncpg  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.signers.local import LocalAccount  # noqa: E402
from rich.progress import Progress  # noqa: E402
from sqlalchemy import text  # noqa: E402
from web3 import AsyncHTTPProvider, AsyncWeb3, Web3  # noqa: E402

from backend.chain.events import EventDecoder  # noqa: E402
from backend.chain.rpc import AdaptiveRange, RpcClient  # noqa: E402
from backend.chain.typed_data import Domain, full_message  # noqa: E402
from backend.core.db import make_engine, make_sessionmaker, unit_of_work  # noqa: E402
from backend.core.settings import Settings  # noqa: E402
from backend.core.wiring import current_plan  # noqa: E402
from backend.ledger.genesis import seed  # noqa: E402
from devtools.anvil import DEV_PRIVATE_KEYS, start_anvil  # noqa: E402
from devtools.deploy import deploy_autopool  # noqa: E402
from listener.main import _sync_loop, freeze_startup_heap, watch_heads  # noqa: E402
from listener.sync import ChainSync, store_events  # noqa: E402

ADMIN_DSN = os.environ.get("AUTOPOOL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


class Registrar:
    """Sends registrations into given level-1 slots, each by a new funded wallet (automine)."""

    def __init__(self, w3: Web3, contract: Any, company: str) -> None:
        self.w3, self.pool, self.company = w3, contract, company
        self.plan = current_plan()
        self.domain = Domain(w3.eth.chain_id, contract.address)
        self.price = int(self.plan.level_prices[0])
        self.deadline = int(w3.eth.get_block("latest")["timestamp"]) + 10 * 86_400
        self.gas_price = w3.eth.gas_price

    def send(self, slot: int) -> str:
        """Register a new wallet in `slot` (nonce = slot); the transaction hash."""
        wallet: LocalAccount = Account.create()
        self.w3.provider.make_request(  # type: ignore[arg-type]
            "anvil_setBalance", [wallet.address, hex(self.price + 10**18)]
        )
        msg = {
            "user": wallet.address,
            "referrer": self.company,
            "slot": slot,
            "amount": self.price,
            "planHash": self.plan.plan_hash(),
            "nonce": slot,
            "deadline": self.deadline,
        }
        doc = full_message(self.domain, "Registration", msg)
        signature = Account.sign_typed_data(DEV_PRIVATE_KEYS[1], full_message=doc).signature
        fields = ("user", "referrer", "slot", "amount", "planHash", "nonce", "deadline")
        call = self.pool.functions.register(tuple(msg[k] for k in fields), signature)
        tx = call.build_transaction(
            {
                "from": wallet.address,
                "value": self.price,
                "nonce": 0,
                "gas": 200_000,
                "gasPrice": self.gas_price,
                "chainId": self.w3.eth.chain_id,
            }
        )
        sent = self.w3.eth.send_raw_transaction(wallet.sign_transaction(tx).raw_transaction)
        return "0x" + bytes(sent).hex()


def register_all(registrar: Registrar, count: int) -> None:
    """`count` registrations in slots 1..count."""
    with Progress(transient=True) as progress:
        task = progress.add_task("registering on Anvil", total=count)
        for slot in range(1, count + 1):
            registrar.send(slot)
            progress.advance(task)
    registrar.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


async def live_latencies(
    sync: ChainSync, registrar: Registrar, first_slot: int, count: int, ws_url: str | None
) -> list[float]:
    """Seconds from each registration's block (final at once: confirmations 0) to its ledger
    row, with the listener's own live loop running: polling (every
    `listener_poll_seconds`, the default), plus newHeads over WebSocket when `ws_url` is
    given."""
    stop, wake = asyncio.Event(), asyncio.Event()
    settings = Settings.model_construct()  # the default poll interval
    tasks = [asyncio.create_task(_sync_loop(sync, settings, stop, wake))]
    if ws_url:
        tasks.append(asyncio.create_task(watch_heads(ws_url, wake, stop)))
        await asyncio.sleep(1.0)  # subscribed
    out = []
    try:
        for slot in range(first_slot, first_slot + count):
            tx_hash = await asyncio.to_thread(registrar.send, slot)  # mined (automine)
            mined = time.perf_counter()
            while True:
                async with sync.sessions() as s:
                    done = await s.scalar(
                        text(
                            "SELECT processed_at IS NOT NULL FROM chain_events WHERE tx_hash = :t"
                        ),
                        {"t": tx_hash},
                    )
                if done:
                    out.append(time.perf_counter() - mined)
                    break
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.3)  # registrations spread in time, as live traffic
    finally:
        stop.set()
        for task in tasks[1:]:
            task.cancel()  # the subscription ends when cancelled, as listener.main.run does
        await asyncio.gather(*tasks, return_exceptions=True)
    return out


async def measure(
    db_url: str,
    rpc_url: str,
    registrar: Registrar,
    head: int,
    per_event: bool,
    registrations: int,
    live: int,
) -> dict[str, Any]:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    rpc = RpcClient([rpc_url])
    figures: dict[str, Any] = {}
    contract, company = registrar.pool.address, registrar.company
    try:
        async with unit_of_work(sessions) as s:
            await seed(s, company, current_plan())

        started = time.perf_counter()
        logs = await rpc.logs_in_ranges(contract, 0, head, AdaptiveRange(maximum=2_000))
        figures["getlogs_s"] = time.perf_counter() - started
        figures["events"] = len(logs)

        w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url))
        decoder = EventDecoder(w3, contract)
        started = time.perf_counter()
        logs = await rpc.logs_in_ranges(contract, 0, head, AdaptiveRange(maximum=2_000))
        rows = []
        for raw in logs:
            decoded = decoder.decode_raw(raw)
            if decoded is None:
                continue
            rows.append(
                {
                    "chain_id": 31337,
                    "contract": contract,
                    "block_number": int(raw["blockNumber"], 16),
                    "block_hash": raw["blockHash"],
                    "block_timestamp": 0,
                    "tx_hash": raw["transactionHash"],
                    "log_index": int(raw["logIndex"], 16),
                    "name": decoded[0],
                    "args": decoded[1],
                }
            )
        async with unit_of_work(sessions) as s:
            await store_events(s, rows)
        figures["raw_s"] = time.perf_counter() - started
        async with unit_of_work(sessions) as s:
            await s.execute(text("DELETE FROM chain_events"))  # nothing refers to them yet

        sync = ChainSync(
            sessions,
            w3,
            31337,
            contract,
            confirmations=0,
            rpc=rpc,
            bulk_min_events=10**12 if per_event else 2,
        )
        freeze_startup_heap()  # as the listener process does once started
        started = time.perf_counter()
        await sync.sync_once()
        figures["ledger_s"] = time.perf_counter() - started

        first = registrations + 1
        figures["live_ws"] = await live_latencies(
            sync, registrar, first, live, rpc_url.replace("http://", "ws://")
        )
        figures["live_poll"] = await live_latencies(sync, registrar, first + live, live, None)
    finally:
        await rpc.aclose()
        await engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registrations", type=int, default=2_000)
    parser.add_argument(
        "--per-event", action="store_true", help="settle event by event (a lone event's path)"
    )
    parser.add_argument(
        "--live", type=int, default=20, help="registrations timed in live mode, per mode"
    )
    args = parser.parse_args()

    db_name = f"autopool_bench_listener_{os.getpid()}"
    db_url = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    db_url += f"/{db_name}"
    anvil = start_anvil(accounts=10)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        owner, signer_key, guardian = DEV_PRIVATE_KEYS[:3]
        company = Account.from_key(DEV_PRIVATE_KEYS[9]).address
        pool = deploy_autopool(
            w3,
            owner,
            owner=Account.from_key(owner).address,
            signer=Account.from_key(signer_key).address,
            guardian=Account.from_key(guardian).address,
            outflow_cap=10**24,
        )
        registrar = Registrar(w3, pool, company)
        started = time.perf_counter()
        register_all(registrar, args.registrations)
        took = time.perf_counter() - started
        print(f"{args.registrations:,} registrations on Anvil in {took:.1f} s")
        asyncio.run(admin(f'CREATE DATABASE "{db_name}"'))
        subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=REPO_ROOT,
            env={**os.environ, "AUTOPOOL_DATABASE_URL": db_url},
            check=True,
            capture_output=True,
        )
        head = w3.eth.block_number
        f = asyncio.run(
            measure(
                db_url,
                anvil.rpc_url,
                registrar,
                head,
                args.per_event,
                args.registrations,
                args.live,
            )
        )
        events = f["events"]
        getlogs = events / f["getlogs_s"]
        raw = events / f["raw_s"]
        regs = args.registrations / f["ledger_s"]
        print(f"blocks 0..{head}: {events:,.0f} events ({args.registrations:,} registrations)")
        print(f"getLogs (raw, adaptive): {f['getlogs_s']:.2f} s  {getlogs:,.0f} events/s")
        print(
            f"raw ingest (decode+store): {f['raw_s']:.2f} s  {raw:,.0f} events/s  "
            f"({raw / getlogs:.2f}x getLogs)"
        )
        print(
            f"full ledger ({'per event' if args.per_event else 'bulk'}): {f['ledger_s']:.2f} s  "
            f"{regs:,.0f} registrations/s  "
            f"({regs / getlogs:.3f}x getLogs)"
        )
        poll = Settings.model_construct().listener_poll_seconds
        for mode, key in (("newHeads", "live_ws"), (f"polling every {poll:g} s", "live_poll")):
            waits = sorted(f[key])
            print(
                f"live ({mode}): {len(waits)} registrations, block final -> ledger row "
                f"p50 {statistics.median(waits) * 1000:.0f} ms, max {waits[-1] * 1000:.0f} ms"
            )
        print(
            f"raw_events_per_s={raw:.0f} registrations_per_s={regs:.0f} "
            f"getlogs_events_per_s={getlogs:.0f}"
        )
    finally:
        anvil.stop()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
