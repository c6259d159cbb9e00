"""The whole stack as child processes, for the devnet and the fault scenario: compile and
deploy the contract, create, migrate and seed a database, and start, kill and restart the
signer, API replicas, the listener and the settlement worker.

TEST/DEV ONLY: it uses the well-known public Anvil keys.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from eth_account import Account
from web3 import Web3

from devtools.anvil import DEV_PRIVATE_KEYS, AnvilNode, start_anvil
from devtools.deploy import deploy_autopool
from devtools.processes import REPO_ROOT, SignerProcess, free_port, start_signer_process, stop_group

DEVNET_CAP_WEI = 10_000_000 * 10**18
DEMO_PLAN = REPO_ROOT / "devtools" / "plans" / "demo.json"

# Which public Anvil key plays which role.
OWNER_KEY, SIGNER_KEY, GUARDIAN_KEY, SENDER_KEY = DEV_PRIVATE_KEYS[:4]
COMPANY_KEY, ADMIN_KEY = DEV_PRIVATE_KEYS[9], DEV_PRIVATE_KEYS[8]


def compile_contracts() -> None:
    subprocess.run(
        ["npx", "--no-install", "hardhat", "compile", "--quiet"], cwd=REPO_ROOT, check=True
    )


def deploy_devnet_contract(w3: Web3) -> str:
    """AutoPool deployed with the devnet's roles and caps (sized for thousands of
    participants; mainnet's are far lower); its address."""
    contract = deploy_autopool(
        w3,
        OWNER_KEY,
        owner=Account.from_key(OWNER_KEY).address,
        signer=Account.from_key(SIGNER_KEY).address,
        guardian=Account.from_key(GUARDIAN_KEY).address,
        outflow_cap=DEVNET_CAP_WEI,
    )
    return str(contract.address)


async def create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def database_url(admin_url: str, name: str) -> str:
    """The asyncpg DSN of database `name` on the server of `admin_url` (`postgresql://…`)."""
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


