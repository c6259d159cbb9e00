"""Signer benchmark: the signing path with its ledger checks beside the check-free path, in one run.

    python benchmarks/bench_signer.py [--rounds 9] [--rate 200] [--duration 10] [--json out.json]

Setup: a database of its own (created, migrated with Alembic, dropped at the end) holding
`--payloads` registrations as the API reserves them (pending user, pending payload row, live
slot lease, an active referrer, plan v1 in force). The signer reads it through its own role.

Two signers are compared, on the same payloads:
  * checked    — the signer as it runs: the ledger's checks (one indexed query per
                 Registration), the audit log anchored in PostgreSQL with every burst, the rate
                 limits and outflows persisted there;
  * check-free — the same code with a ledger that accepts everything and no database state (no
                 anchor, limits in memory): what the signer did before its ledger checks.

Phase 1 — in process. The process pins itself to one CPU (PostgreSQL runs on the other).
  * Registration signatures/s, check-free and checked, sequentially and with 32 requests in
    flight (the ledger query of one overlaps the signing of others), interleaved in rounds;
  * for reference, as in earlier runs: check-free Registration, Retopup and PayoutBatch against
    eth-account's `Account.sign_typed_data` and raw libsecp256k1 signing, every signature
    checked byte-identical to eth-account's.

Phase 2 — over loopback. Each signer runs as its own process (`python -m signer`, or this
script's `--serve-check-free`) and is driven through the backend's `SignerClient` (aiohttp):
  * throughput: a closed loop with `--concurrency` requests in flight for `--duration` s;
  * sustained: an open loop at `--sustain-rate` (1,000) req/s: achieved rate, errors, p99;
  * latency: an open loop at `--rate` (200) req/s, latency from each request's send (and from
    its scheduled time, which counts a stall against every request queued behind it), and the
    floor: `GET /address` at the same rate.

TEST-ONLY key: Anvil's public dev key 1; nothing here touches a real chain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import asyncpg  # noqa: E402
import coincurve  # noqa: E402
import httpx  # noqa: E402
import uvloop  # noqa: E402
from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from eth_account import Account  # noqa: E402

from backend.chain.signer_client import SignerClient  # noqa: E402
from backend.chain.typed_data import Domain, DomainHasher, EncodedMessage, full_message  # noqa: E402
from backend.plan.config import DEFAULT_PLAN_PATH, load_plan  # noqa: E402
from devtools.processes import free_port, signer_database_url  # noqa: E402
from signer.audit import AuditLog  # noqa: E402
from signer.keys import LocalKey  # noqa: E402
from signer.ledger import LedgerFacts  # noqa: E402
from signer.main import build_service  # noqa: E402
from signer.policy import Policy  # noqa: E402
from signer.service import SigningService  # noqa: E402
from signer.settings import SignerSettings  # noqa: E402

DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # TEST-ONLY
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337
TOKEN = "bench-token-" + "b" * 32
ETHER = 10**18
PG_ADMIN = os.environ.get("AUTOPOOL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NONCE_BASE = 10_000_000
REFERRER = "0x" + "ee" * 20
PLAN = load_plan(DEFAULT_PLAN_PATH)
PLAN_HASH = PLAN.plan_hash_hex()


class AcceptAll:
    """The check-free baseline's ledger: every payload passes."""

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def check(self, enc: EncodedMessage, message: dict[str, Any]) -> LedgerFacts:
        return LedgerFacts()


# --- the benchmark database ------------------------------------------------------------------


