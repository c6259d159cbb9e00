"""API benchmark: `POST /users/register` and `GET /users/me` beside `GET /health`, open loop.

    python benchmarks/bench_api.py [--participants 100000] [--duration 10]
        [--register-rate 400] [--me-rate 2000] [--workers 2] [--sample 20]

Setup (all local, all real): a database of its own (created, migrated, dropped at the end)
seeded with `--participants` confirmed participants (devtools.seed, straight to the tables),
Anvil with the contract deployed, the signer service checking every payload against that
ledger, and the API under uvicorn with `--workers` processes, the way it runs in production.

Load: an open-loop generator schedules requests at a fixed rate for `--duration` s whatever
the server does, so a slow server is charged for the queue it builds: latency is measured
from each request's scheduled time, not from its send. Requests go through `loadgen.LeanClient`
(keep-alive connections, httptools parsing, on uvloop): it costs a fraction of aiohttp's CPU
per request, which on this machine is taken from the stack being measured. Sign-in, before the
runs, uses aiohttp.
  * register — distinct wallets, each signed in with SIWE beforehand, each from an address of
    its own (`X-Forwarded-For`, the API run with `--proxy-headers` as behind a proxy), so the
    per-address cap on unpaid leases is the default one; sponsors drawn from the seeded
    participants. Every response is checked (payload, signature, a `tx` to the contract);
    `--sample` of them are then sent to Anvil by their wallets and must succeed.
  * me       — signed-in seeded participants, round robin.
  * health   — `GET /health` at the `me` rate: the floor of the stack in the same run.

The last line reads `register_rps=N me_rps=N health_rps=N` (successful responses per second
achieved at the offered rate). The generator shares the machine's cores with the API,
PostgreSQL, Redis and the signer: figures are for this whole stack on one machine. Each run
also reports the CPU time the API's processes, the signer's and the database's backends
spent per request, from /proc: a cost that other load on the machine inflates far less than
requests per second.

TEST-ONLY keys: Anvil's public dev keys; nothing here touches a real chain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import orjson  # noqa: E402
import uvloop  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.messages import encode_defunct  # noqa: E402
from eth_account.signers.local import LocalAccount  # noqa: E402
from eth_utils import keccak  # noqa: E402
from rich.progress import Progress  # noqa: E402
from web3 import Web3  # noqa: E402

from backend.core.db import make_engine, make_sessionmaker  # noqa: E402
from benchmarks.loadgen import LeanClient  # noqa: E402
from devtools.anvil import DEV_PRIVATE_KEYS, start_anvil  # noqa: E402
from devtools.deploy import deploy_autopool  # noqa: E402
from devtools.processes import free_port, start_signer_process, stop_process  # noqa: E402
from devtools.seed import grow_level_one, synthetic_wallet  # noqa: E402
from devtools.stack import wait_http  # noqa: E402
from devtools.wallet import send_as_wallet  # noqa: E402

ADMIN_DSN = os.environ.get("AUTOPOOL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
KEYED = 256  # seeded participants with a key of their own (signed in for GET /users/me)
CLIENTS = 64  # keep-alive connections open before each run
WARM_UP = 2.0  # s of each run's requests at its rate before it is measured


def seeded_key(index: int) -> LocalAccount:
    """TEST-ONLY deterministic key of seeded participant `index`."""
    acct: LocalAccount = Account.from_key(keccak(text=f"autopool-bench-{index}"))
    return acct


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` and its descendants still running (Linux /proc;
    0 where it is not available)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def backends_cpu_seconds(database: str) -> dict[int, float]:
    """User + system CPU time of each PostgreSQL backend serving `database`, by pid (Linux
    /proc: a backend's title names its database; empty where it is not available)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not title.startswith("postgres: ") or f" {database} " not in title:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return found


def cpu_seconds(target: int | str) -> dict[int, float]:
    """CPU seconds by pid of `target`: a process tree (its pid) or a database's backends."""
    if isinstance(target, str):
        return backends_cpu_seconds(target)
    return {target: tree_cpu_seconds(target)}


@dataclass
class Run:
    name: str
    offered: float
    ok: int
    failed: int
    elapsed: float
    latencies: list[float]  # from each request's scheduled time, seconds
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds in the run

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self) -> str:
        return (
            f"{self.name:<9} offered {self.offered:>6.0f}/s  achieved {self.rps:>7.1f}/s  "
            f"ok {self.ok:>6}  failed {self.failed:>4}  p50 {self.pct(0.5):>7.1f} ms  "
            f"p99 {self.pct(0.99):>7.1f} ms  max {self.pct(1.0):>7.1f} ms"
        )

    def cpu_line(self) -> str:
        answered = self.ok + self.failed
        per = ", ".join(
            f"{name} {1000 * seconds / answered:.2f} ms" for name, seconds in self.cpu.items()
        )
        return f"{self.name:<9} CPU per request: {per}" if answered and per else ""


