"""`autopool-devnet`: the whole system on a local chain, and a demo through it.

Starts Anvil, compiles and deploys AutoPool, creates and migrates a database, seeds the
company root, then runs the signer, the API, the listener and the settlement worker as real
processes. The demo registers a chain of sponsored wallets through the HTTP API, sends their
transactions, waits for the listener, asks the worker to pay out and prints the treasury
reconciliation. `--once` stops everything afterwards (CI); otherwise it keeps running.

TEST/DEV ONLY: it uses the well-known public Anvil keys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from eth_account import Account
from web3 import Web3

from devtools import scenario
from devtools.anvil import start_anvil, start_hardhat_node
from devtools.stack import (
    ADMIN_KEY,
    COMPANY_KEY,
    LISTENER_COMMAND,
    WORKER_COMMAND,
    Stack,
    compile_contracts,
    create_database,
    database_url,
    deploy_devnet_contract,
    migrate_and_seed,
    stack_env,
)


def say(msg: str) -> None:
    print(f"[devnet {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Autopool on a local Anvil chain")
    parser.add_argument("--once", action="store_true", help="run the demo, then stop")
    parser.add_argument("--participants", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=32, help="wallets in flight at once")
    parser.add_argument("--seed", type=int, default=1, help="the scenario's random choices")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "AUTOPOOL_DEVNET_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--chain",
        choices=("anvil", "hardhat"),
        default="anvil",
        help="the local chain: Anvil (npm @foundry-rs/anvil) or `npx hardhat node`",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="autopool-devnet-"))
    say("compiling contracts (offline solc-js)")
    compile_contracts()
    port = int(os.environ.get("AUTOPOOL_DEVNET_RPC_PORT", "0")) or None
    start_chain = start_hardhat_node if args.chain == "hardhat" else start_anvil
    anvil = start_chain(port=port, block_time=1)
    say(f"{args.chain} on {anvil.rpc_url} (chain {anvil.chain_id}, 1 s blocks)")
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    company = Account.from_key(COMPANY_KEY).address
    contract_address = deploy_devnet_contract(w3)
    say(f"AutoPool deployed at {contract_address}")
    db_name = os.environ.get("AUTOPOOL_DEVNET_DB", "autopool_devnet")
    asyncio.run(create_database(args.pg, db_name))
    env = stack_env(
        db_url=database_url(args.pg, db_name),
        redis_url=os.environ.get("AUTOPOOL_REDIS_URL", "redis://127.0.0.1:6379/14"),
        rpc_url=anvil.rpc_url,
        chain_id=anvil.chain_id,
        contract_address=contract_address,
        token=os.urandom(16).hex(),
    )
    # The worker's own cycles every 15 s (not 5): participants' pending rewards wait long
    # enough for the demo's withdraw requests and the operator's batches to have work.
    env["AUTOPOOL_SETTLEMENT_INTERVAL_SECONDS"] = "15"
    logs = work / "logs"
    logs.mkdir()
    stack = Stack(env=env, logs=logs, chain_id=anvil.chain_id, contract_address=contract_address)
    try:
        migrate_and_seed(env)
        say(f"database {db_name} migrated and seeded (company {company})")
        # The signer checks every payload against this ledger, through its own database role
        # (migration 0003): it starts once the database is migrated.
        signer = stack.start_signer()
        say(f"signer on {signer.url} (address {signer.address})")
        stack.add_api()
        stack.add("listener", LISTENER_COMMAND)
        stack.add("worker", WORKER_COMMAND)
        stack.start_all()
        api = stack.api_urls[0]
        say(f"API on {api} (docs at {api}/docs); process logs in {logs}")
        say(f"dapp page {api}/app/ and admin console {api}/admin/ (an injected wallet signs in)")

        report, summary = asyncio.run(
            scenario.run(
                api,
                anvil.rpc_url,
                company_key=COMPANY_KEY,
                admin_key=ADMIN_KEY,
                participants=args.participants,
                concurrency=args.concurrency,
                seed=args.seed,
            )
        )
        scenario.print_summary(report, summary)
        difference = int(summary["treasury"]["ledger_difference"])
        if difference != 0 or not summary["treasury"]["balanced"]:
            raise SystemExit(f"reconciliation: {difference} wei difference")
        say("reconciliation: 0 wei difference between the contract and the ledger")
        if not args.once:
            say("running; Ctrl-C stops everything")
            while all(p.poll() is None for p in stack.procs.values()):
                time.sleep(1)
    finally:
        stack.stop_all()
        anvil.stop()
        say("stopped")


if __name__ == "__main__":
    main()