async def create_database(n: int, deadline: int) -> str:
    name = f"autopool_bench_{os.getpid()}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    owner = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.attributes["database_url"] = owner.replace("postgresql://", "postgresql+asyncpg://")
    cfg.attributes["configure_logger"] = False
    await asyncio.to_thread(command.upgrade, cfg, "head")
    conn = await asyncpg.connect(owner)
    try:
        await conn.execute(
            "INSERT INTO plan_versions (version, plan_hash, document, effective_from) "
            "VALUES ($1, $2, $3::jsonb, now() - interval '1 minute')",
            PLAN.version,
            PLAN_HASH,
            json.dumps(PLAN.model_dump(mode="json")),
        )
        await conn.execute(
            "INSERT INTO users (id, wallet, status, role, is_frozen, has_retopup) "
            "VALUES (1, $1, 'active', 'user', false, false)",
            REFERRER,
        )
        await conn.execute(
            "INSERT INTO users (id, wallet, status, role, is_frozen, has_retopup) "
            "SELECT 1 + g, '0x' || lpad(to_hex(g), 40, '0'), 'pending', 'user', false, false "
            "FROM generate_series(1, $1) g",
            n,
        )
        await conn.execute(
            "INSERT INTO transactions (id, kind, user_id, nonce, amount, deadline, plan_hash, "
            "payload, status) SELECT g, 'register', 1 + g, $2 + g, $3, $4, $5, '{}', 'pending' "
            "FROM generate_series(1, $1) g",
            n,
            NONCE_BASE,
            PLAN.entry_price,
            deadline,
            PLAN_HASH,
        )
        await conn.execute(
            "INSERT INTO slot_leases (level, slot, user_id, referrer_id, transaction_id, "
            "deadline, status) SELECT 1, g, 1 + g, 1, g, $2, 'leased' "
            "FROM generate_series(1, $1) g",
            n,
            deadline,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return owner


async def reset_signer_state(owner: str) -> None:
    """Each signer started here begins a new audit log: forget the previous one's anchor."""
    conn = await asyncpg.connect(owner)
    try:
        await conn.execute("TRUNCATE signer.audit_anchors, signer.outflows, signer.batch_rewards")
    finally:
        await conn.close()


async def drop_database(owner: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{owner.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


def registration(i: int, deadline: int) -> dict[str, Any]:
    """The message of reserved registration `i` (1-based) of the benchmark database."""
    return {
        "user": "0x" + f"{i:040x}",
        "referrer": REFERRER,
        "slot": i,
        "amount": PLAN.entry_price,
        "planHash": PLAN_HASH,
        "nonce": NONCE_BASE + i,
        "deadline": deadline,
    }


def other_payloads(kind: str, n: int, batch_size: int, deadline: int) -> list[dict[str, Any]]:
    users = [Account.from_key((i + 1).to_bytes(32, "big")).address for i in range(64)]
    if kind == "Retopup":
        return [
            {
                "user": users[i % 64],
                "amount": 40 * ETHER,
                "planHash": PLAN_HASH,
                "nonce": 20_000 + i,
                "deadline": deadline,
            }
            for i in range(n)
        ]
    return [
        {
            "batchId": i,
            "payouts": [
                {"recipient": users[(i + j) % 64], "amount": (j + 1) * 10**15}
                for j in range(batch_size)
            ],
            "nonce": 30_000 + i,
            "deadline": deadline,
        }
        for i in range(n)
    ]


def settings(audit_log: Path, fsync: str, owner: str | None = None) -> SignerSettings:
    extra = {"database_url": signer_database_url(owner)} if owner else {}
    return SignerSettings(
        _env_file=None,
        key_backend="raw",
        raw_key=DEV_KEY,
        auth_token=TOKEN,
        chain_id=CHAIN_ID,
        contract_address=CONTRACT,
        audit_log_path=audit_log,
        audit_fsync=fsync,
        max_batch_recipients=1000,
        max_batch_total_wei=10**30,
        rolling_24h_cap_wei=10**40,
        rate_limit_registration="1000000/second",
        rate_limit_retopup="1000000/second",
        rate_limit_payout_batch="1000000/second",
        **extra,
    )


def check_free_service(s: SignerSettings) -> SigningService:
    audit = AuditLog(s.audit_log, s.audit_fsync, s.audit_fsync_interval_ms)
    audit.open()
    return SigningService(
        LocalKey.from_hex(DEV_KEY),
        DomainHasher(Domain(s.chain_id, s.contract_address)),
        Policy(s),
        audit,
        AcceptAll(),
    )


# --- phase 1: in process ---------------------------------------------------------------------


def sign_all(svc: SigningService, kind: str, msgs: list[dict[str, Any]]) -> Callable[[], Any]:
    async def run() -> None:
        for m in msgs:
            await svc.sign(kind, m)
        svc.audit.flush()

    return run


def eth_all(docs: list[dict[str, Any]]) -> Callable[[], Any]:
    async def run() -> None:
        for d in docs:
            Account.sign_typed_data(DEV_KEY, full_message=d)

    return run


def raw_all(key: coincurve.PrivateKey, digests: list[bytes]) -> Callable[[], Any]:
    async def run() -> None:
        for h in digests:
            key.sign_recoverable(h, hasher=None)

    return run


async def timed(fn: Callable[[], Awaitable[None]], n: int) -> float:
    start = time.perf_counter()
    await fn()
    return n / (time.perf_counter() - start)


async def in_process(owner: str, rounds: int, chunk: int, batch_size: int) -> dict[str, Any]:
    deadline = int(time.time()) + 1800
    await set_deadline(owner, deadline)
    domain = Domain(CHAIN_ID, CONTRACT)
    raw_key = coincurve.PrivateKey(bytes.fromhex(DEV_KEY[2:]))
    tmp = Path(tempfile.mkdtemp(prefix="signer-bench-"))
    await reset_signer_state(owner)
    free = check_free_service(settings(tmp / "free.jsonl", "never"))
    checked = build_service(settings(tmp / "checked.jsonl", "never", owner))
    await checked.start()
    items = [registration(i + 1, deadline) for i in range(rounds * chunk)]

    # Correctness first: the checked service signs exactly what eth-account signs.
    identical = 0
    for m in items[:: max(1, len(items) // 50)]:
        ours = (await checked.sign("Registration", m)).signature
        theirs = Account.sign_typed_data(
            DEV_KEY, full_message=full_message(domain, "Registration", m)
        ).signature
        identical += ours == bytes(theirs)

    rates: dict[str, list[float]] = {k: [] for k in ("free", "free_32", "checked", "checked_32")}

    def sequential(svc: SigningService, part: list[dict[str, Any]]) -> Callable[[], Any]:
        async def run() -> None:
            for m in part:
                signed = await svc.sign("Registration", m)
                await svc.handed_out(signed)  # as the HTTP reply does

        return run

    def concurrent(svc: SigningService, part: list[dict[str, Any]]) -> Callable[[], Any]:
        async def run() -> None:
            queue = iter(part)

            async def worker() -> None:
                for m in queue:
                    signed = await svc.sign("Registration", m)
                    await svc.handed_out(signed)  # as the HTTP reply does

            await asyncio.gather(*(worker() for _ in range(32)))

        return run

    for r in range(rounds):
        part = items[r * chunk : (r + 1) * chunk]
        rates["free"].append(await timed(sequential(free, part), chunk))
        rates["checked"].append(await timed(sequential(checked, part), chunk))
        rates["free_32"].append(await timed(concurrent(free, part), chunk))
        rates["checked_32"].append(await timed(concurrent(checked, part), chunk))
    await checked.aclose()
    free.audit.close()
    registration_row = {k: statistics.median(v) for k, v in rates.items()}
    registration_row |= {f"best_{k}": max(v) for k, v in rates.items()}
    registration_row["checked_identical"] = identical

    reference = []
    for kind, note in (
        ("Registration", ""),
        ("Retopup", ""),
        ("PayoutBatch", f" ({batch_size} recipients)"),
    ):
        svc = check_free_service(settings(tmp / f"ref-{kind}.jsonl", "never"))
        msgs = (
            items
            if kind == "Registration"
            else other_payloads(kind, rounds * chunk, batch_size, deadline)
        )
        docs = [full_message(domain, kind, m) for m in msgs]
        digests = [svc.hasher.digest(kind, m) for m in msgs]
        ours = [(await svc.sign(kind, m)).signature for m in msgs]
        theirs = [bytes(Account.sign_typed_data(DEV_KEY, full_message=d).signature) for d in docs]
        s_rates, e_rates, r_rates = [], [], []
        for r in range(rounds):
            part = slice(r * chunk, (r + 1) * chunk)
            s_rates.append(await timed(sign_all(svc, kind, msgs[part]), chunk))
            e_rates.append(await timed(eth_all(docs[part]), chunk))
            r_rates.append(await timed(raw_all(raw_key, digests[part]), chunk))
        svc.audit.close()
        reference.append(
            {
                "payload": kind + note,
                "service_per_s": statistics.median(s_rates),
                "eth_account_per_s": statistics.median(e_rates),
                "raw_per_s": statistics.median(r_rates),
                "vs_eth_account": statistics.median(
                    s / e for s, e in zip(s_rates, e_rates, strict=True)
                ),
                "raw_over_service": statistics.median(
                    r / s for r, s in zip(r_rates, s_rates, strict=True)
                ),
                "identical": ours == theirs,
                "n": len(msgs),
            }
        )
    return {"registration": registration_row, "reference": reference}


# --- phase 2: over loopback ------------------------------------------------------------------


def serve_check_free() -> None:
    """`--serve-check-free`: the check-free signer as a process, served like `python -m signer`."""
    from signer.app import create_app
    from signer.main import configure_logging, serve_app

    s = SignerSettings()
    configure_logging(s.log_level)
    service = check_free_service(s)
    uvloop.run(serve_app(create_app(service, s.token(), key_backend="raw"), s))


class Signer:
    """A signer process on a free loopback port."""

    def __init__(self, checked: bool, owner: str, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOOL_SIGNER_")}
        env |= {
            "AUTOPOOL_SIGNER_KEY_BACKEND": "raw",
            "AUTOPOOL_SIGNER_RAW_KEY": DEV_KEY,
            "AUTOPOOL_SIGNER_AUTH_TOKEN": TOKEN,
            "AUTOPOOL_SIGNER_CHAIN_ID": str(CHAIN_ID),
            "AUTOPOOL_SIGNER_CONTRACT_ADDRESS": CONTRACT,
            "AUTOPOOL_SIGNER_AUDIT_LOG_PATH": str(tmp / f"audit-{self.port}.jsonl"),
            "AUTOPOOL_SIGNER_DATABASE_URL": signer_database_url(owner),
            "AUTOPOOL_SIGNER_RATE_LIMIT_REGISTRATION": "1000000/second",
            "AUTOPOOL_SIGNER_PORT": str(self.port),
            "AUTOPOOL_SIGNER_HOST": "127.0.0.1",
        }
        cmd = [sys.executable, "-m", "signer"]
        if not checked:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-check-free"]
        self.log = tmp / f"signer-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=out)
        with httpx.Client() as probe:
            for _ in range(400):
                try:
                    if probe.get(self.url + "/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    time.sleep(0.05)
        self.stop()
        raise RuntimeError("signer did not start: " + self.log.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


async def signer_backends(owner: str) -> list[int]:
    """PostgreSQL backends serving the signer (its ledger, state and anchor connections)."""
    conn = await asyncpg.connect(owner)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'autopool-signer%'"
        )
    finally:
        await conn.close()
    return [int(r[0]) for r in rows]


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))] * 1000


async def closed_loop(
    client: SignerClient, msgs: list[dict[str, Any]], concurrency: int, duration: float
) -> dict[str, Any]:
    done = errors = 0
    position = 0
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done, errors, position
        while time.perf_counter() < stop_at:
            m = msgs[position % len(msgs)]
            position += 1
            try:
                await client.sign("Registration", m)
                done += 1
            except Exception:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"rps": done / (time.perf_counter() - start), "errors": errors, "requests": done}


async def open_loop(
    client: SignerClient,
    msgs: list[dict[str, Any]],
    rate_rps: float,
    duration: float,
    warmup: float,
) -> dict[str, Any]:
    total = int(rate_rps * (duration + warmup))
    from_send = [0.0] * total
    from_schedule = [0.0] * total
    errors = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        sent = time.perf_counter()
        try:
            await client.sign("Registration", msgs[i % len(msgs)])
        except Exception:
            errors += 1
        end = time.perf_counter()
        from_send[i], from_schedule[i] = end - sent, end - scheduled

    tasks = []
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        scheduled = t0 + i / rate_rps
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    skip = int(rate_rps * warmup)
    measured, scheduled_lat = sorted(from_send[skip:]), sorted(from_schedule[skip:])
    return {
        "rate_rps": rate_rps,
        "achieved_rps": total / elapsed,
        "requests": len(measured),
        "errors": errors,
        "p50_ms": pct(measured, 0.50),
        "p90_ms": pct(measured, 0.90),
        "p99_ms": pct(measured, 0.99),
        "max_ms": measured[-1] * 1000,
        "scheduled_p50_ms": pct(scheduled_lat, 0.50),
        "scheduled_p99_ms": pct(scheduled_lat, 0.99),
    }


async def floor(client: SignerClient, rate_rps: float, duration: float) -> dict[str, float]:
    lat: list[float] = []

    async def empty() -> None:
        sent = time.perf_counter()
        await client.address()
        lat.append(time.perf_counter() - sent)

    tasks = []
    t1 = time.perf_counter() + 0.05
    for i in range(int(rate_rps * duration)):
        delay = t1 + i / rate_rps - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(empty()))
    await asyncio.gather(*tasks)
    lat.sort()
    return {"p50_ms": pct(lat, 0.50), "p99_ms": pct(lat, 0.99)}


async def over_loopback(owner: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    deadline = int(time.time()) + 1800
    await set_deadline(owner, deadline)
    msgs = [registration(i + 1, deadline) for i in range(n)]
    domain = Domain(CHAIN_ID, CONTRACT)
    expected = {
        i: "0x"
        + bytes(
            Account.sign_typed_data(
                DEV_KEY, full_message=full_message(domain, "Registration", msgs[i])
            ).signature
        ).hex()
        for i in range(0, n, max(1, n // 40))
    }
    tmp = Path(tempfile.mkdtemp(prefix="signer-bench-"))
    results: dict[str, Any] = {}
    # Interleaved: check-free, checked, check-free, checked (the machine's load hits both).
    for label in ("check-free", "checked") * args.repeats:
        await reset_signer_state(owner)
        signer = Signer(label == "checked", owner, tmp)
        try:
            async with SignerClient(signer.url, TOKEN, timeout=10) as client:
                mismatches = 0
                for i, sig in expected.items():
                    mismatches += (await client.sign("Registration", msgs[i])).signature != sig
                # CPU per request, measured on the server side: it does not depend on the load
                # generator, which shares this machine's two cores.
                backends = await signer_backends(owner)
                cpu0 = cpu_seconds(signer.proc.pid)
                db0 = sum(cpu_seconds(b) for b in backends)
                closed = await closed_loop(client, msgs, args.concurrency, args.duration)
                closed["signer_cpu_us"] = (
                    (cpu_seconds(signer.proc.pid) - cpu0) / closed["requests"] * 1e6
                )
                closed["db_cpu_us"] = (
                    (sum(cpu_seconds(b) for b in backends) - db0) / closed["requests"] * 1e6
                )
                run = {
                    "mismatches": mismatches,
                    "closed": closed,
                    "sustained": await open_loop(
                        client, msgs, args.sustain_rate, args.duration, args.warmup
                    ),
                    "latency": await open_loop(client, msgs, args.rate, args.duration, args.warmup),
                    "floor": await floor(client, args.rate, args.duration / 2),
                }
        finally:
            signer.stop()
        results.setdefault(label, []).append(run)
        print(f"  {label}: {summary(run)}", flush=True)
    return results


def summary(run: dict[str, Any]) -> str:
    c, s, lat = run["closed"], run["sustained"], run["latency"]
    return (
        f"closed {c['rps']:,.0f} req/s ({c['errors']} errors, signer CPU "
        f"{c['signer_cpu_us']:.0f} us/req, its PostgreSQL backends {c['db_cpu_us']:.0f} us/req); "
        f"{s['rate_rps']:.0f} req/s offered -> {s['achieved_rps']:,.0f} achieved, "
        f"{s['errors']} errors, p99 {s['p99_ms']:.2f} ms; "
        f"{lat['rate_rps']:.0f} req/s p50 {lat['p50_ms']:.2f} / p99 {lat['p99_ms']:.2f} ms; "
        f"{run['mismatches']} mismatched signatures"
    )


async def set_deadline(owner: str, deadline: int) -> None:
    conn = await asyncpg.connect(owner)
    try:
        await conn.execute("UPDATE transactions SET deadline = $1", deadline)
        await conn.execute("UPDATE slot_leases SET deadline = $1", deadline)
    finally:
        await conn.close()


# --- report ----------------------------------------------------------------------------------


def report(phase1: dict[str, Any] | None, phase2: dict[str, Any] | None, rounds: int) -> None:
    if phase1:
        r = phase1["registration"]
        print(
            f"\nRegistration in process, one core (median of {rounds} interleaved rounds; "
            "best round in brackets)\n"
        )
        print("| path | sequential sig/s | 32 in flight sig/s |")
        print("|---|---:|---:|")
        print(
            f"| check-free | {r['free']:,.0f} ({r['best_free']:,.0f}) | "
            f"{r['free_32']:,.0f} ({r['best_free_32']:,.0f}) |"
        )
        print(
            f"| checked (ledger query, anchor, persisted limits) | {r['checked']:,.0f} "
            f"({r['best_checked']:,.0f}) | {r['checked_32']:,.0f} ({r['best_checked_32']:,.0f}) |"
        )
        print(f"\nchecked signatures byte-identical to eth-account: {r['checked_identical']}")
        print("\nCheck-free path against eth-account and raw libsecp256k1 (medians)\n")
        print(
            "| payload | service sig/s | eth-account sig/s | raw sig/s | service ÷ eth-account "
            "| raw ÷ service | byte-identical |"
        )
        print("|---|---:|---:|---:|---:|---:|---|")
        for x in phase1["reference"]:
            print(
                f"| {x['payload']} | {x['service_per_s']:,.0f} | {x['eth_account_per_s']:,.0f} "
                f"| {x['raw_per_s']:,.0f} | {x['vs_eth_account']:.1f}× | "
                f"{x['raw_over_service']:.2f}× | {'yes' if x['identical'] else 'NO'} ({x['n']}) |"
            )
    if phase2:
        print("\nPOST /sign over TCP loopback (SignerClient), Registration\n")
        print(
            "| signer | closed loop req/s | server CPU µs/req: signer + its PostgreSQL "
            "(one core's capacity req/s) | offered → achieved req/s (errors, p99 ms) "
            "| p50 / p90 / p99 / max ms at 200 req/s | from schedule p50 / p99 ms "
            "| floor GET /address p50 / p99 ms |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, runs in phase2.items():
            for run in runs:
                c, s, lat, f = run["closed"], run["sustained"], run["latency"], run["floor"]
                cpu = c["signer_cpu_us"] + c["db_cpu_us"]
                print(
                    f"| {label} | {c['rps']:,.0f} | {c['signer_cpu_us']:.0f} + "
                    f"{c['db_cpu_us']:.0f} ({1e6 / cpu:,.0f}) | {s['rate_rps']:,.0f} → "
                    f"{s['achieved_rps']:,.0f} ({s['errors']}, {s['p99_ms']:.2f}) | "
                    f"{lat['p50_ms']:.2f} / {lat['p90_ms']:.2f} / {lat['p99_ms']:.2f} / "
                    f"{lat['max_ms']:.2f} | {lat['scheduled_p50_ms']:.2f} / "
                    f"{lat['scheduled_p99_ms']:.2f} | {f['p50_ms']:.2f} / {f['p99_ms']:.2f} |"
                )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    n = args.payloads
    owner = await create_database(n, int(time.time()) + 1800)
    out: dict[str, Any] = {"loadavg_before": os.getloadavg()}
    try:
        if not args.skip_in_process:
            cpus = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cpus[0]})  # one core for the signer; PostgreSQL elsewhere
            try:
                out["in_process"] = await in_process(
                    owner, args.rounds, args.chunk, args.batch_size
                )
            finally:
                os.sched_setaffinity(0, set(cpus))
        if not args.skip_load:
            print("\nover loopback:", flush=True)
            out["loopback"] = await over_loopback(owner, n, args)
    finally:
        await drop_database(owner)
    out["loadavg_after"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--payloads", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--sustain-rate", type=float, default=1000.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--serve-check-free", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_check_free:
        serve_check_free()
        return

    import structlog

    structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=open(os.devnull, "w")))  # noqa: SIM115
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    out = uvloop.run(main_async(args))
    report(out.get("in_process"), out.get("loopback"), args.rounds)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