async def open_loop(
    name: str,
    rate: float,
    duration: float,
    fire: Callable[[int], Awaitable[bool]],
    watch: dict[str, int | str] | None = None,
) -> Run:
    """Fire request i at t0 + i/rate for `duration` s, whatever the answers' pace; the CPU
    time each process of `watch` (name -> pid, with its children; or a database name: its
    backends) spent meanwhile."""
    watch = watch or {}
    cpu_before = {process: cpu_seconds(target) for process, target in watch.items()}
    loop = asyncio.get_running_loop()
    total = int(rate * duration)
    latencies: list[float] = []
    outcome = {"ok": 0, "failed": 0, "last": 0.0}
    t0 = loop.time() + 0.05

    async def one(i: int, scheduled: float) -> None:
        try:
            async with asyncio.timeout(30):  # unanswered after 30 s: failed
                good = await fire(i)
        except (aiohttp.ClientError, ConnectionError, TimeoutError):
            good = False
        done = loop.time()
        latencies.append(done - scheduled)
        outcome["ok" if good else "failed"] += 1
        outcome["last"] = max(outcome["last"], done)

    tasks = []
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    cpu = {}
    for process, target in watch.items():
        after, before = cpu_seconds(target), cpu_before[process]
        cpu[process] = sum(t - before.get(pid, 0.0) for pid, t in after.items())
    elapsed = max(outcome["last"] - t0, duration)
    return Run(name, rate, int(outcome["ok"]), int(outcome["failed"]), elapsed, latencies, cpu)


async def sign_in_all(
    http: aiohttp.ClientSession, api: str, accounts: list[LocalAccount], what: str
) -> list[str]:
    """SIWE for each account (32 at a time); their access tokens, in order."""
    tokens: list[str] = [""] * len(accounts)
    gate = asyncio.Semaphore(32)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"signing in {what}", total=len(accounts))

        async def one(i: int, acct: LocalAccount) -> None:
            async with gate:
                async with http.get(f"{api}/auth/nonce", params={"wallet": acct.address}) as r:
                    r.raise_for_status()
                    nonce = await r.json()
                sig = acct.sign_message(encode_defunct(text=nonce["message"])).signature
                body = {
                    "wallet": acct.address,
                    "signature": "0x" + sig.hex(),
                    "nonce": nonce["nonce"],
                }
                async with http.post(f"{api}/auth/wallet", json=body) as r:
                    r.raise_for_status()
                    tokens[i] = (await r.json())["accessToken"]
                progress.advance(task)

        await asyncio.gather(*(one(i, a) for i, a in enumerate(accounts)))
    return tokens


async def seed_database(db_url: str, participants: int) -> list[LocalAccount]:
    keyed = [seeded_key(i) for i in range(1, min(KEYED, participants - 1) + 1)]
    wallets = [a.address for a in keyed] + [
        synthetic_wallet(i) for i in range(len(keyed) + 1, participants)
    ]
    engine = make_engine(db_url)
    try:
        await grow_level_one(make_sessionmaker(engine), participants, wallets)
    finally:
        await engine.dispose()
    return keyed


