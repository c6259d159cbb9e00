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
    st.tuples(st.just("abandon"), st.integers(0, 10**6)),
)


def apply(pool: MemoryPool, e: tuple[str, int], now: int) -> None:
    kind, x = e
    n = pool.participant_count
    if kind == "register":
        pool.register(x % n, now=now)
    elif kind == "abandon":  # a lease nobody pays: it expires and leaves a hole
        pool.lease(now, now)
    elif kind == "lease_confirm":
        slot = pool.lease(now, now + 1)
        pool.register(x % n, slot=slot)
    elif kind == "retopup" and n > 1:
        pool.retopup(1 + x % (n - 1))
    elif kind == "freeze" and n > 1:
        pool.freeze(1 + x % (n - 1))
    elif kind == "unfreeze":
        pool.unfreeze(x % n)


@settings(max_examples=80, deadline=None)
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


def make_events(picks: list[tuple[bool, int]], start_count: int) -> list[int]:
    """Valid replay events: registrations sponsored by an existing participant, retopups by
    an existing registrant."""
    events = []
    count = start_count
    for is_retopup, x in picks:
        if is_retopup and count > 1:
            events.append(~(1 + x % (count - 1)))
        else:
            events.append(x % count)
            count += 1
    return events


@settings(max_examples=80, deadline=None)
@given(
    plan_name=st.sampled_from(sorted(ALL_PLANS)),
    chunks=st.lists(
        st.tuples(
            st.lists(st.tuples(st.booleans(), st.integers(0, 10**6)), max_size=200),
            st.integers(0, 10**6),
        ),
        max_size=6,
    ),
)
def test_replay_matches_the_reference_event_by_event(
    plan_name: str, chunks: list[tuple[list[tuple[bool, int]], int]]
) -> None:
    plan = ALL_PLANS[plan_name]
    ref = MemoryPool(plan)
    fast = FastMemoryPool(plan)
    for picks, x in chunks:
        events = make_events(picks, ref.participant_count)
        for e in events:  # the reference, one step function call per event
            if e >= 0:
                ref.register(e)
            else:
                ref.retopup(~e)
        assert fast.replay(events) == len(events)
        assert snapshot(fast) == snapshot(ref)
        # admin decisions between chunks
        n = ref.participant_count
        for pool in (ref, fast):
            if n > 1:
                pool.freeze(1 + x % (n - 1))
            pool.unfreeze((x // 7) % n)


def test_replay_matches_over_a_long_cascading_run() -> None:
    for plan in ALL_PLANS.values():
        ref = MemoryPool(plan)
        fast = FastMemoryPool(plan)
        picks = [(i % 9 == 4, (i * 2654435761) % 2**32) for i in range(4000)]
        events = make_events(picks, 1)
        ref.replay(events, 0, 2000)
        fast.replay(events, 0, 2000)
        ref.freeze(5)
        fast.freeze(5)
        ref.replay(events, 2000)
        fast.replay(events, 2000)
        assert snapshot(fast) == snapshot(ref)
        assert fast.progressions == ref.progressions
        assert fast.liabilities() == fast.inflow


def test_replay_with_outstanding_leases_takes_the_reference_path() -> None:
    plan = ALL_PLANS["v1"]
    ref = MemoryPool(plan)
    fast = FastMemoryPool(plan)
    for pool in (ref, fast):
        slot = pool.lease(0, 10)
        pool.replay([0, 0, ~1, 1])
        pool.register(2, slot=slot)
    assert snapshot(fast) == snapshot(ref)
