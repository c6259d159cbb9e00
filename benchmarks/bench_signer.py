"""Signer benchmark: signing-path throughput and HTTP latency, in one run.

    python benchmarks/bench_signer.py [--rounds 9] [--rate 200] [--duration 10] [--json out.json]

Phase 1 — throughput on one core (the process pins itself to one CPU). For each payload type,
on the same pre-built payloads, interleaved in rounds so that machine noise hits all three alike:
  * service  — `SigningService.sign`: validation, fast EIP-712 digest, every policy rule, the
               libsecp256k1 signature, the audit record (hash-chained, written to a file);
  * eth-account — `Account.sign_typed_data(key, full_message=...)` (coincurve installed);
  * raw      — coincurve `PrivateKey.sign_recoverable(digest, hasher=None)` on the same digests,
               the physical floor.
Every service signature is checked to be byte-identical to eth-account's.

Phase 2 — latency over loopback: the signer runs as its own process (`python -m signer`, audit
fsync=always) and is driven open-loop at `--rate` requests/s for `--duration` s through the
backend's `SignerClient`. Latency is reported from each request's actual send to its answer, and
also from its scheduled send time (which adds the generator's own timer lag, but counts a stall
against every request queued behind it: no coordinated omission).

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import coincurve  # noqa: E402
import httpx  # noqa: E402
import uvloop  # noqa: E402
from eth_account import Account  # noqa: E402

from backend.chain.anvil import free_port  # noqa: E402
from backend.chain.signer_client import SignerClient  # noqa: E402
from backend.chain.typed_data import Domain, full_message  # noqa: E402
from signer.keys import LocalKey  # noqa: E402
from signer.main import build_service  # noqa: E402
from signer.settings import SignerSettings  # noqa: E402

DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # TEST-ONLY
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337
TOKEN = "bench-token-" + "b" * 32
ETHER = 10**18
PLAN_HASH = "0x" + "5a" * 32


def address(i: int) -> str:
    return Account.from_key((i + 1).to_bytes(32, "big")).address


def payloads(kind: str, n: int, batch_size: int) -> list[dict[str, Any]]:
    deadline = int(time.time()) + 1800
    users = [address(i) for i in range(64)]
    out: list[dict[str, Any]] = []
    for i in range(n):
        if kind == "Registration":
            out.append(
                {
                    "user": users[i % 64],
                    "referrer": users[(i + 1) % 64],
                    "slot": i,
                    "amount": 20 * ETHER,
                    "planHash": PLAN_HASH,
                    "nonce": 10_000 + i,
                    "deadline": deadline,
                }
            )
        elif kind == "Retopup":
            out.append(
                {
                    "user": users[i % 64],
                    "amount": 40 * ETHER,
                    "planHash": PLAN_HASH,
                    "nonce": 20_000 + i,
                    "deadline": deadline,
                }
            )
        else:
            out.append(
                {
                    "batchId": i,
                    "payouts": [
                        {"recipient": users[(i + j) % 64], "amount": (j + 1) * 10**15}
                        for j in range(batch_size)
                    ],
                    "nonce": 30_000 + i,
                    "deadline": deadline,
                }
            )
    return out


def settings(audit_dir: Path, fsync: str) -> SignerSettings:
    return SignerSettings(
        _env_file=None,
        key_backend="raw",
        raw_key=DEV_KEY,
        auth_token=TOKEN,
        chain_id=CHAIN_ID,
        contract_address=CONTRACT,
        audit_log_path=audit_dir / "audit.jsonl",
        audit_fsync=fsync,
        max_batch_recipients=1000,
        max_batch_total_wei=10**30,
        rolling_24h_cap_wei=10**40,
        rate_limit_registration="1000000/second",
        rate_limit_retopup="1000000/second",
        rate_limit_payout_batch="1000000/second",
    )


def rate(fn: Callable[[Any], Any], items: list[Any]) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def throughput(rounds: int, chunk: int, batch_size: int) -> list[dict[str, Any]]:
    domain = Domain(CHAIN_ID, CONTRACT)
    raw_key = coincurve.PrivateKey(bytes.fromhex(DEV_KEY[2:]))
    rows = []
    kinds = [("Registration", ""), ("Retopup", ""), ("PayoutBatch", f" ({batch_size} recipients)")]
    for kind, note in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            service = build_service(settings(Path(tmp), "never"), key=LocalKey.from_hex(DEV_KEY))
            items = payloads(kind, rounds * chunk, batch_size)
            docs = [full_message(domain, kind, m) for m in items]
            digests = [service.hasher.digest(kind, m) for m in items]

            # Correctness first: byte-identical to eth-account, on every payload.
            ours = [service.sign(kind, m).signature for m in items]
            theirs = [
                bytes(Account.sign_typed_data(DEV_KEY, full_message=d).signature) for d in docs
            ]
            identical = ours == theirs
            service.audit.flush()
            service.audit.close()

            service = build_service(
                settings(Path(tmp) / "run", "never"), key=LocalKey.from_hex(DEV_KEY)
            )

            def ours_fn(m: dict[str, Any], kind: str = kind, service: Any = service) -> Any:
                return service.sign(kind, m)

            def eth_fn(d: dict[str, Any]) -> Any:
                return Account.sign_typed_data(DEV_KEY, full_message=d)

            def raw_fn(h: bytes) -> Any:
                return raw_key.sign_recoverable(h, hasher=None)

            s_rates, e_rates, r_rates = [], [], []
            for r in range(rounds):
                part = slice(r * chunk, (r + 1) * chunk)
                # ours includes writing its audit records to the file
                start = time.perf_counter()
                for m in items[part]:
                    ours_fn(m)
                service.audit.flush()
                s_rates.append(chunk / (time.perf_counter() - start))
                e_rates.append(rate(eth_fn, docs[part]))
                r_rates.append(rate(raw_fn, digests[part]))
            service.audit.close()
        rows.append(
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
                "best_service_per_s": max(s_rates),
                "best_eth_account_per_s": max(e_rates),
                "best_raw_per_s": max(r_rates),
                "identical": identical,
                "n": len(items),
            }
        )
    return rows


async def load(
    rate_rps: float, duration: float, warmup: float, fsync: str, uds: bool = False
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="signer-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOOL_SIGNER_")}
    env.update(
        {
            "AUTOPOOL_SIGNER_KEY_BACKEND": "raw",
            "AUTOPOOL_SIGNER_RAW_KEY": DEV_KEY,
            "AUTOPOOL_SIGNER_AUTH_TOKEN": TOKEN,
            "AUTOPOOL_SIGNER_CHAIN_ID": str(CHAIN_ID),
            "AUTOPOOL_SIGNER_CONTRACT_ADDRESS": CONTRACT,
            "AUTOPOOL_SIGNER_AUDIT_LOG_PATH": str(tmp / "audit.jsonl"),
            "AUTOPOOL_SIGNER_AUDIT_FSYNC": fsync,
            "AUTOPOOL_SIGNER_RATE_LIMIT_REGISTRATION": "100000/second",
            "AUTOPOOL_SIGNER_PORT": str(port),
            "AUTOPOOL_SIGNER_HOST": "127.0.0.1",
        }
    )
    if uds:
        env["AUTOPOOL_SIGNER_SOCKET_PATH"] = str(tmp / "signer.sock")
    log = (tmp / "signer.log").open("wb")
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "signer"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    probe = httpx.Client(
        transport=httpx.HTTPTransport(uds=str(tmp / "signer.sock")) if uds else None
    )
    client_url = f"unix://{tmp / 'signer.sock'}" if uds else url
    try:
        for _ in range(200):
            try:
                if probe.get(url + "/health").status_code == 200:  # noqa: ASYNC212 (before load)
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
        else:
            raise RuntimeError("signer did not start: " + (tmp / "signer.log").read_text())
        total = int(rate_rps * (duration + warmup))
        msgs = payloads("Registration", total, 0)
        latencies: list[float] = [0.0] * total  # from the scheduled send time
        service_latencies: list[float] = [0.0] * total  # from the actual send
        results: list[str] = [""] * total
        errors = 0
        async with SignerClient(client_url, TOKEN) as client:
            await client.sign("Registration", payloads("Registration", 1, 0)[0] | {"nonce": 1})

            async def one(i: int, scheduled: float) -> None:
                nonlocal errors
                sent = time.perf_counter()
                try:
                    sig = await client.sign("Registration", msgs[i])
                    results[i] = sig.signature
                except Exception:
                    errors += 1
                done = time.perf_counter()
                latencies[i] = done - scheduled
                service_latencies[i] = done - sent

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

            # The floor on this machine: the same client, server and rate, GET /address
            # (no signing, no audit).
            floor: list[float] = []

            async def empty() -> None:
                sent = time.perf_counter()
                await client.address()
                floor.append(time.perf_counter() - sent)

            tasks = []
            t1 = time.perf_counter() + 0.05
            for i in range(int(rate_rps * duration / 2)):
                delay = t1 + i / rate_rps - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(empty()))
            await asyncio.gather(*tasks)
            floor.sort()
        skip = int(rate_rps * warmup)
        measured = sorted(service_latencies[skip:])
        from_schedule = sorted(latencies[skip:])
        domain = Domain(CHAIN_ID, CONTRACT)
        mismatches = sum(
            results[i]
            != "0x"
            + bytes(
                Account.sign_typed_data(
                    DEV_KEY, full_message=full_message(domain, "Registration", msgs[i])
                ).signature
            ).hex()
            for i in range(skip, total, 10)
        )

        def pct(p: float, values: list[float] = measured) -> float:
            return values[min(len(values) - 1, int(p * len(values)))] * 1000

        metrics = probe.get(url + "/metrics").text  # noqa: ASYNC212 (after load)
        server = [
            line
            for line in metrics.splitlines()
            if line.startswith("autopool_signer_sign_seconds_bucket")
            and 'type="Registration"' in line
        ]
        return {
            "fsync": fsync,
            "server_histogram": server,
            "rate_rps": rate_rps,
            "requests": len(measured),
            "achieved_rps": total / elapsed,
            "errors": errors,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": measured[-1] * 1000,
            "floor_get_address_p50_ms": pct(0.50, floor),
            "floor_get_address_p99_ms": pct(0.99, floor),
            "scheduled_p50_ms": pct(0.50, from_schedule),
            "scheduled_p99_ms": pct(0.99, from_schedule),
            "checked_identical": (total - skip + 9) // 10 - mismatches,
            "mismatches": mismatches,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--uds", action="store_true", help="serve on a Unix socket, not TCP")
    parser.add_argument(
        "--fsync",
        default="interval",
        choices=["interval", "always", "never"],
        help="the signer's audit fsync policy during the load phase",
    )
    args = parser.parse_args()

    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[0]})  # one core for all three contenders
    import structlog

    structlog.configure(logger_factory=structlog.WriteLoggerFactory(file=open(os.devnull, "w")))  # noqa: SIM115

    print(
        f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
        f"coincurve {coincurve.__version__ if hasattr(coincurve, '__version__') else ''}"
    )
    report: dict[str, Any] = {"loadavg_before": os.getloadavg()}
    rows = [] if args.skip_throughput else throughput(args.rounds, args.chunk, args.batch_size)
    print(
        f"\nSigning throughput, one core (median of {args.rounds} interleaved rounds of "
        f"{args.chunk}; ratios are medians of per-round ratios)\n"
    )
    print(
        "| payload | service sig/s | eth-account sig/s | raw libsecp256k1 sig/s "
        "| service ÷ eth-account | raw ÷ service | byte-identical |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['payload']} | {r['service_per_s']:,.0f} | {r['eth_account_per_s']:,.0f} | "
            f"{r['raw_per_s']:,.0f} | {r['vs_eth_account']:.1f}× | "
            f"{r['raw_over_service']:.2f}× | {'yes' if r['identical'] else 'NO'} "
            f"({r['n']}) |"
        )
    print("\nBest round of each (least disturbed by other load on the machine)\n")
    print(
        "| payload | service sig/s | eth-account sig/s | raw sig/s | service ÷ eth-account "
        "| raw ÷ service |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        bs, be, br = r["best_service_per_s"], r["best_eth_account_per_s"], r["best_raw_per_s"]
        print(
            f"| {r['payload']} | {bs:,.0f} | {be:,.0f} | {br:,.0f} | {bs / be:.1f}× "
            f"| {br / bs:.2f}× |"
        )
    report["throughput"] = rows
    if not args.skip_load:
        os.sched_setaffinity(0, set(cpus))
        result = uvloop.run(load(args.rate, args.duration, args.warmup, args.fsync, args.uds))
        report["load"] = result
        print(
            f"\nPOST /sign over loopback, open loop at {args.rate:.0f} req/s for "
            f"{args.duration:.0f} s (after {args.warmup:.0f} s warm-up), audit fsync={args.fsync}, "
            f"{'Unix socket' if args.uds else 'TCP 127.0.0.1'},"
            " client: the backend's SignerClient\n"
        )
        print(
            "| requests | achieved req/s | errors | p50 ms | p90 ms | p99 ms | max ms "
            "| p50 / p99 ms from scheduled time | sampled byte-identical |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        print(
            f"| {result['requests']} | {result['achieved_rps']:.1f} | {result['errors']} | "
            f"{result['p50_ms']:.2f} | {result['p90_ms']:.2f} | {result['p99_ms']:.2f} | "
            f"{result['max_ms']:.2f} | {result['scheduled_p50_ms']:.2f} / "
            f"{result['scheduled_p99_ms']:.2f} | {result['checked_identical']} ok, "
            f"{result['mismatches']} mismatched |"
        )
        buckets = ", ".join(
            "≤{} s: {:.0f}".format(line.split('le="')[1].split('"')[0], float(line.split()[-1]))
            for line in result["server_histogram"][:6]
        )
        print(f"\nserver-side POST /sign time (cumulative histogram): {buckets}")
        print(
            f"floor, GET /address at the same rate on the same connection pool: "
            f"p50 {result['floor_get_address_p50_ms']:.2f} ms, "
            f"p99 {result['floor_get_address_p99_ms']:.2f} ms"
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
