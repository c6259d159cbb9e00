"""`autopool-payouts`: build, sign and submit one payout batch now, printing each step."""

from __future__ import annotations

import argparse
import asyncio

from backend.core.settings import get_settings
from backend.payouts.pipeline import settle_with_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "command",
        choices=["run", "enqueue"],
        help="run: settle now in this process; enqueue: ask the worker",
    )
    args = parser.parse_args()
    if args.command == "enqueue":
        from backend.payouts.tasks import settle_pending

        settle_pending.send()
        print("enqueued settle_pending on the settlement queue")
        return
    result = asyncio.run(settle_with_settings(get_settings(), progress=print))
    print(
        f"batch={result.batch_id} recipients={result.recipients} total_wei={result.total} "
        f"tx={result.tx_hash}"
    )


if __name__ == "__main__":
    main()
