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
from typing import Any

import asyncpg
import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from devtools.anvil import DEV_PRIVATE_KEYS, start_anvil
from devtools.dapp import bearer, sign_in_sync
from devtools.deploy import deploy_autopool
from devtools.processes import REPO_ROOT, SignerProcess, free_port, start_signer_process
from devtools.wallet import send_as_wallet

ENTRY_WAIT_SECONDS = 60


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


def _send(w3: Web3, acct: LocalAccount, tx: dict[str, Any]) -> int:
    receipt = send_as_wallet(w3, acct, tx)
    if receipt["status"] != 1:
        raise RuntimeError("transaction reverted")
    return int(receipt["blockNumber"])


def _wait_for(predicate: Any, what: str, timeout: float = ENTRY_WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}")


def demo(w3: Web3, api: str, company: str, participants: int) -> dict[str, Any]:
    sponsor = company
    for i in range(participants):
        acct: LocalAccount = Account.create()
        w3.provider.make_request("anvil_setBalance", [acct.address, hex(100 * 10**18)])  # type: ignore[arg-type]
        with httpx.Client(base_url=api, timeout=30) as client:
            tokens = sign_in_sync(client, acct)  # Sign-In with Ethereum, as a dapp would
            r = client.post("/users/register", json={"referrer": sponsor}, headers=bearer(tokens))
        r.raise_for_status()
        body = r.json()
        block = _send(w3, acct, body["tx"])
        say(
            f"wallet {i + 1}/{participants} {acct.address} registered in slot "
            f"{body['payload']['slot']} (block {block})"
        )

        def confirmed(b: int = block) -> bool:
            summary = httpx.get(f"{api}/treasury/summary", timeout=10).json()
            return int(summary["block"]) >= b

        _wait_for(confirmed, f"the listener to confirm block {block}")
        sponsor = acct.address
    return dict(httpx.get(f"{api}/treasury/summary", timeout=10).json())


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Autopool on a local Anvil chain")
    parser.add_argument("--once", action="store_true", help="run the demo, then stop")
    parser.add_argument("--participants", type=int, default=7)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "AUTOPOOL_DEVNET_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
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
    anvil = start_anvil(
        port=int(os.environ.get("AUTOPOOL_DEVNET_RPC_PORT", "0")) or None, block_time=1
    )
    say(f"anvil on {anvil.rpc_url} (chain {anvil.chain_id}, 1 s blocks)")
    w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
    owner, signer_key, guardian, sender = DEV_PRIVATE_KEYS[:4]
    company = Account.from_key(DEV_PRIVATE_KEYS[9]).address
    contract = deploy_autopool(
        w3,
        owner,
        owner=Account.from_key(owner).address,
        signer=Account.from_key(signer_key).address,
        guardian=Account.from_key(guardian).address,
        outflow_cap=10_000 * 10**18,
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
        "AUTOPOOL_SIGNER_TOKEN": token,
        "AUTOPOOL_SETTLEMENT_SENDER_KEY": sender,
        "AUTOPOOL_CONFIRMATIONS": "2",
        "AUTOPOOL_LOG_JSON": "false",
        # One local client drives every wallet of the demo: limits sized for that.
        "AUTOPOOL_RATE_LIMIT_AUTH": "100000/minute",
        "AUTOPOOL_RATE_LIMIT_DEFAULT": "100000/minute",
        "AUTOPOOL_MAX_LIVE_LEASES_PER_IP": "100000",
        "AUTOPOOL_JWT_SECRET": os.urandom(32).hex(),
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
            "worker": [
                py,
                "-m",
                "dramatiq",
                "backend.payouts.tasks",
                "--processes",
                "1",
                "--threads",
                "2",
            ],
        }.items():
            out = (logs / f"{name}.log").open("wb")
            procs.append(subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=out))
        api = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{api}/health")
        say(f"API on {api} (docs at {api}/docs); process logs in {logs}")

        before = demo(w3, api, company, args.participants)
        say(
            f"ledger before payout: liabilities {before['liabilities']['total']} wei, "
            f"contract {before['contract_balance']} wei, balanced={before['balanced']}"
        )
        subprocess.run(
            [py, "-m", "backend.cli", "payouts", "enqueue"],
            cwd=REPO_ROOT,
            env=env,
            check=True,
        )

        def paid() -> dict[str, Any] | None:
            s = dict(httpx.get(f"{api}/treasury/summary", timeout=10).json())
            return s if int(s["outflows"]) > 0 else None

        after = _wait_for(paid, "the payout batch to execute and confirm")
        say(
            f"payout confirmed: outflows {after['outflows']} wei; contract balance "
            f"{after['contract_balance']} wei == liabilities {after['liabilities']['total']} wei:"
            f" balanced={after['balanced']}"
        )
        if not after["balanced"]:
            raise SystemExit("treasury does not balance")
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