def stack_env(
    *,
    db_url: str,
    redis_url: str,
    rpc_url: str,
    chain_id: int,
    contract_address: str,
    token: str,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment every process of the stack shares."""
    return {
        **os.environ,
        "AUTOPOOL_DATABASE_URL": db_url,
        "AUTOPOOL_REDIS_URL": redis_url,
        "AUTOPOOL_RPC_URL": rpc_url,
        "AUTOPOOL_CHAIN_ID": str(chain_id),
        "AUTOPOOL_CONTRACT_ADDRESS": contract_address,
        "AUTOPOOL_COMPANY_WALLET": Account.from_key(COMPANY_KEY).address,
        # The demo's admin (also an operator: it builds, signs and submits batches).
        "AUTOPOOL_ADMIN_WALLETS": Account.from_key(ADMIN_KEY).address,
        # A plan whose reserve covers the next level's price: matrices auto-progress.
        "AUTOPOOL_PLAN_PATH": str(DEMO_PLAN),
        "AUTOPOOL_SIGNER_TOKEN": token,
        "AUTOPOOL_SETTLEMENT_SENDER_KEY": SENDER_KEY,
        "AUTOPOOL_CONFIRMATIONS": "2",
        "AUTOPOOL_LOG_JSON": "false",
        # One local client drives every wallet of the demo: limits sized for that.
        "AUTOPOOL_RATE_LIMIT_AUTH": "100000/minute",
        "AUTOPOOL_RATE_LIMIT_DEFAULT": "100000/minute",
        "AUTOPOOL_MAX_LIVE_LEASES_PER_IP": "100000",
        "AUTOPOOL_JWT_SECRET": os.urandom(32).hex(),
        "AUTOPOOL_RECONCILIATION_INTERVAL_SECONDS": "10",
        **(extra or {}),
    }


def migrate_and_seed(env: dict[str, str]) -> None:
    py = sys.executable
    subprocess.run(
        [py, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run([py, "-m", "backend.cli", "seed"], cwd=REPO_ROOT, env=env, check=True)


def api_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "backend.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


LISTENER_COMMAND = [sys.executable, "-m", "listener"]
# The settlement worker and its schedule (cycles, reconciliation).
WORKER_COMMAND = [sys.executable, "-m", "backend.cli", "worker"]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@dataclass
class Stack:
    """The stack's processes by name (`api-0`, `api-1`, …, `listener`, `worker`, `signer`),
    each restartable with the same command, environment, port and log file.

    The signer keeps its port across restarts, so the others' `AUTOPOOL_SIGNER_URL` holds.
    Processes are started in their own process group: a SIGKILL reaches a worker's children.
    """

    env: dict[str, str]
    logs: Path
    chain_id: int
    contract_address: str
    api_ports: list[int] = field(default_factory=list)
    commands: dict[str, list[str]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    signer: SignerProcess | None = None
    signer_port: int = 0

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    def start_signer(self) -> SignerProcess:
        self.signer_port = self.signer_port or free_port()
        self.signer = start_signer_process(
            raw_key=SIGNER_KEY,
            chain_id=self.chain_id,
            contract_address=self.contract_address,
            audit_log=self.logs / "signer-audit.jsonl",
            token=self.env["AUTOPOOL_SIGNER_TOKEN"],
            database_url=self.env["AUTOPOOL_DATABASE_URL"],
            extra_env={
                "AUTOPOOL_SIGNER_MAX_BATCH_TOTAL_WEI": str(DEVNET_CAP_WEI),
                "AUTOPOOL_SIGNER_ROLLING_24H_CAP_WEI": str(DEVNET_CAP_WEI),
            },
            port=self.signer_port,
        )
        self.env["AUTOPOOL_SIGNER_URL"] = self.signer.url
        return self.signer

    def add(self, name: str, command: list[str]) -> None:
        self.commands[name] = command

    def add_api(self, port: int | None = None) -> str:
        port = port or free_port()
        name = f"api-{len(self.api_ports)}"
        self.api_ports.append(port)
        self.add(name, api_command(port))
        return name

    def start(self, name: str) -> None:
        if name == "signer":
            self.start_signer()
            return
        with (self.logs / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                self.commands[name],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def start_all(self) -> None:
        for name in self.commands:
            self.start(name)
        for url in self.api_urls:
            wait_http(f"{url}/health")

    def kill(self, name: str) -> None:
        """SIGKILL the process (and its group: a worker's children die with it)."""
        if name == "signer":
            assert self.signer is not None
            self.signer.process.kill()  # started by start_signer, in our own process group
            self.signer.process.wait()
            return
        proc = self.procs[name]
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: start()
            except (ProcessLookupError, PermissionError):
                proc.kill()
        proc.wait()

    def alive(self, name: str) -> bool:
        proc = self.signer.process if name == "signer" and self.signer else self.procs[name]
        return proc.poll() is None

    def pids(self) -> dict[str, int]:
        out = {name: p.pid for name, p in self.procs.items()}
        if self.signer is not None:
            out["signer"] = self.signer.process.pid
        return out

    def stop_all(self) -> None:
        for proc in self.procs.values():
            stop_group(proc, timeout=10)
        if self.signer is not None:
            self.signer.stop()


class RedisServer:
    """The scenario's own redis-server (never the shared one): no persistence, so a restart
    loses every queued message, as the issue asks."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found (apt-get install redis-server)")
        with (self.work / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.work)),
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ping = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@dataclass
class LocalStack:
    """A whole stack of its own: Anvil, a redis-server, a fresh database, the processes."""

    stack: Stack
    anvil: AnvilNode
    redis: RedisServer
    pg: str
    db_name: str
    work: Path
    keep: bool = True
    """Keep the database and logs when the context ends (set False once the run passed)."""

    @property
    def db_dsn(self) -> str:
        return self.pg.rsplit("/", 1)[0] + "/" + self.db_name


@contextmanager
def local_stack(
    pg: str, name: str, *, apis: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[LocalStack]:
    """Compile, start Anvil (1 s blocks) and a redis-server on free ports, deploy, create
    database `autopool_<name>_<pid>` on the server of `pg`, migrate, seed, and start the
    signer, `apis` API replicas, the listener and the worker; everything is stopped at the
    end (database and logs dropped unless `keep`)."""
    work = Path(tempfile.mkdtemp(prefix=f"autopool-{name}-"))
    logs = work / "logs"
    logs.mkdir()
    compile_contracts()
    redis = RedisServer(work)
    redis.start()
    anvil = start_anvil(block_time=1)
    db_name = f"autopool_{name}_{os.getpid()}"
    stack: Stack | None = None
    local: LocalStack | None = None
    try:
        contract_address = deploy_devnet_contract(Web3(Web3.HTTPProvider(anvil.rpc_url)))
        asyncio.run(create_database(pg, db_name))
        env = stack_env(
            db_url=database_url(pg, db_name),
            redis_url=redis.url,
            rpc_url=anvil.rpc_url,
            chain_id=anvil.chain_id,
            contract_address=contract_address,
            token=os.urandom(16).hex(),
            extra=extra_env,
        )
        stack = Stack(
            env=env, logs=logs, chain_id=anvil.chain_id, contract_address=contract_address
        )
        migrate_and_seed(env)
        stack.start_signer()
        for _ in range(apis):
            stack.add_api()
        stack.add("listener", LISTENER_COMMAND)
        stack.add("worker", WORKER_COMMAND)
        stack.start_all()
        local = LocalStack(stack, anvil, redis, pg, db_name, work)
        yield local
    finally:
        try:
            if stack is not None:
                stack.stop_all()
        finally:
            anvil.stop()
            redis.stop()
        if local is not None and not local.keep:
            asyncio.run(drop_database(pg, db_name))
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept database {db_name} and logs in {logs}", flush=True)
