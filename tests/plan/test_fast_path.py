"""The benchmark's fast path is the reference path: same state after every event."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.plan.fast import FastMemoryPool
from backend.plan.memory import MemoryPool

from .conftest import ALL_PLANS


def snapshot(pool: MemoryPool) -> tuple[Any, ...]:
    trees = tuple(
        (list(t.owner), list(t.filled), list(t.reserved), bytes(t.completed), t.count)
        for t in pool.levels
    )
    return (
        list(pool.sponsor),
        bytes(pool.frozen),
        bytes(pool.has_retopup),
        list(pool.pending),
        list(pool.held),
        trees,
        [dict(d) for d in pool.node_slot],
        pool.leases.confirmed_slots(),
        pool.inflow,
        pool.reinvested,
        pool.reserved_total,
        pool.placements,
        pool.completions,
        pool.progressions,
    )


event = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 10**6)),
    st.tuples(st.just("retopup"), st.integers(0, 10**6)),
    st.tuples(st.just("freeze"), st.integers(0, 10**6)),
    st.tuples(st.just("unfreeze"), st.integers(0, 10**6)),
    st.tuples(st.just("lease_confirm"), st.integers(0, 10**6)),
)


def apply(pool: MemoryPool, e: tuple[str, int], now: int) -> None:
    kind, x = e
    n = pool.participant_count
    if kind == "register":
        pool.register(x % n)
    elif kind == "lease_confirm":
        slot = pool.lease(now, now + 1)
        pool.register(x % n, slot=slot)
    elif kind == "retopup" and n > 1:
        pool.retopup(1 + x % (n - 1))
    elif kind == "freeze" and n > 1:
        pool.freeze(1 + x % (n - 1))
    elif kind == "unfreeze":
        pool.unfreeze(x % n)


@settings(max_examples=40, deadline=None)
@given(
    plan_name=st.sampled_from(sorted(ALL_PLANS)),
    prefix=st.integers(0, 400),
    events=st.lists(event, max_size=120),
)
def test_fast_path_matches_the_reference_after_every_event(
    plan_name: str, prefix: int, events: list[tuple[str, int]]
) -> None:
    plan = ALL_PLANS[plan_name]
    ref = MemoryPool(plan)
    fast = FastMemoryPool(plan)
    # a silent prefix grows the trees so completions and progressions happen in `events`
    for i in range(prefix):
        sponsor = (i * 7919) % ref.participant_count
        ref.register(sponsor)
        fast.register(sponsor)
        if i % 5 == 0:
            ref.retopup(1 + (i * 31) % (ref.participant_count - 1))
            fast.retopup(1 + (i * 31) % (fast.participant_count - 1))
    assert snapshot(fast) == snapshot(ref)
    for now, e in enumerate(events):
        apply(ref, e, now)
        apply(fast, e, now)
        assert snapshot(fast) == snapshot(ref), e


def test_fast_path_matches_over_a_long_cascading_run() -> None:
    for plan in ALL_PLANS.values():
        ref = MemoryPool(plan)
        fast = FastMemoryPool(plan)
        for i in range(3000):
            sponsor = (i * 104729) % ref.participant_count
            ref.register(sponsor)
            fast.register(sponsor)
            if i % 9 == 0:
                payer = 1 + (i * 17) % (ref.participant_count - 1)
                ref.retopup(payer)
                fast.retopup(payer)
            if i % 97 == 0:
                ref.freeze(1 + i % ref.participant_count)
                fast.freeze(1 + i % fast.participant_count)
            if i % 89 == 0:
                ref.unfreeze(i % ref.participant_count)
                fast.unfreeze(i % fast.participant_count)
        assert snapshot(fast) == snapshot(ref)
        assert fast.progressions == ref.progressions
