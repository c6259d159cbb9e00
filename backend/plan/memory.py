"""In-memory driver: the whole state in flat lists, every event through the engine's steps.

This is what the property tests and the benchmark run. It does what the listener does against
Postgres — load the few views a step needs, call the step, store its results, loop on
auto-progressions — with lists indexed by participant id and by slot instead of rows, so it
exercises exactly the same step functions. State is kept as ints in lists/bytearrays (no
per-node objects), so memory and garbage-collector work stay flat as the tree grows.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Sequence
from typing import NamedTuple

from backend.plan import engine
from backend.plan.config import MATRIX_SIZE, PlanConfig
from backend.plan.errors import InconsistentState, PlanError
from backend.plan.slots import SlotLeaseBook
from backend.plan.types import (
    Ancestor,
    NodeView,
    Participant,
    PlacementResult,
    Progression,
    ReserveAction,
    ReserveEffect,
    RewardLine,
    RewardStatus,
)

__all__ = ["COMPANY_ID", "MemoryPool", "Step"]

COMPANY_ID = 0
"""The company is participant 0, the root participant, and owns slot 0 of every level."""

_NO_OWNER = -1
_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (hot path)
_PENDING = RewardStatus.PENDING
_HELD = RewardStatus.HELD
_RESERVED = RewardStatus.RESERVED


class Step(NamedTuple):
    """One engine step as recorded by the driver (for tests and docs)."""

    event: str
    """"registration", "placement", "retopup" or "release"."""
    inflow: int
    """Wei entering the step: a payment, a placement amount or a consumed reserve."""
    lines: tuple[RewardLine, ...]
    result: PlacementResult | None = None


class _Level:
    """One level's tree: owner, matrix fill and reserve per slot.

    Owners and matrix counts are flat arrays (values inline, 8 and 1 bytes a slot) so a lookup
    costs one cache line however large the tree; reserves are wei, beyond 64 bits, so a list.
    """

    __slots__ = ("completed", "count", "filled", "owner", "reserved")

    def __init__(self, company_id: int) -> None:
        self.owner = array("q", [company_id])
        self.filled = bytearray(1)
        self.reserved: list[int] = [0]
        self.completed = bytearray(1)
        self.count = 1  # nodes placed, the root included

    def ensure(self, slot: int) -> None:
        n = len(self.owner)
        if slot >= n:
            grow = max(slot + 1 - n, n)
            self.owner.extend(array("q", [_NO_OWNER]) * grow)
            self.filled.extend(bytes(grow))
            self.reserved.extend([0] * grow)
            self.completed.extend(bytes(grow))

    def view(self, level: int, slot: int) -> NodeView:
        return NodeView(
            level,
            slot,
            self.owner[slot],
            self.filled[slot],
            self.reserved[slot],
            bool(self.completed[slot]),
        )

    def store(self, node: NodeView) -> None:
        s = node.slot
        self.owner[s] = node.owner_id
        self.filled[s] = node.filled
        self.reserved[s] = node.reserved
        self.completed[s] = node.completed


class MemoryPool:
    """The whole plan state in memory; events go through `backend.plan.engine`.

    Ledger aggregates: per-participant `pending` and `held` balances, per-node reserves (the
    levels' `reserved` lists), the total of reinvested reserves, and `inflow` (Σ confirmed
    payments). Liabilities == inflow at all times (there are no payouts in memory).
    ``record=True`` keeps every step for inspection.
    """

    def __init__(
        self,
        plan: PlanConfig,
        *,
        record: bool = False,
        on_step: Callable[[Step], None] | None = None,
    ) -> None:
        self.plan = plan
        self.company_id = COMPANY_ID
        # sponsor id per participant, -1 for none: a flat array, one cache line per lookup
        self.sponsor = array("q", [-1])
        self.frozen = bytearray(1)
        self.has_retopup = bytearray(1)
        self.pending: list[int] = [0]
        self.held: list[int] = [0]
        self.levels: list[_Level] = [_Level(COMPANY_ID) for _ in range(plan.levels + 1)]
        # owner -> slot at each level >= 2 (at level 1 every registration is a new participant
        # with a new node, so the owner list is the whole mapping)
        self.node_slot: list[dict[int, int]] = [{} for _ in range(plan.levels + 1)]
        self.leases = SlotLeaseBook()
        self.inflow = 0
        self.reinvested = 0
        self.reserved_total = 0
        self.placements = 0
        self.completions = 0
        self.progressions = 0
        self.steps: list[Step] | None = [] if record else None
        self._on_step = on_step

    # -- views ----------------------------------------------------------------------------

    @property
    def participant_count(self) -> int:
        return len(self.sponsor)

    def participant(self, pid: int) -> Participant:
        sponsor = self.sponsor[pid]
        return Participant(
            pid,
            None if sponsor < 0 else sponsor,
            bool(self.frozen[pid]),
            bool(self.has_retopup[pid]),
        )

    def node(self, level: int, slot: int) -> NodeView:
        return self.levels[level].view(level, slot)

    def ancestors(self, level: int, slot: int) -> list[Ancestor]:
        """The (node, owner) views `engine.place` needs for ``slot``: O(1) rows."""
        tree = self.levels[level]
        owner, filled, reserved, completed = tree.owner, tree.filled, tree.reserved, tree.completed
        sponsor, frozen, has_retopup = self.sponsor, self.frozen, self.has_retopup
        out: list[Ancestor] = []
        s = slot
        for _ in range(3):
            if s <= 0:
                break
            s = (s - 1) // 2
            o = owner[s]
            sp = sponsor[o]
            out.append(
                (
                    _new(NodeView, (level, s, o, filled[s], reserved[s], completed[s] == 1)),
                    _new(
                        Participant,
                        (o, None if sp < 0 else sp, frozen[o] == 1, has_retopup[o] == 1),
                    ),
                )
            )
        return out

    def generations(self, pid: int) -> list[Participant]:
        """The sponsor chain `engine.retopup` needs: up to the plan's generations, nearest first."""
        out: list[Participant] = []
        s = self.sponsor[pid]
        n = self.plan.generations
        while s >= 0 and len(out) < n:
            out.append(self.participant(s))
            s = self.sponsor[s]
        return out

    def liabilities(self) -> int:
        return sum(self.pending) + sum(self.held) + self.reserved_total

    # -- admin ----------------------------------------------------------------------------

    def freeze(self, pid: int) -> None:
        self.frozen[pid] = 1

    def unfreeze(self, pid: int) -> None:
        """Held rewards return to pending."""
        self.frozen[pid] = 0
        self.pending[pid] += self.held[pid]
        self.held[pid] = 0

    def release_reserve(self, level: int, slot: int) -> ReserveEffect:
        """Admin release of an accumulated reserve."""
        tree = self.levels[level]
        node = tree.view(level, slot)
        result = engine.release_reserve(self.plan, node, self.participant(node.owner_id))
        tree.store(result.node)
        self._apply_effect(result.effect)
        self._record(Step("release", 0, (), None))
        return result.effect

    # -- events ---------------------------------------------------------------------------

    def lease(self, now: int, deadline: int) -> int:
        """Lease the lowest leasable level-1 slot (DESIGN §3)."""
        return self.leases.lease(now, deadline)

    def register(self, sponsor_id: int | None, slot: int | None = None, now: int = 0) -> int:
        """Confirm a registration sponsored by ``sponsor_id`` into the leased ``slot`` (or, with
        no slot, lease and confirm at ``now`` the lowest leasable slot). Returns the new
        participant's id."""
        plan = self.plan
        sponsor = None
        if sponsor_id is not None:
            if not 0 <= sponsor_id < len(self.sponsor):
                raise InconsistentState(f"sponsor {sponsor_id} is not registered")
            sponsor = self.participant(sponsor_id)
        if slot is None:
            slot = self.leases.lease_and_confirm(now)
        else:
            self.leases.confirm(slot)
        pid = len(self.sponsor)
        self.sponsor.append(-1 if sponsor_id is None else sponsor_id)
        self.frozen.append(0)
        self.has_retopup.append(0)
        self.pending.append(0)
        self.held.append(0)
        amount = plan.entry_price
        self.inflow += amount
        reg = engine.register(plan, self.company_id, sponsor, amount)
        self._apply_lines(reg.lines)
        self._record(Step("registration", amount, reg.lines))
        self._place(1, slot, pid, reg.placement_amount)
        return pid

    def retopup(self, payer_id: int) -> None:
        """Confirm a retopup by ``payer_id`` at the plan's retopup price."""
        payer = self.participant(payer_id)
        amount = self.plan.retopup_price
        self.inflow += amount
        result = engine.retopup(
            self.plan, self.company_id, payer, amount, self.generations(payer_id)
        )
        self.has_retopup[payer_id] = 1
        self._apply_lines(result.lines)
        self._record(Step("retopup", amount, result.lines))

    def replay(self, events: Sequence[int], start: int = 0, stop: int | None = None) -> int:
        """Run ``events[start:stop]`` in order: ``e >= 0`` is a registration sponsored by
        participant ``e`` (leased and confirmed at once), ``e < 0`` a retopup by participant
        ``~e``. Returns the number of events run."""
        stop = len(events) if stop is None else stop
        for i in range(start, stop):
            e = events[i]
            if e >= 0:
                self.register(e)
            else:
                self.retopup(~e)
        return stop - start

    # -- internals ------------------------------------------------------------------------

    def _place(self, level: int, slot: int, owner_id: int, amount: int) -> None:
        queue: deque[Progression] = deque()
        while True:
            tree = self.levels[level]
            tree.ensure(slot)
            if tree.owner[slot] != _NO_OWNER:
                raise InconsistentState(f"slot {slot} at level {level} is already taken")
            if level > 1 and owner_id in self.node_slot[level]:
                raise InconsistentState(f"{owner_id} already has a node at level {level}")
            result = engine.place(
                self.plan,
                self.company_id,
                level,
                slot,
                owner_id,
                amount,
                self.ancestors(level, slot),
            )
            tree.store(result.node)
            tree.count += 1
            if level > 1:
                self.node_slot[level][owner_id] = slot
            for updated in result.ancestors:
                tree.store(updated)
            self._apply_lines(result.lines)
            for effect in result.reserve_effects:
                self._apply_effect(effect)
            self.placements += 1
            self.completions += len(result.completions)
            self._record(Step("placement", amount, result.lines, result))
            queue.extend(result.progressions)
            if not queue:
                return
            progression = queue.popleft()
            self.progressions += 1
            level = progression.level
            owner_id = progression.owner_id
            amount = progression.amount
            slot = self.levels[level].count  # levels >= 2: lowest free slot, no leases

    def _apply_lines(self, lines: tuple[RewardLine, ...]) -> None:
        for line in lines:
            status = line.status
            if status is _PENDING:
                self.pending[line.recipient_id] += line.amount
            elif status is _HELD:
                self.held[line.recipient_id] += line.amount
            elif status is _RESERVED:
                self.reserved_total += line.amount
            else:  # pragma: no cover - the engine never emits other statuses as new lines
                raise PlanError(f"unexpected status {status}")

    def _apply_effect(self, effect: ReserveEffect) -> None:
        self.reserved_total -= effect.amount
        if effect.action is ReserveAction.REINVEST:
            self.reinvested += effect.amount
            self._apply_lines(effect.lines)
        elif effect.status is _HELD:
            self.held[effect.owner_id] += effect.amount
        else:
            self.pending[effect.owner_id] += effect.amount

    def _record(self, step: Step) -> None:
        if self.steps is not None:
            self.steps.append(step)
        if self._on_step is not None:
            self._on_step(step)

    def check_node_invariants(self) -> None:
        """Raise if any node's matrix count disagrees with its confirmed descendants (O(n))."""
        for level, tree in enumerate(self.levels):
            if level == 0:
                continue
            n = len(tree.owner)
            for s in range(n):
                if tree.owner[s] == _NO_OWNER:
                    continue
                count = 0
                first = s
                width = 1
                for _ in range(3):
                    first = 2 * first + 1
                    width *= 2
                    count += sum(
                        1 for c in range(first, min(first + width, n)) if tree.owner[c] != _NO_OWNER
                    )
                if tree.filled[s] != count:
                    raise InconsistentState(
                        f"level {level} slot {s}: filled {tree.filled[s]} != {count}"
                    )
                if bool(tree.completed[s]) != (count == MATRIX_SIZE):
                    raise InconsistentState(f"level {level} slot {s}: completion flag wrong")
