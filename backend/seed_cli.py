"""`python -m backend.seed_cli`: seed the company root and the current plan (idempotent)."""

from __future__ import annotations

import asyncio

from eth_utils import to_checksum_address

from backend.core.db import make_engine, make_sessionmaker, unit_of_work
from backend.core.plans import current_plan
from backend.core.settings import get_settings
from backend.seed import seed


async def _main() -> None:
    settings = get_settings()
    if not settings.company_wallet:
        raise SystemExit("set AUTOPOOL_COMPANY_WALLET")
    engine = make_engine(settings.database_url)
    try:
        async with unit_of_work(make_sessionmaker(engine)) as session:
            company_id = await seed(
                session,
                to_checksum_address(settings.company_wallet),
                current_plan(settings.plan_path),
            )
        print(f"seeded: company user id {company_id}")
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(_main())