async def measure(
    api: str,
    contract: str,
    keyed: list[LocalAccount],
    participants: int,
    args: argparse.Namespace,
    watch: dict[str, int | str],
) -> tuple[Run, Run, Run, list[tuple[LocalAccount, dict[str, Any]]]]:
    rng = random.Random(7)
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        warm_registrations = int(args.register_rate * WARM_UP)
        registrants = [
            Account.create()
            for _ in range(warm_registrations + int(args.register_rate * args.duration))
        ]
        reg_tokens = await sign_in_all(http, api, registrants, "registrants")
        me_tokens = await sign_in_all(http, api, keyed, "seeded participants")
        sponsors = [synthetic_wallet(rng.randrange(KEYED + 1, participants)) for _ in registrants]
        answers: dict[int, dict[str, Any]] = {}
        lean = LeanClient("127.0.0.1", int(api.rsplit(":", 1)[1]))
        register_requests = [
            LeanClient.post(
                "/users/register",
                orjson.dumps({"referrer": sponsors[i]}),
                {
                    "Authorization": f"Bearer {token}",
                    "X-Forwarded-For": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                },
            )
            for i, token in enumerate(reg_tokens)
        ]
        me_requests = [
            LeanClient.get("/users/me", {"Authorization": f"Bearer {token}"}) for token in me_tokens
        ]
        health_request = LeanClient.get("/health")

        async def register(i: int) -> bool:
            status, raw = await lean.request(register_requests[i])
            if status != 200:
                return False
            body = orjson.loads(raw)
            valid = (
                body["tx"]["to"].lower() == contract.lower()
                and body["payload"]["user"].lower() == registrants[i].address.lower()
                and len(body["signature"]) == 132
            )
            if valid:
                answers[i] = body
            return bool(valid)

        async def me(i: int) -> bool:
            status, _ = await lean.request(me_requests[i % len(me_requests)])
            return status == 200

        async def health(i: int) -> bool:
            status, _ = await lean.request(health_request)
            return status == 200

        # Before each run, CLIENTS connections are open (as that many clients' would be,
        # spread by the server over its workers; requests rotate over them), and the same
        # requests (registrations: of other wallets) have run for WARM_UP s at the run's
        # rate, not counted: each worker's
        # database and Redis pools have grown to what that rate needs (a connection opened
        # during a run cost its first second a p99 of 270-580 ms at 800 me/s).
        await lean.warm(CLIENTS)
        await open_loop("warm-up", args.me_rate, WARM_UP, health)
        health_run = await open_loop("health", args.me_rate, args.duration, health, watch)
        await lean.warm(CLIENTS)
        await open_loop("warm-up", args.me_rate, WARM_UP, me)
        me_run = await open_loop("me", args.me_rate, args.duration, me, watch)
        await lean.warm(CLIENTS)
        await open_loop("warm-up", args.register_rate, WARM_UP, register)  # wallets of its own

        async def measured_register(i: int) -> bool:
            return await register(warm_registrations + i)

        register_run = await open_loop(
            "register", args.register_rate, args.duration, measured_register, watch
        )
        await lean.aclose()
    picked = rng.sample(sorted(answers), min(args.sample, len(answers)))
    return register_run, me_run, health_run, [(registrants[i], answers[i]) for i in picked]


