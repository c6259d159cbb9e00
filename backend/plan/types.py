"""Small immutable views the engine reads and the results it returns.

Views are NamedTuples: cheap to build (the engine runs in the listener's hot path and in the
million-event benchmark) and trivially comparable in tests. Every amount is int wei.
Enum values are the strings the database stores.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from backend.plan.config import ReservePolicy

__all__ = [
    "Ancestor",
    "CompanyReason",
    "Completion",
    "CompletionOutcome",
    "NodeView",
    "Participant",
    "PlacementResult",
    "Progression",
    "RegistrationResult",
    "ReleaseResult",
    "ReserveAction",
    "ReserveEffect",
    "ReservePolicy",
    "RetopupResult",
    "RewardKind",
    "RewardLine",
    "RewardStatus",
]


class RewardKind(StrEnum):
    DIRECT = "DIRECT"
    """Sponsor's share of a registration."""
    POOL_L1 = "POOL_L1"
    """Parent's share of a placement."""
    POOL_L2 = "POOL_L2"
    """Grandparent's share of a placement."""
    POOL_L3 = "POOL_L3"
    """Great-grandparent's share of a placement."""
    COMPANY = "COMPANY"
    """Company income; the line's `reason` says why."""
    LEVEL = "LEVEL"
    """A sponsor generation's share of a retopup."""
    RESERVE_EXCESS = "RESERVE_EXCESS"
    """What is left of a reserve after it funded the owner's next-level placement."""


class RewardStatus(StrEnum):
    PENDING = "pending"
    """Payable: may go into a payout batch."""
    RESERVED = "reserved"
    """Earned from the last placements of a matrix; not payable until the matrix completes."""
    HELD = "held"
    """Owed to a frozen participant; becomes pending when unfrozen."""
    REINVESTED = "reinvested"
    """A reserved row consumed to fund an auto-progression (no longer a liability: its amount
    reappears as the next level's placement lines plus the excess line)."""
    # The engine never produces the statuses below; the payout path moves rows into them.
    BATCHED = "batched"
    """In a payout batch that has not executed on chain yet."""
    CLAIMABLE = "claimable"
    """Its payout was deferred on chain (the recipient refused the transfer): the recipient
    claims it from the contract."""
    PAID = "paid"
    """Paid on chain (a `PayoutExecuted`, or a `Claimed` of a deferred payout)."""

    @classmethod
    def liabilities(cls) -> tuple[RewardStatus, ...]:
        """What the pool still owes: their sum equals the contract's balance (DESIGN §4)."""
        return (cls.PENDING, cls.HELD, cls.RESERVED, cls.BATCHED, cls.CLAIMABLE)


class CompanyReason(StrEnum):
    PLAN_SHARE = "plan_share"
    """The company's own share of a placement (`company_bps`)."""
    MISSING_SPONSOR = "missing_sponsor"
    """A registration without a sponsor: the DIRECT share goes to the company."""
    MISSING_ANCESTOR = "missing_ancestor"
    """A placement near the root: the missing ancestor's layer share goes to the company."""
    MISSING_GENERATION = "missing_generation"
    """The sponsor chain is shorter than the plan's generations."""
    INELIGIBLE_GENERATION = "ineligible_generation"
    """The generation has not retopped up (`has_retopup` is false)."""
    ROUNDING_DUST = "rounding_dust"
    """What flooring each share left over."""


class CompletionOutcome(StrEnum):
    PROGRESSED = "progressed"
    """The reserve funded a placement at the next level."""
    RELEASED = "released"
    """The reserve became payable (policy `release`, or the top level)."""
    ACCUMULATED = "accumulated"
    """The reserve stays reserved (policy `accumulate`) until an admin releases it."""


class ReserveAction(StrEnum):
    RELEASE = "release"
    """The node's reserved rows become pending (held if its owner is frozen)."""
    REINVEST = "reinvest"
    """The node's reserved rows become reinvested; they fund the next level's placement."""


class Participant(NamedTuple):
    """What the engine needs to know about a participant at the event's block."""

    id: int
    sponsor_id: int | None
    frozen: bool = False
    has_retopup: bool = False


class NodeView(NamedTuple):
    """One node of a level's tree, in breadth-first (heap) numbering: slot k's parent is
    (k-1)//2."""

    level: int
    slot: int
    owner_id: int
    filled: int = 0
    """Confirmed descendants in its 3-layer matrix, 0..14."""
    reserved: int = 0
    """Wei currently reserved for the owner from this node's matrix."""
    completed: bool = False


Ancestor = tuple[NodeView, Participant]
"""An ancestor node with its owner."""


class RewardLine(NamedTuple):
    """One reward row. Lines of one step sum exactly to that step's inflow."""

    recipient_id: int
    amount: int
    kind: RewardKind
    status: RewardStatus
    level: int | None = None
    """Tree level of a pool/company/excess line; None for DIRECT and LEVEL lines."""
    earner_slot: int | None = None
    """Slot (at `level`) of the node whose owner earns a POOL line or a RESERVE_EXCESS line.
    A node's reserved rows are the lines with (level, earner_slot, status=reserved)."""
    generation: int | None = None
    """LEVEL lines and their forfeits: sponsor generation 1..N. Missing-ancestor company lines:
    the layer 1..3 whose ancestor is missing."""
    reason: CompanyReason | None = None
    """Set on every COMPANY line, None otherwise."""


class Progression(NamedTuple):
    """An auto-progression the caller must place next: at `level`, lowest free slot."""

    owner_id: int
    level: int
    amount: int
    from_level: int
    from_slot: int


class ReserveEffect(NamedTuple):
    """What happens to the reserved rows of node (level, slot).

    RELEASE: rows become `status` (pending, or held for a frozen owner); `lines` is empty.
    REINVEST: rows become reinvested; `amount` == the progression's amount + Σ `lines`
    (the RESERVE_EXCESS line, absent when the reserve matched the price exactly).
    """

    level: int
    slot: int
    owner_id: int
    action: ReserveAction
    amount: int
    status: RewardStatus
    lines: tuple[RewardLine, ...] = ()


class Completion(NamedTuple):
    """A node's matrix became complete (happens exactly once per node)."""

    level: int
    slot: int
    owner_id: int
    reserve: int
    """The node's reserve at completion, after the completing placement's line."""
    outcome: CompletionOutcome


class RegistrationResult(NamedTuple):
    """Split of a confirmed registration: Σ lines + placement_amount == amount."""

    lines: tuple[RewardLine, ...]
    placement_amount: int


class PlacementResult(NamedTuple):
    """Outcome of placing one node.

    Σ `lines` == the placement's amount. `ancestors` are the updated ancestor views in the
    order given. For each REINVEST effect there is one `progressions` entry to place next.
    """

    lines: tuple[RewardLine, ...]
    node: NodeView
    ancestors: tuple[NodeView, ...]
    completions: tuple[Completion, ...]
    reserve_effects: tuple[ReserveEffect, ...]
    progressions: tuple[Progression, ...]


class RetopupResult(NamedTuple):
    """Split of a confirmed retopup: Σ lines == amount; the payer now has_retopup."""

    payer_id: int
    lines: tuple[RewardLine, ...]


class ReleaseResult(NamedTuple):
    """An admin release of an accumulated reserve."""

    node: NodeView
    effect: ReserveEffect
