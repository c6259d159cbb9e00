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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from eth_account import Account
from web3 import Web3

from devtools import scenario
from devtools.anvil import DEV_PRIVATE_KEYS, start_anvil, start_hardhat_node
from devtools.deploy import deploy_autopool
from devtools.processes import REPO_ROOT, SignerProcess, free_port, start_signer_process

DEVNET_CAP_WEI = 10_000_000 * 10**18
DEMO_PLAN = REPO_ROOT / "devtools" / "plans" / "demo.json"


def say(msg: str) -> None:
    print(f"[devnet {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def _create_db(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


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
    procs: list[subprocess.Popen[bytes]] = []
    say("compiling contracts (offline solc-js)")
    subprocess.run(
        ["npx", "--no-install", "hardhat", "compile", "--quiet"],
        cwd=REPO_ROOT,
        check=True,
    )
    port = int(os.environ.get("AUTOPOOL_DEVNET_RPC_PORT", "0")) or None
    start_chain = start_hardhat_node if args.chain == "hardhat" else start_anvil
    anvil = start_chain(port=port, block_time=1)
    say(f"{args.chain} on {anvil.rpc_url} (chain {anvil.chain_id}, 1 s blocks)")
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    owner, signer_key, guardian, sender = DEV_PRIVATE_KEYS[:4]
    company_key, admin_key = DEV_PRIVATE_KEYS[9], DEV_PRIVATE_KEYS[8]
    company = Account.from_key(company_key).address
    contract = deploy_autopool(
        w3,
        owner,
        owner=Account.from_key(owner).address,
        signer=Account.from_key(signer_key).address,
        guardian=Account.from_key(guardian).address,
        # Devnet caps sized for `--participants` in the thousands (mainnet's are far lower).
        outflow_cap=DEVNET_CAP_WEI,
    )
    say(f"AutoPool deployed at {contract.address}")
    db_name = "autopool_devnet"
    asyncio.run(_create_db(args.pg, db_name))
    db_url = args.pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    db_url += f"/{db_name}"
    api_port = free_port()
    token = os.urandom(16).hex()
    env = {
        **os.environ,
        "AUTOPOOL_DATABASE_URL": db_url,
        "AUTOPOOL_REDIS_URL": os.environ.get("AUTOPOOL_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "AUTOPOOL_RPC_URL": anvil.rpc_url,
        "AUTOPOOL_CHAIN_ID": str(anvil.chain_id),
        "AUTOPOOL_CONTRACT_ADDRESS": contract.address,
        "AUTOPOOL_COMPANY_WALLET": company,
        # The demo's admin (also an operator: it builds, signs and submits batches).
        "AUTOPOOL_ADMIN_WALLETS": Account.from_key(admin_key).address,
        # A plan whose reserve covers the next level's price: matrices auto-progress.
        "AUTOPOOL_PLAN_PATH": str(DEMO_PLAN),
        "AUTOPOOL_SIGNER_TOKEN": token,
        "AUTOPOOL_SETTLEMENT_SENDER_KEY": sender,
        "AUTOPOOL_CONFIRMATIONS": "2",
        "AUTOPOOL_LOG_JSON": "false",
        # One local client drives every wallet of the demo: limits sized for that.
        "AUTOPOOL_RATE_LIMIT_AUTH": "100000/minute",
        "AUTOPOOL_RATE_LIMIT_DEFAULT": "100000/minute",
        "AUTOPOOL_MAX_LIVE_LEASES_PER_IP": "100000",
        "AUTOPOOL_JWT_SECRET": os.urandom(32).hex(),
        "AUTOPOOL_RECONCILIATION_INTERVAL_SECONDS": "10",
    }
    py = sys.executable
    signer: SignerProcess | None = None
    try:
        subprocess.run(
            [py, "-m", "alembic", "upgrade", "head"],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run([py, "-m", "backend.cli", "seed"], cwd=REPO_ROOT, env=env, check=True)
        say(f"database {db_name} migrated and seeded (company {company})")
        # The signer checks every payload against this ledger, through its own database role
        # (migration 0003): it starts once the database is migrated.
        signer = start_signer_process(
            raw_key=signer_key,
            chain_id=anvil.chain_id,
            contract_address=contract.address,
            audit_log=work / "signer-audit.jsonl",
            token=token,
            database_url=db_url,
            extra_env={
                "AUTOPOOL_SIGNER_MAX_BATCH_TOTAL_WEI": str(DEVNET_CAP_WEI),
                "AUTOPOOL_SIGNER_ROLLING_24H_CAP_WEI": str(DEVNET_CAP_WEI),
            },
        )
        env["AUTOPOOL_SIGNER_URL"] = signer.url
        say(f"signer on {signer.url} (address {signer.address})")
        logs = work / "logs"
        logs.mkdir()
        for name, cmd in {
            "api": [
                py,
                "-m",
                "uvicorn",
                "--factory",
                "backend.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
                "--log-level",
                "warning",
            ],
            "listener": [py, "-m", "listener"],
            # The settlement worker and its schedule (cycles, reconciliation).
            "worker": [py, "-m", "backend.cli", "worker"],
        }.items():
            out = (logs / f"{name}.log").open("wb")
            procs.append(subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=out))
        api = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{api}/health")
        say(f"API on {api} (docs at {api}/docs); process logs in {logs}")
        say(f"dapp page {api}/app/ and admin console {api}/admin/ (an injected wallet signs in)")

        report, summary = asyncio.run(
            scenario.run(
                api,
                anvil.rpc_url,
                company_key=company_key,
                admin_key=admin_key,
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
            while all(p.poll() is None for p in procs):
                time.sleep(1)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if signer is not None:
            signer.stop()
        anvil.stop()
        say("stopped")


if __name__ == "__main__":
    main()
