"""One lease rule (DESIGN §3): the SQL path — a registration request through the users
service (a new wallet's in one statement, a known wallet's through the general path), a
confirmation through the ledger — leases exactly the slot the pure reference rule
`lowest_leasable_slot` names, for any sequence of leases, confirmations and lapses."""

from __future__ import annotations

from dataclasses import replace

from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.core.db import unit_of_work
from backend.core.settings import Settings
from backend.core.wiring import Resources, build_resources
from backend.ledger.genesis import seed
from backend.plan.errors import NoLeasableSlot
from backend.plan.slots import lease_is_live, lowest_leasable_slot
from backend.pool.errors import SlotUnavailable
from backend.users import service as users
from tests.fixtures.db import truncate_all
from tests.fixtures.ledger import confirm_registration, set_confirmed_time

START = 2_000_000_000  # the confirmed chain clock, ahead of the wall clock: deadlines follow it

Op = tuple[str, int]
ops = st.lists(
    st.one_of(
        # Lease seconds: for a wallet never seen, one that signed in (it has a row), or one
        # whose lease lapsed (the general path: its slot is freed first; a new wallet if none).
        st.tuples(st.sampled_from(["lease", "lease-known", "relaunch"]), st.integers(30, 120)),
        st.tuples(st.just("confirm"), st.integers(-3, 3)),  # which live lease, from either end
        st.tuples(st.just("lapse"), st.integers(1, 150)),  # seconds the chain clock moves
    ),
    min_size=1,
    max_size=40,
)


async def run_sequence(
    sessions: async_sessionmaker[AsyncSession], base: Resources, sequence: list[Op]
) -> None:
    company = Account.create().address
    async with unit_of_work(sessions) as s:
        await seed(s, company, base.plan)
        await set_confirmed_time(s, START)
    now = START
    confirmed: set[int] = {0}
    leases: dict[int, int] = {}  # slot -> deadline (the model)
    payloads: dict[int, dict[str, object]] = {}
    for step, (op, arg) in enumerate(sequence):
        if op in ("lease", "lease-known", "relaunch"):
            try:
                expected: int | None = lowest_leasable_slot(confirmed, leases, now)
            except NoLeasableSlot:
                expected = None
            res = replace(base, settings=base.settings.model_copy(update={"lease_seconds": arg}))
            wallet = Account.create().address
            lapsed = sorted(s for s, d in leases.items() if not lease_is_live(d, now))
            if op == "relaunch" and lapsed:
                wallet = str(payloads[lapsed[0]]["user"])
                del leases[lapsed[0]], payloads[lapsed[0]]
            elif op == "lease-known":
                async with unit_of_work(sessions) as s:
                    await users.ensure_user(s, wallet, "user")
            try:
                async with unit_of_work(sessions) as s:
                    pending = await users.lease_registration(s, res, wallet, company)
            except SlotUnavailable:
                assert expected is None, f"step {step}: SQL found no slot, the rule says {expected}"
                continue
            slot = int(str(pending.payload["slot"]))
            assert slot == expected, f"step {step}: SQL leased {slot}, the rule says {expected}"
            leases[slot] = int(str(pending.payload["deadline"]))
            payloads[slot] = pending.payload
        elif op == "confirm":
            live = sorted(s for s, d in leases.items() if lease_is_live(d, now))
            if not live:
                continue
            slot = live[arg % len(live)]
            async with unit_of_work(sessions) as s:
                await confirm_registration(s, payloads.pop(slot))
            confirmed.add(slot)
            del leases[slot]
        else:
            now += arg
            async with unit_of_work(sessions) as s:
                await set_confirmed_time(s, now)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=ops)
async def test_the_sql_lease_path_leases_the_slot_the_pure_rule_names(
    db_engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    database_url: str,
    sequence: list[Op],
) -> None:
    await truncate_all(db_engine)
    base = build_resources(Settings(database_url=database_url))
    try:
        await run_sequence(sessions, base, sequence)
    finally:
        await base.aclose()
