"""A specialised fast path of the in-memory driver, for the benchmark.

`FastMemoryPool` keeps exactly `MemoryPool`'s state and produces exactly its state transitions,
but inlines `engine.register` / `engine.place` / `engine.retopup` arithmetic on the flat lists
instead of building views and reward-line tuples (building those is most of the reference
path's cost). Anything rare — an auto-progression cascade, a recording pool — goes through the
reference path. `tests/plan/test_fast_path.py` runs random event sequences (every plan shape,
freezes, retopups, progressions, out-of-order confirmations) through both and asserts the
whole state is identical after every event; that test is what licenses the benchmark to use it.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.plan.config import MATRIX_SIZE, PlanConfig, ReservePolicy
from backend.plan.errors import InconsistentState
from backend.plan.memory import MemoryPool

__all__ = ["FastMemoryPool"]

_NO_OWNER = -1
_CONFIRMED = 2  # SlotLeaseBook's state byte for a confirmed slot


class FastMemoryPool(MemoryPool):
    """`MemoryPool` with inlined registration/placement/retopup (identical results)."""

    def __init__(self, plan: PlanConfig) -> None:
        super().__init__(plan)
        c = plan.constants
        entry = plan.entry_price
        self._direct = c.direct_bps * entry // 10_000
        self._entry = entry
        self._split1 = c.split(entry - self._direct)
        self._reserve_from = c.reserve_from
        self._retopup_split = c.retopup_split(plan.retopup_price)
        self._accumulate = plan.reserve_policy is ReservePolicy.ACCUMULATE

    def register(self, sponsor_id: int | None, slot: int | None = None, now: int = 0) -> int:
        pending = self.pending
        held = self.held
        frozen = self.frozen
        company = self.company_id
        pid = len(self.sponsor)
        if sponsor_id is not None and not 0 <= sponsor_id < pid:
            raise InconsistentState(f"sponsor {sponsor_id} is not registered")
        if slot is None:
            book = self.leases
            s = book._next
            state = book._state
            if book._deadline or book._holes or book._waiting or state[(s - 1) // 2] != _CONFIRMED:
                slot = book.lease_and_confirm(now)
            else:
                # SlotLeaseBook.lease_and_confirm in the in-order case, inlined
                book._next = s + 1
                if s >= len(state):
                    book._grow(s)
                state[s] = _CONFIRMED
                slot = s
        else:
            self.leases.confirm(slot)
        self.sponsor.append(-1 if sponsor_id is None else sponsor_id)
        frozen.append(0)
        self.has_retopup.append(0)
        pending.append(0)
        held.append(0)
        self.inflow += self._entry
        direct = self._direct
        if direct:
            if sponsor_id is None:
                pending[company] += direct
            elif frozen[sponsor_id]:
                held[sponsor_id] += direct
            else:
                pending[sponsor_id] += direct

        # engine.place at level 1, inlined
        tree = self.levels[1]
        owner = tree.owner
        if slot >= len(owner):
            tree.ensure(slot)
            owner = tree.owner
        if owner[slot] != _NO_OWNER:
            raise InconsistentState(f"slot {slot} at level 1 is already taken")
        filled = tree.filled
        reserved = tree.reserved
        owner[slot] = pid
        tree.count += 1
        self.placements += 1
        s1, s2, s3, company_income, dust = self._split1
        company_income += dust
        reserve_from = self._reserve_from
        s = slot
        # parent
        s = (s - 1) // 2
        o = owner[s]
        f = filled[s] + 1
        filled[s] = f
        if s1:
            if f > reserve_from and o != company:
                reserved[s] += s1
                self.reserved_total += s1
            elif frozen[o]:
                held[o] += s1
            else:
                pending[o] += s1
        if f == MATRIX_SIZE:  # pragma: no cover - a parent completes only after its grandchildren
            self._complete(1, s, o)
        if s == 0:
            company_income += s2 + s3
        else:
            # grandparent
            s = (s - 1) // 2
            o = owner[s]
            f = filled[s] + 1
            filled[s] = f
            if s2:
                if f > reserve_from and o != company:
                    reserved[s] += s2
                    self.reserved_total += s2
                elif frozen[o]:
                    held[o] += s2
                else:
                    pending[o] += s2
            if f == MATRIX_SIZE:  # pragma: no cover
                self._complete(1, s, o)
            if s == 0:
                company_income += s3
            else:
                # great-grandparent: the only ancestor this placement can complete
                s = (s - 1) // 2
                o = owner[s]
                f = filled[s] + 1
                filled[s] = f
                if s3:
                    if f > reserve_from and o != company:
                        reserved[s] += s3
                        self.reserved_total += s3
                    elif frozen[o]:
                        held[o] += s3
                    else:
                        pending[o] += s3
                if f == MATRIX_SIZE:
                    self._complete(1, s, o)
        pending[company] += company_income
        return pid

    def _complete(self, level: int, slot: int, owner_id: int) -> None:
        """engine.settle_completion, inlined; a progression goes through the reference path."""
        tree = self.levels[level]
        tree.completed[slot] = 1
        self.completions += 1
        reserve = tree.reserved[slot]
        if reserve <= 0:
            return
        if level < self.plan.levels:
            price = self.plan.level_prices[level]
            if reserve >= price:
                tree.reserved[slot] = 0
                self.reserved_total -= reserve
                self.reinvested += reserve
                excess = reserve - price
                if excess:
                    if self.frozen[owner_id]:
                        self.held[owner_id] += excess
                    else:
                        self.pending[owner_id] += excess
                self.progressions += 1
                self._place(level + 1, self.levels[level + 1].count, owner_id, price)
                return
            if self._accumulate:
                return
        tree.reserved[slot] = 0
        self.reserved_total -= reserve
        if self.frozen[owner_id]:
            self.held[owner_id] += reserve
        else:
            self.pending[owner_id] += reserve

    def retopup(self, payer_id: int) -> None:
        shares, company_income = self._retopup_split
        sponsor = self.sponsor
        has_retopup = self.has_retopup
        frozen = self.frozen
        pending = self.pending
        self.inflow += self.plan.retopup_price
        s = sponsor[payer_id]
        for share in shares:
            if s < 0:
                company_income += share
                continue
            if has_retopup[s]:
                if frozen[s]:
                    self.held[s] += share
                else:
                    pending[s] += share
            else:
                company_income += share
            s = sponsor[s]
        has_retopup[payer_id] = 1
        pending[self.company_id] += company_income

    def replay(self, events: Sequence[int], start: int = 0, stop: int | None = None) -> int:
        """`MemoryPool.replay` with every per-event lookup hoisted out of the loop.

        Same transitions as calling `register`/`retopup` per event (tested); sums that only
        ever grow by addition (company income, counters, inflow) are accumulated in locals and
        added once at the end, which leaves the same final state because addition commutes.
        """
        stop = len(events) if stop is None else stop
        book = self.leases
        if self.steps is not None or self._on_step is not None or book.has_leases():
            return super().replay(events, start, stop)
        sponsor = self.sponsor
        frozen = self.frozen
        has_retopup = self.has_retopup
        pending = self.pending
        held = self.held
        sponsor_append = sponsor.append
        frozen_append = frozen.append
        has_retopup_append = has_retopup.append
        pending_append = pending.append
        held_append = held.append
        company = self.company_id
        state = book._state
        tree = self.levels[1]
        owner = tree.owner
        filled = tree.filled
        reserved = tree.reserved
        s1, s2, s3, company_share, dust = self._split1
        placement_company = company_share + dust
        direct = self._direct
        reserve_from = self._reserve_from
        level_shares, retopup_dust = self._retopup_split
        complete = self._complete
        company_income = 0
        reserved_added = 0
        registrations = 0
        retopups = 0
        try:
            for i in range(start, stop):
                e = events[i]
                if e < 0:
                    # engine.retopup, inlined
                    payer = ~e
                    s = sponsor[payer]
                    income = retopup_dust
                    for share in level_shares:
                        if s < 0:
                            income += share
                            continue
                        if has_retopup[s]:
                            if frozen[s]:
                                held[s] += share
                            else:
                                pending[s] += share
                        else:
                            income += share
                        s = sponsor[s]
                    has_retopup[payer] = 1
                    company_income += income
                    retopups += 1
                    continue

                # a registration: lease and confirm the lowest free slot
                pid = len(sponsor)
                if e >= pid:
                    raise InconsistentState(f"sponsor {e} is not registered")
                slot = book._next
                if book._holes or book._waiting or state[(slot - 1) // 2] != _CONFIRMED:
                    slot = book.lease_and_confirm()  # out of order: the general rule
                else:  # in order: the next slot, O(1)
                    book._next = slot + 1
                    if slot >= len(state):
                        book._grow(slot)
                    state[slot] = _CONFIRMED
                sponsor_append(e)
                frozen_append(0)
                has_retopup_append(0)
                pending_append(0)
                held_append(0)
                registrations += 1
                if direct:
                    if frozen[e]:
                        held[e] += direct
                    else:
                        pending[e] += direct

                # engine.place at level 1, inlined
                if slot >= len(owner):
                    tree.ensure(slot)
                owner[slot] = pid
                income = placement_company
                s = (slot - 1) // 2
                o = owner[s]
                f = filled[s] + 1
                filled[s] = f
                if s1:
                    if f > reserve_from and o != company:
                        reserved[s] += s1
                        reserved_added += s1
                    elif frozen[o]:
                        held[o] += s1
                    else:
                        pending[o] += s1
                if s == 0:
                    income += s2 + s3
                else:
                    s = (s - 1) // 2
                    o = owner[s]
                    f = filled[s] + 1
                    filled[s] = f
                    if s2:
                        if f > reserve_from and o != company:
                            reserved[s] += s2
                            reserved_added += s2
                        elif frozen[o]:
                            held[o] += s2
                        else:
                            pending[o] += s2
                    if s == 0:
                        income += s3
                    else:
                        s = (s - 1) // 2
                        o = owner[s]
                        f = filled[s] + 1
                        filled[s] = f
                        if s3:
                            if f > reserve_from and o != company:
                                reserved[s] += s3
                                reserved_added += s3
                            elif frozen[o]:
                                held[o] += s3
                            else:
                                pending[o] += s3
                        if f == MATRIX_SIZE:  # only a great-grandparent can complete here
                            complete(1, s, o)
                company_income += income
        finally:
            pending[company] += company_income
            self.reserved_total += reserved_added
            tree.count += registrations
            self.placements += registrations
            self.inflow += registrations * self._entry + retopups * self.plan.retopup_price
        return stop - start
