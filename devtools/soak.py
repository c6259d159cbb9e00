"""`python -m devtools.soak`: the API under sustained open-loop load (issue 14).

The whole stack runs as in `devtools.faults` (two API replicas, listener, settlement worker,
signer, its own redis-server and database, Anvil with 1 s blocks), with no faults. Requests
arrive at a fixed rate whether or not earlier ones finished (open loop: a slow server is not
given a break by its clients): a share are registrations (a new wallet signs in, asks
`POST /users/register`, retries a 503 after its Retry-After, sends the transaction), the rest
reads (`/pool/summary`, `/users/me`, `/treasury/summary`, `/plan`), alternating replicas.
Every `--interval` seconds it prints the p50/p99 latency of each kind of request; at the end
each process's resident memory (with its children) after the warm-up and at the end.

It fails (exit 1) if any request errors (5xx other than 503 with Retry-After, or a transport
error), or if a process's memory grows beyond the bound: end RSS ≤ start RSS +
max(`--mem-bound-mib`, `--mem-bound-ratio` × start RSS).

TEST/DEV ONLY: the public Anvil keys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from rich.console import Console
from rich.table import Table

from devtools.scenario import Dapp, Wallet
from devtools.stack import COMPANY_KEY, Stack, local_stack

console = Console(width=120)
READS = ("/pool/summary", "/treasury/summary", "/plan", "/users/me")


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` and all its descendants, in KiB (Linux /proc)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def memory(stack: Stack) -> dict[str, int]:
    return {name: rss_kib(pid) for name, pid in sorted(stack.pids().items())}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    def __init__(self, stack: Stack, rpc_url: str, seed: int) -> None:
        self.clients = [httpx.AsyncClient(base_url=u, timeout=30) for u in stack.api_urls]
        self.dapp = Dapp(stack.api_urls[0], rpc_url, seed)
        self.rng = random.Random(seed)
        self.turn = 0
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.retried_503 = 0
        self.registered: list[Wallet] = []
        self.sponsors = [Account.from_key(COMPANY_KEY).address]
        self.in_flight = 0
        self.dropped = 0

    def client(self) -> httpx.AsyncClient:
        self.turn += 1
        return self.clients[self.turn % len(self.clients)]

    async def timed(self, kind: str, method: str, path: str, **kw: Any) -> httpx.Response:
        started = time.perf_counter()
        try:
            r = await self.client().request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.errors.append(f"{method} {path}: {type(exc).__name__}")
            raise
        self.samples[kind].append(time.perf_counter() - started)
        if r.status_code >= 500 and not (r.status_code == 503 and "retry-after" in r.headers):
            self.errors.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
        return r

    async def read(self) -> None:
        path = self.rng.choice(READS)
        if path == "/users/me":
            if not self.registered:
                return
            wallet = self.rng.choice(self.registered)
            await self.timed("read", "GET", path, headers=wallet.headers)
        else:
            await self.timed("read", "GET", path)

    async def register(self) -> None:
        wallet = Wallet(Account.create())
        await self.dapp.fund(wallet)
        r = await self.timed("auth", "GET", "/auth/nonce", params={"wallet": wallet.acct.address})
        nonce = r.json()
        sig = wallet.acct.sign_message(encode_defunct(text=nonce["message"])).signature
        r = await self.timed(
            "auth",
            "POST",
            "/auth/wallet",
            json={
                "wallet": wallet.acct.address,
                "signature": "0x" + sig.hex(),
                "nonce": nonce["nonce"],
            },
        )
        wallet.token = r.json()["accessToken"]
        sponsor = self.rng.choice(self.sponsors[-50:])
        deadline = time.monotonic() + 120
        while True:
            r = await self.timed(
                "register",
                "POST",
                "/users/register",
                json={"referrer": sponsor},
                headers=wallet.headers,
            )
            retry = r.status_code == 503 or (
                r.status_code == 422 and "referrer-not-active" in r.text
            )
            if not retry or time.monotonic() > deadline:
                break
            self.retried_503 += r.status_code == 503
            await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))
        if r.status_code != 200:
            self.errors.append(f"register: {r.status_code} {r.text[:200]}")
            return
        await self.dapp.send(wallet, r.json()["tx"])
        self.registered.append(wallet)
        self.sponsors.append(wallet.acct.address)

    async def one(self, kind: str) -> None:
        self.in_flight += 1
        try:
            await (self.register() if kind == "register" else self.read())
        except Exception as exc:
            self.errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()
        await self.dapp.aclose()


async def confirmed(load: Load, nodes: int) -> bool:
    r = await load.clients[0].get("/pool/summary")
    levels = {int(level["level"]): int(level["nodes"]) for level in r.json()["levels"]}
    return levels.get(1, 0) >= nodes


async def soak(args: argparse.Namespace, stack: Stack, rpc_url: str) -> int:
    load = Load(stack, rpc_url, args.seed)
    tasks: set[asyncio.Task[None]] = set()

    def launch(kind: str) -> None:
        if load.in_flight >= args.max_in_flight:
            load.dropped += 1
            return
        task = asyncio.create_task(load.one(kind))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # Warm-up: some participants to read, the processes' caches filled.
    for _ in range(5):
        await load.one("register")
    await asyncio.sleep(2)
    start_mem = memory(stack)
    console.print(f"memory after warm-up (KiB): {start_mem}")

    table = Table(title=f"Open-loop load: {args.rate}/s, {args.register_share:.0%} registrations")
    for col in ("t (s)", "kind", "requests", "p50 ms", "p99 ms", "max ms", "in flight"):
        table.add_column(col, justify="right")
    period = 1.0 / args.rate
    started = time.monotonic()
    next_at, next_report = started, started + args.interval

    def report(t: int) -> None:
        for kind in sorted(load.samples):
            ms = [x * 1000 for x in load.samples[kind]]
            p50, p99 = percentile(ms, 0.5), percentile(ms, 0.99)
            row = [str(t), kind, str(len(ms)), f"{p50:.0f}", f"{p99:.0f}", f"{max(ms):.0f}"]
            row.append(str(load.in_flight))
            print(" ".join(f"{c:>9}" for c in row), flush=True)
            table.add_row(*row)
        load.samples.clear()

    while time.monotonic() - started < args.seconds:
        now = time.monotonic()
        if now >= next_at:
            launch("register" if load.rng.random() < args.register_share else "read")
            next_at += period
        if now >= next_report:
            report(round(now - started))
            next_report += args.interval
        await asyncio.sleep(max(0.0, min(next_at, next_report) - time.monotonic()))
    report(round(time.monotonic() - started))  # the last (partial) interval
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    end_mem = memory(stack)
    # The listener kept up: every registration sent is settled in the ledger.
    try:
        await load.dapp.wait_for(
            lambda: confirmed(load, len(load.registered) + 1), "the listener", seconds=90
        )
    except RuntimeError as exc:
        load.errors.append(str(exc))
    await load.aclose()

    console.print(table)
    mem = Table(title="Resident memory (KiB, with children)")
    for col in ("process", "after warm-up", "end", "growth", "bound", "ok"):
        mem.add_column(col, justify="right")
    failed = False
    for name, before in start_mem.items():
        after = end_mem.get(name, 0)
        bound = max(args.mem_bound_mib * 1024, int(before * args.mem_bound_ratio))
        ok = after - before <= bound
        failed |= not ok
        mem.add_row(name, str(before), str(after), str(after - before), str(bound), str(ok))
    console.print(mem)
    console.print(
        f"registrations: {len(load.registered)}, 503 retried: {load.retried_503}, "
        f"arrivals dropped (over {args.max_in_flight} in flight): {load.dropped}, "
        f"errors: {len(load.errors)}"
    )
    for error in load.errors[:10]:
        console.print(f"  error: {error}")
    if load.errors or failed or load.dropped:
        console.print("[red]SOAK FAILED[/red]")
        return 1
    console.print("[green]soak passed[/green]")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description="The API under sustained open-loop load")
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--rate", type=float, default=20, help="arrivals per second")
    parser.add_argument("--register-share", type=float, default=0.2)
    parser.add_argument("--interval", type=float, default=15, help="seconds per report line")
    parser.add_argument("--max-in-flight", type=int, default=400)
    parser.add_argument("--mem-bound-mib", type=int, default=64)
    parser.add_argument("--mem-bound-ratio", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the database and logs")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "AUTOPOOL_DEVNET_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    code = 1
    with local_stack(args.pg, "soak", apis=2) as local:
        console.print(f"stack up: APIs {local.stack.api_urls}, logs {local.stack.logs}")
        code = asyncio.run(soak(args, local.stack, local.anvil.rpc_url))
        local.keep = code != 0 or args.keep
    sys.exit(code)


if __name__ == "__main__":
    main()
