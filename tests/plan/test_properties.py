"""Property tests: any sequence of events keeps conservation, the tree shape and the matrices.

Events: registrations (leased and confirmed at once, or leased now and confirmed later in any
order, or left to expire), retopups, freezes/unfreezes and admin releases, under every plan
shape in conftest (default, auto-progression, accumulate, dusty rounding, cascades to the top).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.plan.config import PlanConfig
from backend.plan.errors import NoLeasableSlot, PlanError
from backend.plan.memory import MemoryPool
from backend.plan.slots import lowest_leasable_slot

from .conftest import ALL_PLANS
from .invariants import check_ledger, check_trees

op = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 10**6)),
    st.tuples(st.just("bulk"), st.integers(1, 40), st.integers(0, 10**6)),
    st.tuples(st.just("lease"), st.integers(1, 5)),
    st.tuples(st.just("confirm"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("tick"), st.integers(1, 4)),
    st.tuples(st.just("retopup"), st.integers(0, 10**6)),
    st.tuples(st.just("freeze"), st.integers(0, 10**6)),
    st.tuples(st.just("unfreeze"), st.integers(0, 10**6)),
    st.tuples(st.just("release"), st.integers(0, 10**6)),
)


def run(pool: MemoryPool, ops: list[tuple[Any, ...]]) -> None:
    """Drive ``pool`` through ``ops`` the way the API and the listener would."""
    now = 0
    live: list[tuple[int, int]] = []  # (slot, deadline) leased, not yet confirmed
    for o in ops:
        kind = o[0]
        n = pool.participant_count
        live = [(s, d) for s, d in live if d >= now]  # expired leases can no longer confirm
        if kind in ("register", "bulk"):
            count, seed = (1, o[1]) if kind == "register" else (o[1], o[2])
            for i in range(count):
                try:
                    pool.register((seed * (i + 7)) % pool.participant_count, now=now)
                except NoLeasableSlot:
                    with pytest.raises(NoLeasableSlot):
                        lowest_leasable_slot(
                            pool.leases.confirmed_slots(), pool.leases.leases(), now
                        )
                    break
        elif kind == "lease":
            try:
                expected = lowest_leasable_slot(
                    pool.leases.confirmed_slots(), pool.leases.leases(), now
                )
            except NoLeasableSlot:
                with pytest.raises(NoLeasableSlot):
                    pool.lease(now, now + o[1])
                continue
            slot = pool.lease(now, now + o[1])
            assert slot == expected, "a lease takes the lowest free slot whose parent is confirmed"
            live.append((slot, now + o[1]))
        elif kind == "confirm" and live:
            slot, _ = live.pop(o[1] % len(live))
            pool.register(o[2] % n, slot=slot)
        elif kind == "tick":
            now += o[1]
        elif kind == "retopup" and n > 1:
            pool.retopup(1 + o[1] % (n - 1))
        elif kind == "freeze" and n > 1:
            pool.freeze(1 + o[1] % (n - 1))
        elif kind == "unfreeze":
            pool.unfreeze(o[1] % n)
        elif kind == "release":
            accumulated = [
                (level, slot)
                for level, tree in enumerate(pool.levels)
                if level
                for slot, r in enumerate(tree.reserved)
                if r and tree.completed[slot]
            ]
            if accumulated:
                pool.release_reserve(*accumulated[o[1] % len(accumulated)])
            else:
                try:
                    pool.release_reserve(1, 0)
                except PlanError:
                    pass
                else:  # pragma: no cover
                    raise AssertionError("the company's node never has a reserve to release")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan_name=st.sampled_from(sorted(ALL_PLANS)), ops=st.lists(op, max_size=60))
def test_any_event_sequence_conserves_wei_and_keeps_the_tree(
    plan_name: str, ops: list[tuple[Any, ...]]
) -> None:
    pool = MemoryPool(ALL_PLANS[plan_name], record=True)
    run(pool, ops)
    check_ledger(pool)
    check_trees(pool)


@settings(max_examples=40, deadline=None)
@given(
    plan_name=st.sampled_from(sorted(ALL_PLANS)),
    registrations=st.integers(100, 500),
    seed=st.integers(0, 2**32),
)
def test_long_runs_complete_every_full_matrix_once(
    plan_name: str, registrations: int, seed: int
) -> None:
    plan: PlanConfig = ALL_PLANS[plan_name]
    pool = MemoryPool(plan, record=True)
    x = seed
    for i in range(registrations):
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        pool.register((x >> 33) % pool.participant_count)
        if i % 7 == 3:
            pool.retopup(1 + (x >> 13) % (pool.participant_count - 1))
        if i % 50 == 17:
            pool.freeze(1 + (x >> 7) % (pool.participant_count - 1))
        if i % 50 == 41:
            pool.unfreeze(1 + (x >> 7) % (pool.participant_count - 1))
    check_ledger(pool)
    check_trees(pool)
    # with no leases outstanding, level 1 is a breadth-first prefix
    assert pool.leases.confirmed_slots() == set(range(registrations + 1))
