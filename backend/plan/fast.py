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

from heapq import heappop, heappush

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
            if book.has_leases():
                slot = book.lease_and_confirm(now)
            else:
                # SlotLeaseBook.lease_and_confirm with no lease outstanding, inlined: the lowest
                # candidate that is still free
                cand = book._candidates
                state = book._state
                slot = cand[0] if cand else -1
                while slot >= 0 and slot < len(state) and state[slot]:
                    heappop(cand)
                    slot = cand[0] if cand else -1
                if slot < 0:  # pragma: no cover - the heap always holds the open children
                    slot = book.lease_and_confirm(now)
                else:
                    heappop(cand)
                    if slot >= len(state):
                        book._grow(slot)
                        state = book._state
                    state[slot] = _CONFIRMED
                    heappush(cand, 2 * slot + 1)
                    heappush(cand, 2 * slot + 2)
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
        node_slot = self.node_slot[1]
        if pid in node_slot:  # pragma: no cover - a new id never has a node
            raise InconsistentState(f"{pid} already has a node at level 1")
        filled = tree.filled
        reserved = tree.reserved
        owner[slot] = pid
        tree.count += 1
        node_slot[pid] = slot
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
