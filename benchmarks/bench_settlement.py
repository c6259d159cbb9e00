"""Benchmark of the settlement worker end to end (issue 12).

    python benchmarks/bench_settlement.py                # 10,000 rewards, 2,000 recipients
    python benchmarks/bench_settlement.py --recipients 500 --rewards 2500   # quicker

One fresh Anvil, the contract deployed as for production, a fresh PostgreSQL database migrated
with Alembic, the real signer service as a subprocess (TEST-ONLY Anvil keys). The ledger is
seeded directly (users, `pending` reward lines, balances: not timed); the contract is funded
with the BNB owed. Recipients are existing, funded accounts, as in production.

Timed, end to end: build (batches sized by gas under the configured ceiling), sign (signer
service), submit (durable attempts, nonce manager), confirm through the listener's own sync
loop until every reward is `paid`. Then, in the same run, the same payouts as one plain
transfer each, for the gas ratio. The last line reads `transactions=N seconds=N gas_ratio=N`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from eth_account import Account
from web3 import AsyncHTTPProvider, AsyncWeb3, Web3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alembic import command
from alembic.config import Config
from pydantic import SecretStr

from backend.core.logging import configure_logging
from backend.core.settings import Settings
from backend.core.wiring import open_resources
from backend.payouts import service
from devtools.anvil import DEV_PRIVATE_KEYS, start_anvil
from devtools.deploy import deploy_autopool
from devtools.processes import REPO_ROOT, start_signer_process
from listener.sync import ChainSync

PG_ADMIN = os.environ.get("AUTOPOOL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PLAN_HASH = "0x" + "11" * 32


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def seed(dsn: str, wallets: list[str], rewards: int) -> int:
    """Users, `rewards` pending lines spread evenly over them, and their balances. Returns the
    total owed."""
    conn = await asyncpg.connect(dsn)
    try:
        event_id = await conn.fetchval(
            """INSERT INTO chain_events (chain_id, contract, block_number, block_hash,
               block_timestamp, tx_hash, log_index, name, args, processed_at)
               VALUES (31337, $1, 0, $2, 0, $2, 0, 'Seed', '{}'::jsonb, now()) RETURNING id""",
            "0x" + "00" * 20,
            "0x" + "ab" * 32,
        )
        await conn.executemany(
            "INSERT INTO users (wallet, status, role, is_frozen, has_retopup) "
            "VALUES ($1, 'active', 'user', false, false)",
            [(w,) for w in wallets],
        )
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM users ORDER BY id")]
        lines, owed = [], {u: 0 for u in ids}
        for n in range(rewards):
            user = ids[n % len(ids)]
            amount = 10**15 + n
            owed[user] += amount
            lines.append((event_id, n, user, amount, "DIRECT", "pending", "seed", PLAN_HASH))
        await conn.copy_records_to_table(
            "rewards",
            records=lines,
            columns=[
                "chain_event_id",
                "line_no",
                "user_id",
                "amount",
                "kind",
                "status",
                "source",
                "plan_hash",
            ],
        )
        await conn.executemany(
            "INSERT INTO user_balances (user_id, pending, held, reserved, batched, claimable, "
            "paid, reinvested) VALUES ($1, $2, 0, 0, 0, 0, 0, 0)",
            list(owed.items()),
        )
        return sum(owed.values())
    finally:
        await conn.close()


async def run(recipients: int, rewards: int) -> None:
    anvil = start_anvil(accounts=10)
    name = f"autopool_bench_{os.getpid()}_{secrets.token_hex(3)}"
    await admin(f'CREATE DATABASE "{name}"')
    database_url = (
        PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-settlement-"))
    signer = None
    try:
        cfg = Config(str(REPO_ROOT / "alembic.ini"))
        cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
        cfg.attributes["database_url"] = database_url
        cfg.attributes["configure_logger"] = False
        await asyncio.to_thread(command.upgrade, cfg, "head")

        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 60}))
        owner, signer_key, guardian, sender, payer = (DEV_PRIVATE_KEYS[i] for i in range(5))
        contract = deploy_autopool(
            w3,
            owner,
            owner=Account.from_key(owner).address,
            signer=Account.from_key(signer_key).address,
            guardian=Account.from_key(guardian).address,
            outflow_cap=2**128 - 1,
        )
        wallets = [Account.create().address for _ in range(recipients)]
        for wallet in wallets:  # existing accounts, as in production
            w3.provider.make_request("anvil_setBalance", [wallet, hex(10**15)])  # type: ignore[arg-type]
        total = await seed(database_url.replace("+asyncpg", ""), wallets, rewards)
        w3.provider.make_request("anvil_setBalance", [contract.address, hex(total)])  # type: ignore[arg-type]

        token = secrets.token_hex(16)
        signer = start_signer_process(
            raw_key=signer_key,
            chain_id=anvil.chain_id,
            contract_address=contract.address,
            audit_log=tmp / "signer-audit.jsonl",
            token=token,
            database_url=database_url,
            extra_env={
                "AUTOPOOL_SIGNER_MAX_BATCH_RECIPIENTS": "1000",
                "AUTOPOOL_SIGNER_MAX_BATCH_TOTAL_WEI": str(10**30),
                "AUTOPOOL_SIGNER_ROLLING_24H_CAP_WEI": str(10**30),
            },
        )
        settings = Settings(
            database_url=SecretStr(database_url),
            redis_url="redis://127.0.0.1:6379/12",
            rpc_url=anvil.rpc_url,
            chain_id=anvil.chain_id,
            contract_address=contract.address,
            signer_url=signer.url,
            signer_token=SecretStr(token),
            settlement_sender_key=SecretStr(sender),
            confirmations=2,
            log_json=True,  # the worker's own setting; the bench logs warnings only
            max_batch_recipients=1000,
            settlement_max_batches_per_cycle=20,
        )
        async with open_resources(settings) as res:
            sync = ChainSync(
                res.sessions,
                AsyncWeb3(AsyncHTTPProvider(anvil.rpc_url)),
                settings.chain_id,
                contract.address,
                confirmations=settings.confirmations,
            )
            w3.provider.make_request("anvil_mine", [hex(3)])  # type: ignore[arg-type]
            await sync.sync_once()  # the listener is caught up before the clock starts

            started = time.perf_counter()
            built = await service.build_batches(
                res, created_by="bench", limit=settings.settlement_max_batches_per_cycle
            )
            t_build = time.perf_counter() - started
            await service.sign_built(res)
            t_sign = time.perf_counter() - started - t_build
            await service.send_signed(res)
            sent = time.perf_counter() - started
            for _ in range(100):
                w3.provider.make_request("anvil_mine", [hex(settings.confirmations)])  # type: ignore[arg-type]
                await sync.sync_once()
                async with res.sessions() as s:
                    from sqlalchemy import text

                    left = await s.scalar(
                        text("SELECT count(*) FROM rewards WHERE status <> 'paid'")
                    )
                if not left:
                    break
                await service.send_signed(res)
            else:
                raise SystemExit("rewards still unpaid after 100 rounds")
            seconds = time.perf_counter() - started
            await service.send_signed(res)  # record the last receipts
            async with res.sessions() as s:
                from sqlalchemy import text

                rows = (
                    await s.execute(
                        text(
                            "SELECT a.tx_hash, b.recipient_count FROM tx_attempts a "
                            "JOIN payout_batches b ON b.id = a.batch_id WHERE a.status = 'mined'"
                        )
                    )
                ).all()
                attempts = await s.scalar(text("SELECT count(*) FROM tx_attempts"))
        batch_gas = sum(int(w3.eth.get_transaction_receipt(h)["gasUsed"]) for h, _ in rows)  # type: ignore[arg-type]
        batch_lines = sum(int(n) for _, n in rows)

        # The same payouts as one plain transfer each, in the same run.
        payer_acct = Account.from_key(payer)
        nonce = w3.eth.get_transaction_count(payer_acct.address)
        price = w3.eth.gas_price
        per_wallet: dict[str, int] = {}
        for n in range(rewards):
            per_wallet[wallets[n % len(wallets)]] = per_wallet.get(wallets[n % len(wallets)], 0)
            per_wallet[wallets[n % len(wallets)]] += 10**15 + n
        hashes = []
        for i, (wallet, amount) in enumerate(per_wallet.items()):
            tx = {
                "to": wallet,
                "value": amount,
                "gas": 21_000,
                "gasPrice": price,
                "nonce": nonce + i,
                "chainId": anvil.chain_id,
            }
            hashes.append(
                w3.eth.send_raw_transaction(payer_acct.sign_transaction(tx).raw_transaction)
            )
        w3.provider.make_request("anvil_mine", [hex(1)])  # type: ignore[arg-type]
        transfer_gas = sum(
            int(w3.eth.wait_for_transaction_receipt(h, timeout=60)["gasUsed"]) for h in hashes
        )
        per_batch_line = batch_gas / batch_lines
        per_transfer = transfer_gas / len(hashes)
        ratio = per_batch_line / per_transfer
        print(
            f"recipients={recipients} rewards={rewards} batches={len(rows)} "
            f"built={len(built)} attempts={attempts} batch_gas={batch_gas} "
            f"per_recipient={per_batch_line:.0f} plain_transfer={per_transfer:.0f} "
            f"gas_ceiling={settings.settlement_gas_ceiling} "
            f"build_s={t_build:.2f} sign_s={t_sign:.2f} submit_s={sent - t_build - t_sign:.2f} "
            f"confirm_s={seconds - sent:.2f}"
        )
        print(f"transactions={attempts} seconds={seconds:.2f} gas_ratio={ratio:.3f}")
    finally:
        if signer is not None:
            signer.stop()
        anvil.stop()
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    configure_logging(json=True, level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=2_000)
    parser.add_argument("--rewards", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(run(args.recipients, args.rewards))


if __name__ == "__main__":
    main()
