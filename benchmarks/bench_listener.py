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
import subprocess
import sys
import time
from pathlib import Path

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
from backend.core.wiring import current_plan  # noqa: E402
from backend.ledger.genesis import seed  # noqa: E402
from devtools.anvil import DEV_PRIVATE_KEYS, start_anvil  # noqa: E402
from devtools.deploy import deploy_autopool  # noqa: E402
from listener.sync import ChainSync, store_events  # noqa: E402

ADMIN_DSN = os.environ.get("AUTOPOOL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def register_all(w3: Web3, contract: object, count: int, company: str) -> None:
    """`count` registrations in slots 1..count, each sent by its own wallet (automine)."""
    pool = contract  # a web3 Contract
    plan = current_plan()
    signer_key = DEV_PRIVATE_KEYS[1]
    domain = Domain(w3.eth.chain_id, pool.address)  # type: ignore[attr-defined]
    price = int(plan.level_prices[0])
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 10 * 86_400
    gas_price = w3.eth.gas_price
    with Progress(transient=True) as progress:
        task = progress.add_task("registering on Anvil", total=count)
        for slot in range(1, count + 1):
            wallet: LocalAccount = Account.create()
            w3.provider.make_request(  # type: ignore[arg-type]
                "anvil_setBalance", [wallet.address, hex(price + 10**18)]
            )
            msg = {
                "user": wallet.address,
                "referrer": company,
                "slot": slot,
                "amount": price,
                "planHash": plan.plan_hash(),
                "nonce": slot,
                "deadline": deadline,
            }
            doc = full_message(domain, "Registration", msg)
            signature = Account.sign_typed_data(signer_key, full_message=doc).signature
            call = pool.functions.register(  # type: ignore[attr-defined]
                tuple(
                    msg[k]
                    for k in ("user", "referrer", "slot", "amount", "planHash", "nonce", "deadline")
                ),
                signature,
            )
            tx = call.build_transaction(
                {
                    "from": wallet.address,
                    "value": price,
                    "nonce": 0,
                    "gas": 200_000,
                    "gasPrice": gas_price,
                    "chainId": w3.eth.chain_id,
                }
            )
            w3.eth.send_raw_transaction(wallet.sign_transaction(tx).raw_transaction)
            progress.advance(task)
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


async def measure(
    db_url: str, rpc_url: str, contract: str, company: str, head: int, per_event: bool
) -> dict[str, float]:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    rpc = RpcClient([rpc_url])
    figures: dict[str, float] = {}
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
        started = time.perf_counter()
        await sync.sync_once()
        figures["ledger_s"] = time.perf_counter() - started
    finally:
        await rpc.aclose()
        await engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registrations", type=int, default=2_000)
    parser.add_argument(
        "--per-event", action="store_true", help="settle event by event (live mode's path)"
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
        started = time.perf_counter()
        register_all(w3, pool, args.registrations, company)
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
        f = asyncio.run(measure(db_url, anvil.rpc_url, pool.address, company, head, args.per_event))
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
        print(
            f"raw_events_per_s={raw:.0f} registrations_per_s={regs:.0f} "
            f"getlogs_events_per_s={getlogs:.0f}"
        )
    finally:
        anvil.stop()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
