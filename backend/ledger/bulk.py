"""Bulk settlement: a run of final registrations and retopups applied to the ledger at once.

The per-event path (`backend.ledger.registration`, `backend.ledger.retopup`) reads and writes
about 25 statements per registration, which is right for live mode (a few events a block) and
far too slow for a backfill. Here a run of consecutive `RegistrationAccepted` /
`RetopupCompleted` events (in chain order) is settled in three steps:

1. **read** what the run needs in a few statements: its participants and their freezes, the
   leases, payloads and placements of its slots and nonces, the level trees' pool rows, the
   ancestor nodes of its slots and the reserved lines earned at them (nodes and participants
   the run reaches that were not read are read on demand, rarely);
2. **settle** every event in memory, in order, through the same engine steps
   (`backend.plan.engine`) with the same views the per-event path builds, mirroring each of
   its writes on in-memory rows (a reserve flip moves the lines it would update);
3. **write** the rows: new rows by COPY, in the order the per-event path inserts them (so the
   ids their sequences give row by row are the same; a new participant's id is drawn up front,
   as the run needs it), changed rows by one `UPDATE … FROM unnest(…)` per table, balances by
   one statement.

The result is the per-event path's ledger, row for row and id for id
(tests/ledger/test_bulk_settlement.py proves it on random runs of every plan shape). Anything
the in-memory pass finds wrong raises `PlanError`/`UnknownPlan` before a row is written; the
caller then rolls the run back and settles it event by event, which records the anomaly exactly
as before. Live events are announced only once the whole run is written.

The caller holds the range's transaction and must not have other writes pending on the tables
above: the session is flushed first and expired after (its ORM objects reload).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.events import PUBLISHER, STAFF, publish, user_channel
from backend.ledger.errors import BulkRefused
from backend.models import (
    LeaseStatus,
    PayloadStatus,
    PlacementSource,
    PlacementStatus,
    RewardStatus,
    UserStatus,
)
from backend.plan import engine
from backend.plan.config import PlanConfig
from backend.plan.errors import InconsistentState, PlanError
from backend.plan.types import NodeView, Participant, ReserveAction, RewardLine
from backend.plan_versions import service as plan_versions
from backend.plan_versions.errors import UnknownPlan
from backend.pool import service as pool
from backend.rewards.service import BALANCE_COLUMNS
from backend.users import service as users

BULK_EVENTS = frozenset({"RegistrationAccepted", "RetopupCompleted"})
"""The events a run may hold: the ones that only add to the ledger."""


class SettleEvent(NamedTuple):
    """A stored, final chain event as the bulk path reads it."""

    id: int
    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str


# ------------------------------------------------------------------------- in-memory rows


@dataclass(slots=True, eq=False)
class _User:
    id: int
    wallet: str
    referrer_id: int | None
    status: str
    has_retopup: bool
    new: bool = False
    activated_block: int | None = None
    activated: bool = False
    retopped: bool = False
    freezes: list[tuple[int, int, bool]] = field(default_factory=list)
    """(effective block, freeze id, frozen) of every freeze decision about the participant."""

    def frozen_at(self, block: int) -> bool:
        """As `users.repository.frozen_at`: the latest decision effective at or before `block`."""
        best: tuple[int, int, bool] | None = None
        for decision in self.freezes:
            if decision[0] <= block and (best is None or decision[:2] > best[:2]):
                best = decision
        return best[2] if best is not None else False

    def at(self, block: int) -> Participant:
        return Participant(
            self.id,
            self.referrer_id,
            self.frozen_at(block) if self.freezes else False,
            self.has_retopup,
        )


@dataclass(slots=True, eq=False)
class _Node:
    id: int | None  # None: placed by this run
    level: int
    slot: int
    user_id: int
    filled: int
    reserved: int
    completed: bool
    dirty: bool = False


@dataclass(slots=True, eq=False)
class _Line:
    """A rewards row: written by this run (`id` None) or an earlier reserved one it flips."""

    id: int | None
    user_id: int
    amount: int
    status: str
    chain_event_id: int | None = None
    line_no: int = 0
    kind: str = ""
    level: int | None = None
    earner_slot: int | None = None
    generation: int | None = None
    reason: str | None = None
    source: str = ""
    plan_hash: str = ""


@dataclass(slots=True, eq=False)
class _Lease:
    id: int | None
    slot: int
    status: str
    user_id: int | None
    referrer_id: int | None
    transaction_id: int | None
    deadline: int
    dirty: bool = False


@dataclass(slots=True, eq=False)
class _Payload:
    id: int
    status: str
    tx_hash: str | None
    block_number: int | None
    dirty: bool = False


@dataclass(slots=True, eq=False)
class _Placement:
    id: int | None
    user_id: int
    level: int
    slot: int | None
    amount: int | None
    source: str
    status: str
    plan_hash: str
    transaction_id: int | None
    chain_event_id: int | None
    dirty: bool = False


@dataclass(slots=True, eq=False)
class _Pool:
    next_slot: int
    node_count: int
    dirty: bool = False


# ----------------------------------------------------------------------------- the run


class BulkSettlement:
    """One run's read, in-memory settlement and write (see the module docstring)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.company = 0
        self.plans: dict[str, PlanConfig] = {}
        self.by_wallet: dict[str, _User] = {}
        self.by_id: dict[int, _User] = {}
        self.nodes: dict[tuple[int, int], _Node | None] = {}  # None: known to be empty
        self.reserved: defaultdict[tuple[int, int], list[_Line]] = defaultdict(list)
        self.lines: list[_Line] = []
        self.flipped: list[_Line] = []  # earlier rows this run moved out of `reserved`
        self.leases: dict[int, _Lease] = {}
        self.new_leases: list[_Lease] = []
        self.payloads: dict[int, _Payload] = {}  # by nonce
        self.placements: dict[int, _Placement] = {}  # by payload id
        self.new_placements: list[_Placement] = []
        self.new_nodes: list[_Node] = []
        self.retopups: list[tuple[int, int, int, str, int]] = []
        self.pools: dict[int, _Pool] = {}
        self.deltas: defaultdict[int, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.new_users: list[_User] = []
        self.registering: list[int] = []  # the users id drawn for each registration, in order
        self.announcements: list[tuple[str, str, dict[str, Any]]] = []
        self.now: Any = None  # the transaction's now(), for the rows' timestamps
        self._balance_rows: list[int] = []  # participants whose balance row must exist
        self._line_no = 0
        self._event_lines: list[_Line] = []

    # -- SQL helpers ----------------------------------------------------------------------

    async def _rows(self, sql: str, **params: Any) -> list[Any]:
        return list((await self.session.execute(text(sql), params)).all())

    async def _ids(self, table: str, count: int) -> list[int]:
        """`count` values of `table`'s id sequence, in the order they were drawn."""
        if not count:
            return []
        rows = await self._rows(
            "SELECT nextval(pg_get_serial_sequence(:t, 'id')) AS v FROM generate_series(1, :n)",
            t=table,
            n=count,
        )
        return sorted(int(r[0]) for r in rows)

    # -- read -----------------------------------------------------------------------------

    def _keep_user(self, row: Any) -> _User:
        user = _User(
            int(row.id),
            row.wallet,
            None if row.referrer_id is None else int(row.referrer_id),
            row.status,
            bool(row.has_retopup),
            activated_block=row.activated_block,
        )
        self.by_wallet[user.wallet] = user
        self.by_id[user.id] = user
        return user

    async def _load_users(self, *, wallets: Iterable[str] = (), ids: Iterable[int] = ()) -> None:
        wallets = [w for w in set(wallets) if w not in self.by_wallet]
        ids = [i for i in set(ids) if i not in self.by_id]
        if not wallets and not ids:
            return
        found = [
            self._keep_user(row)
            for row in await self._rows(
                "SELECT id, wallet, referrer_id, status, has_retopup, activated_block FROM users "
                "WHERE wallet = ANY(:w) OR id = ANY(:i)",
                w=wallets,
                i=ids,
            )
        ]
        if found:
            for row in await self._rows(
                "SELECT user_id, effective_block, id, frozen FROM freezes WHERE user_id = ANY(:u)",
                u=[u.id for u in found],
            ):
                self.by_id[int(row.user_id)].freezes.append(
                    (int(row.effective_block), int(row.id), bool(row.frozen))
                )

    async def _user(self, user_id: int) -> _User | None:
        if user_id not in self.by_id:
            await self._load_users(ids=[user_id])
        return self.by_id.get(user_id)

    async def _load_nodes(self, level: int, slots: Iterable[int]) -> None:
        wanted = [s for s in set(slots) if (level, s) not in self.nodes]
        if not wanted:
            return
        rows = await self._rows(
            "SELECT id, slot, user_id, filled, reserved, completed FROM pool_nodes "
            "WHERE level = :l AND slot = ANY(:s) FOR UPDATE",
            l=level,
            s=wanted,
        )
        for slot in wanted:
            self.nodes[(level, slot)] = None
        holding = []
        for row in rows:
            node = _Node(
                int(row.id),
                level,
                int(row.slot),
                int(row.user_id),
                int(row.filled),
                int(row.reserved),
                bool(row.completed),
            )
            self.nodes[(level, node.slot)] = node
            if node.reserved:
                holding.append(node.slot)
        await self._load_users(ids=[n.user_id for n in self._present(level, wanted)])
        if holding:
            for row in await self._rows(
                "SELECT id, user_id, amount, earner_slot FROM rewards "
                "WHERE level = :l AND earner_slot = ANY(:s) AND status = :st",
                l=level,
                s=holding,
                st=str(RewardStatus.RESERVED),
            ):
                self.reserved[(level, int(row.earner_slot))].append(
                    _Line(int(row.id), int(row.user_id), int(row.amount), RewardStatus.RESERVED)
                )

    def _present(self, level: int, slots: Iterable[int]) -> list[_Node]:
        return [n for s in slots if (n := self.nodes.get((level, s))) is not None]

    async def _read(self, events: Sequence[SettleEvent]) -> None:
        regs = [e for e in events if e.name == "RegistrationAccepted"]
        await pool.lock_leases(self.session)
        self.company = await users.company_id(self.session)
        for plan_hash in {str(e.args["planHash"]).lower() for e in events}:
            self.plans[plan_hash] = await plan_versions.by_hash(self.session, plan_hash)
        wallets = {str(e.args["user"]) for e in events}
        wallets.update(str(e.args["referrer"]) for e in regs)
        await self._load_users(wallets=wallets)
        for row in await self._rows(
            "SELECT level, next_slot, node_count FROM pools ORDER BY level FOR UPDATE"
        ):
            self.pools[int(row.level)] = _Pool(int(row.next_slot), int(row.node_count))
        slots = [int(e.args["slot"]) for e in regs]
        for row in await self._rows(
            "SELECT id, slot, status, user_id, referrer_id, transaction_id, deadline "
            "FROM slot_leases WHERE level = 1 AND slot = ANY(:s) FOR UPDATE",
            s=slots,
        ):
            self.leases[int(row.slot)] = _Lease(
                int(row.id),
                int(row.slot),
                row.status,
                row.user_id,
                row.referrer_id,
                row.transaction_id,
                int(row.deadline),
            )
        for row in await self._rows(
            "SELECT id, nonce, status, tx_hash, block_number FROM transactions "
            "WHERE nonce = ANY(:n) FOR UPDATE",
            n=[int(e.args["nonce"]) for e in events],
        ):
            self.payloads[int(row.nonce)] = _Payload(
                int(row.id), row.status, row.tx_hash, row.block_number
            )
        for row in await self._rows(
            "SELECT id, user_id, level, slot, amount, source, status, plan_hash, "
            "transaction_id, chain_event_id FROM placements "
            "WHERE transaction_id = ANY(:t) FOR UPDATE",
            t=[p.id for p in self.payloads.values()],
        ):
            self.placements[int(row.transaction_id)] = _Placement(
                int(row.id),
                int(row.user_id),
                int(row.level),
                row.slot,
                None if row.amount is None else int(row.amount),
                row.source,
                row.status,
                row.plan_hash,
                row.transaction_id,
                row.chain_event_id,
            )
        # Each slot and its ancestors, read before any is placed.
        level_one: set[int] = set()
        for slot in slots:
            level_one.add(slot)
            level_one.update(engine.ancestor_slots(slot))
        await self._load_nodes(1, level_one)
        # Every registration draws a users id (the per-event path's INSERT … ON CONFLICT DO
        # NOTHING draws one even for a known wallet); new participants take theirs.
        self.registering = await self._ids("users", len(regs))

    # -- settle ---------------------------------------------------------------------------

    def _add(self, user_id: int, status: str, amount: int) -> None:
        self.deltas[user_id][status] += amount

    def _write_lines(
        self, event: SettleEvent, plan_hash: str, lines: Sequence[RewardLine], source: str
    ) -> int:
        """The per-event `LineWriter.write`: number, keep and count `lines`; their total."""
        total = 0
        for line in lines:
            row = _Line(
                None,
                line.recipient_id,
                line.amount,
                str(line.status),
                event.id,
                self._line_no,
                str(line.kind),
                line.level,
                line.earner_slot,
                line.generation,
                str(line.reason) if line.reason else None,
                source,
                plan_hash,
            )
            self._line_no += 1
            self.lines.append(row)
            self._event_lines.append(row)
            if row.status == RewardStatus.RESERVED and row.earner_slot is not None:
                self.reserved[(row.level or 0, row.earner_slot)].append(row)
            self._add(row.user_id, row.status, row.amount)
            total += line.amount
        return total

    def _flip_reserve(self, level: int, slot: int, to_status: str) -> int:
        """`rewards.service.flip_node_reserve` on the in-memory rows."""
        moved = 0
        for row in self.reserved.pop((level, slot), []):
            if row.status != RewardStatus.RESERVED:
                continue
            row.status = to_status
            if row.id is not None:
                self.flipped.append(row)
            self.deltas[row.user_id][RewardStatus.RESERVED] -= row.amount
            self.deltas[row.user_id][to_status] += row.amount
            moved += row.amount
        return moved

    async def _registration(self, event: SettleEvent, drawn_id: int) -> None:
        a = event.args
        slot, amount, nonce = int(a["slot"]), int(a["amount"]), int(a["nonce"])
        plan_hash = str(a["planHash"]).lower()
        plan = self.plans[plan_hash]
        block = event.block_number
        # users.activate
        referrer = self.by_wallet.get(str(a["referrer"]))
        if referrer is None or referrer.status != UserStatus.ACTIVE:
            raise InconsistentState(
                f"registration of {a['user']}: referrer {a['referrer']} unknown"
            )
        user = self.by_wallet.get(str(a["user"]))
        if user is None:
            user = _User(drawn_id, str(a["user"]), None, UserStatus.PENDING, False, new=True)
            self.by_wallet[user.wallet] = user
            self.by_id[user.id] = user
            self.new_users.append(user)
        if user.status == UserStatus.ACTIVE:
            raise InconsistentState(f"{user.wallet} registered twice")
        user.status, user.referrer_id = UserStatus.ACTIVE, referrer.id
        user.activated_block, user.activated = block, True
        self._balance_rows.append(user.id)
        # pool.confirm_lease
        lease = self.leases.get(slot)
        if lease is not None and lease.status == LeaseStatus.CONFIRMED:
            raise InconsistentState(f"level-1 slot {slot} confirmed twice")
        level_one = self.pools.get(1)
        if level_one is None:
            raise InconsistentState("level 1 has no pool: run the seed first")
        if lease is None:
            for free in range(level_one.next_slot, slot):
                hole = _Lease(None, free, LeaseStatus.FREE, None, None, None, 0)
                self.leases[free] = hole
                self.new_leases.append(hole)
            lease = _Lease(None, slot, LeaseStatus.CONFIRMED, user.id, referrer.id, None, 0)
            self.leases[slot] = lease
            self.new_leases.append(lease)
        else:
            lease.status, lease.user_id, lease.referrer_id = (
                LeaseStatus.CONFIRMED,
                user.id,
                referrer.id,
            )
            lease.dirty = True
        if slot + 1 > level_one.next_slot:
            level_one.next_slot, level_one.dirty = slot + 1, True
        # users.confirm_payload
        payload = self._confirm_payload(nonce, event)
        # engine.register, then pool.confirm_placement
        reg = engine.register(plan, self.company, referrer.at(block), amount)
        placement = self.placements.get(payload.id) if payload is not None else None
        if placement is None:
            placement = _Placement(
                None,
                user.id,
                1,
                None,
                None,
                PlacementSource.REGISTRATION,
                PlacementStatus.PENDING,
                plan_hash,
                payload.id if payload is not None else None,
                None,
            )
            self.new_placements.append(placement)
        placement.status, placement.chain_event_id = PlacementStatus.CONFIRMED, event.id
        placement.slot, placement.amount, placement.dirty = slot, reg.placement_amount, True

        self._line_no, self._event_lines = 0, []
        total = self._write_lines(event, plan_hash, reg.lines, PlacementSource.REGISTRATION)
        total_and_reinvested = await self._place_cascade(
            event, plan, plan_hash, slot, user.id, reg.placement_amount
        )
        total += total_and_reinvested[0]
        if total != amount + total_and_reinvested[1]:
            raise InconsistentState(f"lines sum {total} wei for an inflow of {amount} wei")
        self._announce(event, user.id)

    def _confirm_payload(self, nonce: int, event: SettleEvent) -> _Payload | None:
        payload = self.payloads.get(nonce)
        if payload is not None:
            payload.status = PayloadStatus.CONFIRMED
            payload.tx_hash, payload.block_number = event.tx_hash, event.block_number
            payload.dirty = True
        return payload

    async def _place_cascade(
        self,
        event: SettleEvent,
        plan: PlanConfig,
        plan_hash: str,
        slot: int,
        owner_id: int,
        amount: int,
    ) -> tuple[int, int]:
        """`registration.place_cascade` in memory: (Σ lines written, Σ reserve reinvested)."""
        total = reinvested = 0
        block = event.block_number
        queue: list[tuple[int, int, int, int, str]] = [
            (1, slot, owner_id, amount, PlacementSource.REGISTRATION)
        ]
        while queue:
            level, at, owner, value, source = queue.pop(0)
            anc_slots = engine.ancestor_slots(at)
            await self._load_nodes(level, (*anc_slots, at))
            missing = [s for s in anc_slots if self.nodes.get((level, s)) is None]
            if missing:
                raise InconsistentState(
                    f"level {level} slot {at}: ancestor slots {missing} are not placed"
                )
            if self.nodes.get((level, at)) is not None:
                raise InconsistentState(f"slot {at} at level {level} is already taken")
            ancestors = []
            for s in anc_slots:
                node = self.nodes[(level, s)]
                assert node is not None
                owner_row = await self._user(node.user_id)
                if owner_row is None:
                    raise InconsistentState(f"node L{level}/{s}: owner {node.user_id} unknown")
                ancestors.append(
                    (
                        NodeView(
                            level, s, node.user_id, node.filled, node.reserved, node.completed
                        ),
                        owner_row.at(block),
                    )
                )
            result = engine.place(plan, self.company, level, at, owner, value, ancestors)
            placed = _Node(
                None,
                level,
                at,
                owner,
                result.node.filled,
                result.node.reserved,
                result.node.completed,
            )
            self.nodes[(level, at)] = placed
            self.new_nodes.append(placed)
            tree = self.pools.get(level)
            if tree is None:
                raise InconsistentState(f"level {level} has no pool")
            tree.node_count, tree.dirty = tree.node_count + 1, True
            for view in result.ancestors:
                node = self.nodes[(level, view.slot)]
                assert node is not None
                node.filled, node.reserved, node.completed = (
                    view.filled,
                    view.reserved,
                    view.completed,
                )
                node.dirty = True
            total += self._write_lines(event, plan_hash, result.lines, source)
            for effect in result.reserve_effects:
                to_status = (
                    RewardStatus.REINVESTED
                    if effect.action == ReserveAction.REINVEST
                    else RewardStatus(effect.status)
                )
                moved = self._flip_reserve(effect.level, effect.slot, to_status)
                if moved != effect.amount:
                    raise InconsistentState(
                        f"node L{effect.level}/{effect.slot}: engine reserve {effect.amount} "
                        f"wei, ledger reserve {moved} wei"
                    )
                if effect.action == ReserveAction.REINVEST:
                    reinvested += moved
                total += self._write_lines(
                    event, plan_hash, effect.lines, PlacementSource.PROGRESSION
                )
            for prog in result.progressions:
                up = self.pools.get(prog.level)
                if up is None:
                    raise InconsistentState(f"level {prog.level} has no pool")
                taken = up.next_slot
                up.next_slot, up.dirty = taken + 1, True
                self.new_placements.append(
                    _Placement(
                        None,
                        prog.owner_id,
                        prog.level,
                        taken,
                        prog.amount,
                        PlacementSource.PROGRESSION,
                        PlacementStatus.CONFIRMED,
                        plan_hash,
                        None,
                        event.id,
                    )
                )
                queue.append(
                    (prog.level, taken, prog.owner_id, prog.amount, PlacementSource.PROGRESSION)
                )
        return total, reinvested

    async def _retopup(self, event: SettleEvent) -> None:
        a = event.args
        amount, nonce = int(a["amount"]), int(a["nonce"])
        plan_hash = str(a["planHash"]).lower()
        plan = self.plans[plan_hash]
        block = event.block_number
        user = self.by_wallet.get(str(a["user"]))
        if user is None or user.status != UserStatus.ACTIVE:
            raise InconsistentState(f"retopup by {a['user']}, who is not an active participant")
        generations: list[Participant] = []
        next_id = user.referrer_id
        while next_id is not None and len(generations) < plan.generations:
            sponsor = await self._user(next_id)
            if sponsor is None:
                break
            generations.append(sponsor.at(block))
            next_id = sponsor.referrer_id
        result = engine.retopup(plan, self.company, user.at(block), amount, generations)
        user.has_retopup, user.retopped = True, True
        self._confirm_payload(nonce, event)
        self.retopups.append((user.id, amount, nonce, plan_hash, event.id))
        self._line_no, self._event_lines = 0, []
        total = self._write_lines(event, plan_hash, result.lines, "retopup")
        if total != amount:
            raise InconsistentState(f"retopup lines sum {total} wei for {amount} wei")
        self._announce(event, None)

    def _announce(self, event: SettleEvent, registered: int | None) -> None:
        """`backend.ledger.notify.announce`, with each line's status as it is at this event's
        end (a later event of the run may flip it, as it would after the per-event commit)."""
        if self.session.info.get(PUBLISHER) is None:
            return  # a process that announces nothing (publish would drop them)
        a = event.args
        where = {"block": event.block_number, "txHash": event.tx_hash}
        if registered is not None:
            self.announcements.append(
                (user_channel(registered), "registration.confirmed", {"slot": a["slot"], **where})
            )
            self.announcements.append(
                (STAFF, "pool.placement", {"slot": a["slot"], "user": a["user"], **where})
            )
        sums: dict[int, dict[str, int]] = {}
        for row in self._event_lines:
            by_status = sums.setdefault(row.user_id, {})
            by_status[row.status] = by_status.get(row.status, 0) + row.amount
        for recipient, by_status in sorted(sums.items()):  # as `rewards.lines_of_event`
            self.announcements.append(
                (
                    user_channel(recipient),
                    "reward.created",
                    {
                        "event": event.name,
                        "byStatus": {k: str(v) for k, v in sorted(by_status.items())},
                        **where,
                    },
                )
            )

    # -- write ----------------------------------------------------------------------------

    async def _copy(
        self, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]
    ) -> None:
        if not records:
            return
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(table, records=records, columns=list(columns))

    async def _update(
        self,
        table: str,
        columns: dict[str, str],
        rows: Sequence[tuple[Any, ...]],
        *,
        key: tuple[str, str] = ("id", "bigint"),
    ) -> None:
        """Set `columns` (name -> SQL element type) of `table`'s rows in one `UPDATE … FROM
        unnest(…)`; each row is (key, *values in `columns`' order). Identifiers come from this
        module, never from input."""
        if not rows:
            return
        names = [key[0], *columns]
        types = [key[1], *columns.values()]
        sets = ", ".join(f"{c} = v.{c}" for c in columns)
        arrays = ", ".join(f"CAST(:c{i} AS {t}[])" for i, t in enumerate(types))
        await self.session.execute(
            text(
                f"UPDATE {table} t SET {sets} FROM unnest({arrays}) "  # noqa: S608
                f"AS v({', '.join(names)}) WHERE t.{key[0]} = v.{key[0]}"
            ),
            {f"c{i}": [row[i] for row in rows] for i in range(len(names))},
        )

    async def _write(self) -> None:
        s = self.session
        if self.new_users:
            await self._copy(
                "users",
                ("id", "wallet", "referrer_id", "status", "role", "is_frozen", "has_retopup",
                 "activated_block", "activated_at", "created_at"),
                [
                    (u.id, u.wallet, u.referrer_id, u.status, "user", False, u.has_retopup,
                     u.activated_block, self.now, self.now)
                    for u in self.new_users
                ],
            )  # fmt: skip
        changed = [u for u in self.by_id.values() if not u.new and (u.activated or u.retopped)]
        if changed:
            await s.execute(
                text(
                    "UPDATE users u SET status = v.status, referrer_id = v.referrer_id, "
                    "activated_block = v.activated_block, "
                    "activated_at = CASE WHEN v.activated THEN now() ELSE u.activated_at END, "
                    "has_retopup = v.has_retopup "
                    "FROM unnest(CAST(:id AS bigint[]), CAST(:status AS text[]), "
                    "CAST(:ref AS bigint[]), CAST(:block AS bigint[]), "
                    "CAST(:activated AS boolean[]), CAST(:retop AS boolean[])) "
                    "AS v(id, status, referrer_id, activated_block, activated, has_retopup) "
                    "WHERE u.id = v.id"
                ),
                {
                    "id": [u.id for u in changed],
                    "status": [u.status for u in changed],
                    "ref": [u.referrer_id for u in changed],
                    "block": [u.activated_block for u in changed],
                    "activated": [u.activated for u in changed],
                    "retop": [u.has_retopup for u in changed],
                },
            )
        await self._write_leases()
        await self._update(
            "transactions",
            {"status": "text", "tx_hash": "text", "block_number": "bigint"},
            [
                (p.id, p.status, p.tx_hash, p.block_number)
                for p in self.payloads.values()
                if p.dirty
            ],
        )
        await self._write_placements()
        await self._write_pools()
        await self._write_nodes()
        await self._write_rewards()
        await self._write_balances()

    async def _write_leases(self) -> None:
        await self._copy(
            "slot_leases",
            ("level", "slot", "user_id", "referrer_id", "transaction_id", "deadline",
             "status", "created_at"),
            [
                (1, x.slot, x.user_id, x.referrer_id, x.transaction_id, x.deadline, x.status,
                 self.now)
                for x in self.new_leases
            ],
        )  # fmt: skip
        await self._update(
            "slot_leases",
            {"status": "text", "user_id": "bigint", "referrer_id": "bigint"},
            [
                (x.id, x.status, x.user_id, x.referrer_id)
                for x in self.leases.values()
                if x.id is not None and x.dirty
            ],
        )

    async def _write_placements(self) -> None:
        await self._copy(
            "placements",
            ("user_id", "level", "slot", "amount", "source", "status", "plan_hash",
             "transaction_id", "chain_event_id", "created_at"),
            [
                (p.user_id, p.level, p.slot, p.amount, p.source, p.status, p.plan_hash,
                 p.transaction_id, p.chain_event_id, self.now)
                for p in self.new_placements
            ],
        )  # fmt: skip
        await self._update(
            "placements",
            {"status": "text", "chain_event_id": "bigint", "slot": "bigint", "amount": "numeric"},
            [
                (p.id, p.status, p.chain_event_id, p.slot, p.amount)
                for p in self.placements.values()
                if p.id is not None and p.dirty
            ],
        )

    async def _write_pools(self) -> None:
        await self._update(
            "pools",
            {"next_slot": "bigint", "node_count": "bigint"},
            [(level, p.next_slot, p.node_count) for level, p in self.pools.items() if p.dirty],
            key=("level", "int"),
        )

    async def _write_nodes(self) -> None:
        await self._copy(
            "pool_nodes",
            ("level", "slot", "user_id", "filled", "reserved", "completed", "created_at"),
            [
                (n.level, n.slot, n.user_id, n.filled, n.reserved, n.completed, self.now)
                for n in self.new_nodes
            ],
        )
        await self._update(
            "pool_nodes",
            {"filled": "int", "reserved": "numeric", "completed": "boolean"},
            [
                (n.id, n.filled, n.reserved, n.completed)
                for n in self.nodes.values()
                if n is not None and n.id is not None and n.dirty
            ],
        )

    async def _write_rewards(self) -> None:
        await self._copy(
            "rewards",
            ("chain_event_id", "line_no", "user_id", "amount", "kind", "status", "level",
             "earner_slot", "generation", "reason", "source", "plan_hash", "created_at"),
            [
                (r.chain_event_id, r.line_no, r.user_id, r.amount, r.kind, r.status, r.level,
                 r.earner_slot, r.generation, r.reason, r.source, r.plan_hash, self.now)
                for r in self.lines
            ],
        )  # fmt: skip
        await self._update("rewards", {"status": "text"}, [(r.id, r.status) for r in self.flipped])
        await self._copy(
            "retopups",
            ("user_id", "amount", "nonce", "plan_hash", "chain_event_id", "created_at"),
            [(*r, self.now) for r in self.retopups],
        )

    async def _write_balances(self) -> None:
        """Every balance delta of the run, and a zero row for each participant it activated
        (as `ensure_user` inserts one), in one upsert, in user order."""
        columns = BALANCE_COLUMNS  # identifiers from the RewardStatus enum, not input
        rows: dict[int, dict[str, int]] = {u: {} for u in self._balance_rows}
        for user_id, by_status in self.deltas.items():
            moved = {c: d for c, d in by_status.items() if d and c in columns}
            if moved:
                rows[user_id] = moved
        if not rows:
            return
        order = sorted(rows)
        sets = ", ".join(f"{c} = b.{c} + excluded.{c}" for c in columns)
        arrays = ", ".join(f"CAST(:{c} AS numeric[])" for c in columns)
        await self.session.execute(
            text(
                f"INSERT INTO user_balances AS b (user_id, {', '.join(columns)}) "  # noqa: S608
                f"SELECT * FROM unnest(CAST(:u AS bigint[]), {arrays}) "
                f"ON CONFLICT (user_id) DO UPDATE SET {sets}"
            ),
            {"u": order, **{c: [rows[u].get(c, 0) for u in order] for c in columns}},
        )

    # -- the run --------------------------------------------------------------------------

    async def run(self, events: Sequence[SettleEvent]) -> None:
        """Settle `events` (all in BULK_EVENTS, in chain order) and write them."""
        unexpected = [e.name for e in events if e.name not in BULK_EVENTS]
        if unexpected:
            raise ValueError(f"not a bulk run: {unexpected}")
        await self.session.flush()
        await self._read(events)
        drawn = iter(self.registering)
        for event in events:
            if event.name == "RegistrationAccepted":
                await self._registration(event, next(drawn))
            else:
                await self._retopup(event)
        self.now = (await self._rows("SELECT now()"))[0][0]
        await self._write()
        self.session.expire_all()
        for channel, kind, data in self.announcements:
            publish(self.session, channel, kind, data)


async def settle_run(session: AsyncSession, events: Sequence[SettleEvent]) -> None:
    """Settle a run of registrations and retopups in bulk (see the module docstring). Raises
    BulkRefused, before anything is written, if an event of it cannot be settled."""
    try:
        await BulkSettlement(session).run(events)
    except (PlanError, UnknownPlan) as exc:
        raise BulkRefused(str(exc)) from exc
