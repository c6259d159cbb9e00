"""`autopool`: the operators' console.

autopool seed              seed the company root, the pools and the plan in force
autopool payouts run       build, sign and submit one payout batch now, printing each step
autopool payouts enqueue   ask the settlement worker to do it
autopool listener resume [--from-block N]
                           clear a deep-reorg halt once investigated (docs/operations.md)
autopool worker            the settlement worker: Dramatiq processes plus the schedule that
                           sends them a settlement cycle every AUTOPOOL_SETTLEMENT_INTERVAL_SECONDS
                           and a reconciliation every AUTOPOOL_RECONCILIATION_INTERVAL_SECONDS
"""

from __future__ import annotations

import argparse
import asyncio

from eth_utils import to_checksum_address

from backend.core.db import unit_of_work
from backend.core.logging import log
from backend.core.settings import get_settings
from backend.core.wiring import open_resources


async def _seed() -> None:
    from backend.ledger.genesis import seed

    settings = get_settings()
    if not settings.company_wallet:
        raise SystemExit("set AUTOPOOL_COMPANY_WALLET")
    async with open_resources(settings) as res, unit_of_work(res.sessions) as session:
        company_id = await seed(session, to_checksum_address(settings.company_wallet), res.plan)
    print(f"seeded: company user id {company_id}")


async def _payouts_run() -> None:
    from backend.payouts.service import settle_once

    async with open_resources(get_settings()) as res:
        result = await settle_once(res, created_by="cli", progress=print)
    print(
        f"batch={result.batch_id} recipients={result.recipients} total_wei={result.total} "
        f"tx={result.tx_hash}"
    )


def _payouts_enqueue() -> None:
    from backend.payouts.tasks import settle_pending

    settle_pending.send()
    print("enqueued settle_pending on the settlement queue")


async def _listener_resume(from_block: int | None) -> None:
    from backend.monitoring import service as monitoring

    async with open_resources(get_settings()) as res, unit_of_work(res.sessions) as session:

        async def canonical(number: int) -> str:
            return (await res.w3.eth.get_block(number))["hash"].to_0x_hex()

        done = await monitoring.resume_listener(session, canonical, from_block)
    print("\n".join(done) or "the listener is not halted")


def _worker(processes: int, threads: int) -> None:
    """Run `dramatiq backend.payouts.tasks` and, beside it, the schedule: one
    `settlement_cycle` every interval (any number of these may run: each cycle is safe to run
    twice, and one sender loop per account runs at a time)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from backend.payouts import service

    settings = get_settings()
    child = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "dramatiq",
            "backend.payouts.tasks",
            "backend.treasury.tasks",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--queues",
            service.SETTLEMENT_QUEUE,
        ],
        env=os.environ.copy(),
    )

    def stop(_signum: int, _frame: object) -> None:
        child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    next_reconciliation = 0.0
    try:
        while child.poll() is None:
            try:
                service.enqueue(settings.redis_url, "settlement_cycle")
                if time.monotonic() >= next_reconciliation:
                    service.enqueue(settings.redis_url, "reconcile_ledger")
                    next_reconciliation = (
                        time.monotonic() + settings.reconciliation_interval_seconds
                    )
            except Exception as exc:  # Redis down or restarting: the next tick nudges again
                log.warning("could not enqueue the scheduled cycle; retrying", error=str(exc))
            deadline = time.monotonic() + settings.settlement_interval_seconds
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        if child.poll() is None:
            child.terminate()
        child.wait()
    raise SystemExit(child.returncode)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="autopool", description="Autopool operator console")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("seed", help="seed the company root, pools and plan (idempotent)")
    payouts = commands.add_parser("payouts", help="payout batches")
    payouts.add_argument("action", choices=["run", "enqueue"])
    listener = commands.add_parser("listener", help="the chain listener")
    listener.add_argument("action", choices=["resume"])
    listener.add_argument("--from-block", type=int, default=None)
    worker = commands.add_parser("worker", help="the settlement worker and its schedule")
    worker.add_argument("--processes", type=int, default=1)
    worker.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "seed":
        asyncio.run(_seed())
    elif args.command == "listener":
        asyncio.run(_listener_resume(args.from_block))
    elif args.command == "worker":
        _worker(args.processes, args.threads)
    elif args.action == "run":
        asyncio.run(_payouts_run())
    else:
        _payouts_enqueue()


if __name__ == "__main__":
    main()