def send_samples(w3: Web3, samples: list[tuple[LocalAccount, dict[str, Any]]]) -> int:
    """Fund each sampled registrant and send its returned tx; how many succeeded."""
    funder = Account.from_key(DEV_PRIVATE_KEYS[5])
    ok = 0
    for acct, answer in samples:
        fund = {
            "from": funder.address,
            "to": acct.address,
            "value": int(answer["tx"]["value"]) + 10**17,
            "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(funder.address),
            "gasPrice": w3.eth.gas_price,
            "gas": 21_000,
        }
        signed = funder.sign_transaction(fund)
        w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
        ok += send_as_wallet(w3, acct, answer["tx"])["status"] == 1
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--register-rate", type=float, default=400.0)
    parser.add_argument("--me-rate", type=float, default=2000.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=20)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="autopool-bench-api-"))
    db_name = f"autopool_bench_api_{os.getpid()}"
    db_url = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    db_url += f"/{db_name}"
    procs: list[subprocess.Popen[bytes]] = []
    anvil = start_anvil()
    signer = None

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        owner, signer_key, guardian, sender = DEV_PRIVATE_KEYS[:4]
        contract = deploy_autopool(
            w3,
            owner,
            owner=Account.from_key(owner).address,
            signer=Account.from_key(signer_key).address,
            guardian=Account.from_key(guardian).address,
            outflow_cap=10_000 * 10**18,
        )
        asyncio.run(admin(f'CREATE DATABASE "{db_name}"'))
        token = os.urandom(16).hex()
        env = {
            **os.environ,
            "AUTOPOOL_DATABASE_URL": db_url,
            "AUTOPOOL_REDIS_URL": os.environ.get("AUTOPOOL_REDIS_URL", "redis://127.0.0.1:6379/8"),
            "AUTOPOOL_RPC_URL": anvil.rpc_url,
            "AUTOPOOL_CHAIN_ID": str(anvil.chain_id),
            "AUTOPOOL_CONTRACT_ADDRESS": contract.address,
            "AUTOPOOL_COMPANY_WALLET": Account.from_key(DEV_PRIVATE_KEYS[9]).address,
            "AUTOPOOL_SIGNER_TOKEN": token,
            "AUTOPOOL_SETTLEMENT_SENDER_KEY": sender,
            "AUTOPOOL_LOG_JSON": "true",
            # One local generator is every client: request rate limits sized for that (each
            # registrant has an address of its own: the unpaid-lease cap stays the default).
            "AUTOPOOL_RATE_LIMIT_AUTH": "10000000/minute",
            "AUTOPOOL_RATE_LIMIT_DEFAULT": "10000000/minute",
            "AUTOPOOL_RATE_LIMIT_WALLET": "10000000/minute",
            "AUTOPOOL_JWT_SECRET": os.urandom(32).hex(),
        }
        py = sys.executable
        subprocess.run(
            [py, "-m", "alembic", "upgrade", "head"],
            cwd=REPO_ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run([py, "-m", "backend.cli", "seed"], cwd=REPO_ROOT, env=env, check=True)
        started = time.perf_counter()
        keyed = asyncio.run(seed_database(db_url, args.participants))
        print(
            f"seeded {args.participants:,} confirmed participants "
            f"in {time.perf_counter() - started:.1f} s"
        )
        signer = start_signer_process(
            raw_key=signer_key,
            chain_id=anvil.chain_id,
            contract_address=contract.address,
            audit_log=work / "signer-audit.jsonl",
            token=token,
            database_url=db_url,
            # The signer's own cap on registrations signed (policy, default 100/s) sized for
            # the rate offered, as a deployment expecting that rate would size it.
            extra_env={
                "AUTOPOOL_SIGNER_RATE_LIMIT_REGISTRATION": f"{2 * args.register_rate:.0f}/second"
            },
        )
        env["AUTOPOOL_SIGNER_URL"] = signer.url
        port = free_port()
        log = (work / "api.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    py,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "backend.app:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    str(args.workers),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--proxy-headers",  # the client address from X-Forwarded-For, as behind a proxy
                    "--forwarded-allow-ips",
                    "127.0.0.1",
                    "--log-level",
                    "warning",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        )
        api = f"http://127.0.0.1:{port}"
        wait_http(f"{api}/health", timeout=60)
        register_run, me_run, health_run, samples = uvloop.run(
            measure(
                api,
                contract.address,
                keyed,
                args.participants,
                args,
                {"API": procs[-1].pid, "signer": signer.process.pid, "database": db_name},
            )
        )
        sent_ok = send_samples(w3, samples)
        print(
            f"stack: API x{args.workers} workers, signer, PostgreSQL, Redis, Anvil and this "
            f"generator on {os.cpu_count()} cores; {args.participants:,} participants seeded"
        )
        for run in (health_run, me_run, register_run):
            print(run.line())
        for run in (health_run, me_run, register_run):
            print(run.cpu_line())
        print(
            f"ratios to /health: me {me_run.rps / health_run.rps:.2f}, "
            f"register {register_run.rps / health_run.rps:.2f}"
        )
        print(f"sampled registrations sent to Anvil: {sent_ok}/{len(samples)} succeeded")
        if sent_ok != len(samples):
            raise SystemExit(f"{len(samples) - sent_ok} sampled payloads failed on chain")
        median = statistics.median(health_run.latencies) * 1000 if health_run.latencies else 0
        print(f"health p50 {median:.1f} ms")
        print(
            f"register_rps={register_run.rps:.0f} me_rps={me_run.rps:.0f} "
            f"health_rps={health_run.rps:.0f}"
        )
    finally:
        for proc in procs:
            stop_process(proc)
        if signer is not None:
            signer.stop()
        anvil.stop()
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
