"""Level-1 slot leases (DESIGN §3): lowest free slot with a confirmed parent; expiry reuse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.plan.errors import InconsistentState, NoLeasableSlot
from backend.plan.slots import SlotLeaseBook, lowest_leasable_slot


def test_leases_go_breadth_first_and_wait_for_confirmed_parents() -> None:
    book = SlotLeaseBook()
    assert book.lease(now=0, deadline=10) == 1
    assert book.lease(now=0, deadline=10) == 2
    with pytest.raises(NoLeasableSlot):  # 3..6 need 1 or 2 confirmed
        book.lease(now=0, deadline=10)
    book.confirm(2)  # confirmations may arrive out of slot order
    assert book.lease(now=0, deadline=10) == 5
    book.confirm(1)
    assert book.lease(now=0, deadline=10) == 3


def test_an_expired_lease_is_the_next_slot_filled() -> None:
    book = SlotLeaseBook()
    assert book.lease(now=0, deadline=5) == 1
    book.confirm(1)
    assert book.lease(now=1, deadline=5) == 2
    assert book.lease(now=1, deadline=9) == 3
    assert book.lease(now=5, deadline=9) == 4  # 2 is still live at its deadline
    assert book.lease(now=6, deadline=20) == 2  # now it has expired: reused first
    with pytest.raises(InconsistentState):
        book.confirm(7)  # never leased


def test_a_lease_with_a_past_deadline_is_refused() -> None:
    with pytest.raises(InconsistentState):
        SlotLeaseBook().lease(now=10, deadline=9)


def test_reference_needs_the_root() -> None:
    with pytest.raises(InconsistentState):
        lowest_leasable_slot(set(), {}, 0)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["lease", "confirm", "tick"]), st.integers(0, 1000)),
        max_size=120,
    )
)
def test_book_matches_the_reference_rule(ops: list[tuple[str, int]]) -> None:
    book = SlotLeaseBook()
    now = 0
    live: dict[int, int] = {}
    for kind, x in ops:
        live = {s: d for s, d in live.items() if d >= now}
        if kind == "tick":
            now += 1 + x % 3
        elif kind == "confirm" and live:
            slot = sorted(live)[x % len(live)]
            del live[slot]
            book.confirm(slot)
        elif kind == "lease":
            confirmed = book.confirmed_slots()
            try:
                expected = lowest_leasable_slot(confirmed, book.leases(), now)
            except NoLeasableSlot:
                with pytest.raises(NoLeasableSlot):
                    book.lease(now, now + 1 + x % 4)
                continue
            slot = book.lease(now, now + 1 + x % 4)
            assert slot == expected
            assert slot not in confirmed and (slot - 1) // 2 in confirmed
            live[slot] = now + 1 + x % 4
        # every confirmed slot's parent is confirmed: rewards always have recipients
        confirmed = book.confirmed_slots()
        assert all((s - 1) // 2 in confirmed for s in confirmed if s)
        # complete except under live leases: a free slot below the highest confirmed one is
        # under a live lease, below one, or an expired lease's hole that is leased next
        top = max(confirmed)
        for s in range(1, top):
            if s in confirmed:
                continue
            a = s
            while a not in live and a > 0 and (a - 1) // 2 not in confirmed:
                a = (a - 1) // 2
            if a not in live:
                assert lowest_leasable_slot(confirmed, live, now) <= a


def test_asking_a_blocked_book_again_and_again_costs_nothing() -> None:
    book = SlotLeaseBook()
    book.lease(now=0, deadline=10)
    book.lease(now=0, deadline=10)
    for _ in range(200):
        with pytest.raises(NoLeasableSlot):
            book.lease(now=0, deadline=10)
    assert len(book._state) < 16 and not book._waiting
    book.confirm(1)
    assert book.lease(now=0, deadline=10) == 3
