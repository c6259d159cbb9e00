"""Level-1 slot leases (DESIGN §3) as pure logic, no I/O.

A registration leases the lowest free slot whose parent is confirmed, so every ancestor of a
leased slot has an owner. A lease is live while ``now <= deadline`` (the contract accepts the
payload while ``block.timestamp <= deadline``); ``now`` must be the timestamp of the latest
*confirmed block the listener has processed*, so a registration that made it on-chain before its
deadline is always confirmed before its slot can be leased again. Levels >= 2 have no leases:
auto-progression takes the next slot (the level's node count) at once.

`lowest_leasable_slot` is the reference rule (a scan: what the DB's indexed query must return);
`SlotLeaseBook` is the in-memory implementation the tests check against it: O(1) per lease when
confirmations arrive in slot order, O(log k) with k out-of-order slots otherwise.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Set

from backend.plan.errors import InconsistentState, NoLeasableSlot

__all__ = ["SlotLeaseBook", "lease_is_live", "lowest_leasable_slot"]

_FREE = 0
_LEASED = 1
_CONFIRMED = 2


def lease_is_live(deadline: int, now: int) -> bool:
    """A lease holds its slot until its deadline has passed on a confirmed block."""
    return now <= deadline


def lowest_leasable_slot(confirmed: Set[int], leases: Mapping[int, int], now: int) -> int:
    """The slot the next registration must lease: the lowest slot that is not confirmed, not
    under a live lease, and whose parent is confirmed. ``confirmed`` must contain the root (0);
    ``leases`` maps slot -> deadline (expired entries are ignored)."""
    if 0 not in confirmed:
        raise InconsistentState("the root slot 0 must be confirmed")
    top = max(confirmed)
    for s in range(1, 2 * top + 3):
        if s in confirmed:
            continue
        deadline = leases.get(s)
        if deadline is not None and lease_is_live(deadline, now):
            continue
        if (s - 1) // 2 in confirmed:
            return s
    raise NoLeasableSlot("every free slot's parent is under a live lease")


class SlotLeaseBook:
    """Leases of one level-1 tree: lease the lowest leasable slot, confirm, reuse expired.

    O(1) per registration when confirmations come in slot order (the common case), whatever
    the size of the tree: ``_next`` is the lowest slot never leased, and its parent is normally
    confirmed already — the FIFO of DESIGN §4. Out-of-order cases are kept small: ``_holes`` is a
    min-heap of free slots below ``_next`` whose parent is confirmed (expired leases, and slots
    skipped while their parent was under a lease and confirmed since); ``_waiting`` holds the
    skipped slots whose parent is still not confirmed. Every free slot below ``_next`` is in one
    of the two.
    """

    __slots__ = ("_blocked", "_deadline", "_expiries", "_holes", "_next", "_state", "_waiting")

    def __init__(self) -> None:
        self._state = bytearray([_CONFIRMED])  # slot 0: the company's root
        self._next = 1
        self._blocked = False
        self._holes: list[int] = []
        self._waiting: set[int] = set()
        self._deadline: dict[int, int] = {}
        self._expiries: list[tuple[int, int]] = []

    def _grow(self, slot: int) -> None:
        if slot >= len(self._state):
            self._state.extend(bytes(max(slot + 1 - len(self._state), len(self._state))))

    def is_confirmed(self, slot: int) -> bool:
        return slot < len(self._state) and self._state[slot] == _CONFIRMED

    def live_lease(self, slot: int, now: int) -> bool:
        d = self._deadline.get(slot)
        return d is not None and lease_is_live(d, now)

    def has_leases(self) -> bool:
        """Whether any lease is outstanding (live, or expired and not yet reclaimed)."""
        return bool(self._deadline)

    def confirmed_slots(self) -> set[int]:
        return {s for s, v in enumerate(self._state) if v == _CONFIRMED}

    def leases(self) -> dict[int, int]:
        """Slot -> deadline of every unconfirmed lease not yet reclaimed."""
        return dict(self._deadline)

    def _reclaim(self, now: int) -> None:
        exp = self._expiries
        while exp and not lease_is_live(exp[0][0], now):
            deadline, slot = heapq.heappop(exp)
            if self._state[slot] == _LEASED and self._deadline.get(slot) == deadline:
                self._state[slot] = _FREE
                del self._deadline[slot]
                heapq.heappush(self._holes, slot)  # it was leased, so its parent is confirmed

    def _advance(self) -> int:
        """Move ``_next`` to the lowest never-leased slot whose parent is confirmed (slots
        skipped on the way wait for their parent); -1 if there is none. When there is none the
        book stays blocked until the next confirmation, so a busy tree costs nothing to ask."""
        if self._blocked:
            return -1
        state = self._state
        first = self._next
        s = first
        skipped: list[int] = []
        while True:
            parent = (s - 1) // 2
            if parent >= first:
                # from here on every parent was never leased, so none is confirmed
                self._blocked = True
                return -1
            if state[parent] == _CONFIRMED:
                if skipped:
                    self._waiting.update(skipped)
                self._next = s
                return s
            skipped.append(s)
            s += 1

    def peek(self, now: int) -> int:
        """The slot `lease` would return at ``now`` (reclaims expired leases)."""
        self._reclaim(now)
        s = self._advance()
        holes = self._holes
        if holes and (s < 0 or holes[0] < s):
            return holes[0]
        if s < 0:
            raise NoLeasableSlot("every free slot's parent is under a live lease")
        return s

    def _take(self, s: int) -> None:
        if self._holes and self._holes[0] == s:
            heapq.heappop(self._holes)
        else:
            self._next = s + 1
        self._grow(s)

    def lease(self, now: int, deadline: int) -> int:
        """Lease the lowest leasable slot until ``deadline``."""
        if not lease_is_live(deadline, now):
            raise InconsistentState(f"deadline {deadline} has already passed at {now}")
        s = self.peek(now)
        self._take(s)
        self._state[s] = _LEASED
        self._deadline[s] = deadline
        heapq.heappush(self._expiries, (deadline, s))
        return s

    def confirm(self, slot: int) -> None:
        """A registration for ``slot`` was confirmed: fix the slot, open its children."""
        if slot >= len(self._state) or self._state[slot] != _LEASED:
            raise InconsistentState(f"slot {slot} is not under a lease")
        self._state[slot] = _CONFIRMED
        del self._deadline[slot]
        self._open_children(slot)

    def _open_children(self, slot: int) -> None:
        self._blocked = False
        waiting = self._waiting
        if waiting:
            for child in (2 * slot + 1, 2 * slot + 2):
                if child in waiting:
                    waiting.remove(child)
                    heapq.heappush(self._holes, child)

    def lease_and_confirm(self, now: int = 0) -> int:
        """Lease and confirm at once (a registration confirmed in the block it was leased in)."""
        s = self.peek(now)
        self._take(s)
        self._state[s] = _CONFIRMED
        self._open_children(s)
        return s
