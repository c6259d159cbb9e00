"""The compensation plan of DESIGN §4 as pure step functions.

No I/O: each step takes the plan, the company's participant id and small views of the state it
touches (O(1) rows), and returns reward lines plus the updated views. The caller (the listener
against Postgres, `backend.plan.memory` in memory) loads the views, stores the results and loops
on auto-progressions. Conservation holds per step and is checked by the tests:

- `register`: Σ lines + placement_amount == amount paid;
- `place`: Σ lines == the placement amount;
- a REINVEST effect: consumed reserve == progression amount + Σ effect lines;
- a RELEASE effect only changes the status of rows already counted;
- `retopup`: Σ lines == amount paid.

Tree geometry: every level is one binary tree in breadth-first (heap) numbering, the company's
node at slot 0; slot k's parent is (k-1)//2. A node's matrix is its 14 descendants in the three
layers below; a placement at slot s adds one to the matrix of each of s's (up to) three
ancestors, and pays them POOL_L1/L2/L3.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.plan.config import BPS, MATRIX_LAYERS, MATRIX_SIZE, PlanConfig, ReservePolicy
from backend.plan.errors import InconsistentState, PlanError
from backend.plan.types import (
    Ancestor,
    CompanyReason,
    Completion,
    CompletionOutcome,
    NodeView,
    Participant,
    PlacementResult,
    Progression,
    RegistrationResult,
    ReleaseResult,
    ReserveAction,
    ReserveEffect,
    RetopupResult,
    RewardKind,
    RewardLine,
    RewardStatus,
)

__all__ = [
    "ancestor_slots",
    "parent_slot",
    "place",
    "register",
    "release_reserve",
    "retopup",
    "settle_completion",
]

_POOL_KINDS = (RewardKind.POOL_L1, RewardKind.POOL_L2, RewardKind.POOL_L3)
_PENDING = RewardStatus.PENDING
_HELD = RewardStatus.HELD
_RESERVED = RewardStatus.RESERVED
_COMPANY = RewardKind.COMPANY
_PLAN_SHARE = CompanyReason.PLAN_SHARE
_MISSING_ANCESTOR = CompanyReason.MISSING_ANCESTOR
_DUST = CompanyReason.ROUNDING_DUST
_new = tuple.__new__
_NO_COMPLETIONS: tuple[Completion, ...] = ()
_NO_EFFECTS: tuple[ReserveEffect, ...] = ()
_NO_PROGRESSIONS: tuple[Progression, ...] = ()


def parent_slot(slot: int) -> int:
    """Heap numbering: slot k's parent is (k-1)//2. The root (0) has none."""
    if slot <= 0:
        raise PlanError(f"slot {slot} has no parent")
    return (slot - 1) // 2


def ancestor_slots(slot: int) -> tuple[int, ...]:
    """Slots of the parent, grandparent and great-grandparent of ``slot`` (fewer near the root):
    the only nodes whose matrix a placement at ``slot`` touches."""
    out: list[int] = []
    s = slot
    while s > 0 and len(out) < MATRIX_LAYERS:
        s = (s - 1) // 2
        out.append(s)
    return tuple(out)


def _status(participant: Participant) -> RewardStatus:
    return _HELD if participant.frozen else _PENDING


def register(
    plan: PlanConfig, company_id: int, sponsor: Participant | None, amount: int
) -> RegistrationResult:
    """Split a confirmed registration paying ``amount``: the sponsor's DIRECT line (held if the
    sponsor is frozen; the company's, with reason, if there is no sponsor) and the rest, which
    the caller places at level 1 with `place`. Σ lines + placement_amount == amount."""
    if amount <= 0:
        raise PlanError(f"registration amount must be > 0 wei, got {amount}")
    direct = amount * plan.direct_bps // BPS
    if not direct:
        return RegistrationResult((), amount)
    if sponsor is None:
        line = RewardLine(
            company_id, direct, _COMPANY, _PENDING, reason=CompanyReason.MISSING_SPONSOR
        )
    else:
        line = RewardLine(sponsor.id, direct, RewardKind.DIRECT, _status(sponsor))
    return RegistrationResult((line,), amount - direct)


def settle_completion(
    plan: PlanConfig, level: int, slot: int, owner: Participant, reserve: int
) -> tuple[NodeView, Completion, ReserveEffect | None, Progression | None]:
    """Decide what a just-completed matrix does with its reserve (DESIGN §4).

    Below the top level a reserve >= price(level+1) funds a placement at level+1 (the
    returned Progression) and the excess becomes payable; otherwise policy `release` makes the
    reserve payable and `accumulate` keeps it reserved. At the top level it is released.
    Payable means pending, or held while the owner is frozen.
    """
    if reserve > 0 and level < plan.levels:
        next_price = plan.level_prices[level]
        if reserve >= next_price:
            excess = reserve - next_price
            lines: tuple[RewardLine, ...] = ()
            if excess:
                lines = (
                    RewardLine(
                        owner.id,
                        excess,
                        RewardKind.RESERVE_EXCESS,
                        _status(owner),
                        level,
                        slot,
                    ),
                )
            return (
                NodeView(level, slot, owner.id, MATRIX_SIZE, 0, True),
                Completion(level, slot, owner.id, reserve, CompletionOutcome.PROGRESSED),
                ReserveEffect(
                    level,
                    slot,
                    owner.id,
                    ReserveAction.REINVEST,
                    reserve,
                    RewardStatus.REINVESTED,
                    lines,
                ),
                Progression(owner.id, level + 1, next_price, level, slot),
            )
        if plan.reserve_policy is ReservePolicy.ACCUMULATE:
            return (
                NodeView(level, slot, owner.id, MATRIX_SIZE, reserve, True),
                Completion(level, slot, owner.id, reserve, CompletionOutcome.ACCUMULATED),
                None,
                None,
            )
    effect = None
    if reserve > 0:
        effect = ReserveEffect(
            level, slot, owner.id, ReserveAction.RELEASE, reserve, _status(owner)
        )
    return (
        NodeView(level, slot, owner.id, MATRIX_SIZE, 0, True),
        Completion(level, slot, owner.id, reserve, CompletionOutcome.RELEASED),
        effect,
        None,
    )


def place(
    plan: PlanConfig,
    company_id: int,
    level: int,
    slot: int,
    owner_id: int,
    amount: int,
    ancestors: Sequence[Ancestor],
) -> PlacementResult:
    """Place ``owner_id``'s node at (level, slot), paid with ``amount`` wei.

    ``ancestors`` are the (node, owner) pairs of the parent, grandparent and great-grandparent
    of ``slot``, nearest first (fewer near the root). Returns the reward lines (Σ == amount:
    layered shares, the company's share, missing ancestors' shares and rounding dust to the
    company, each company line with its reason), the new node, the updated ancestors, the matrix
    completions this placement caused (a node completes exactly once, on its 14th confirmed
    descendant) with their reserve effects and auto-progressions for the caller to place next.

    A line is reserved when it is earned from the last ``plan.reserve_slots`` placements of the
    earner's matrix, unless the earner is the company; otherwise it is held for a frozen earner
    and pending for everyone else.
    """
    # Hot path (every registration, every progression): NamedTuples are built with
    # tuple.__new__, which skips their Python-level __new__ and is 3x cheaper.
    if slot <= 0:
        raise InconsistentState(f"slot {slot} cannot be placed: slot 0 is the company's root")
    if amount <= 0:
        raise PlanError(f"placement amount must be > 0 wei, got {amount}")
    depth_available = 1 if slot <= 2 else (2 if slot <= 6 else 3)
    if len(ancestors) != depth_available:
        raise InconsistentState(
            f"slot {slot} has {depth_available} ancestors in its matrices, got {len(ancestors)}"
        )
    constants = plan.constants
    split = constants.split(amount)
    reserve_from = constants.reserve_from
    lines: list[RewardLine] = []
    updated: list[NodeView] = []
    completions = _NO_COMPLETIONS
    effects = _NO_EFFECTS
    progressions = _NO_PROGRESSIONS
    s = slot
    depth = 0
    for node, owner in ancestors:
        s = (s - 1) // 2
        node_level, node_slot, node_owner, filled, reserved, completed = node
        earner = owner[0]
        if node_slot != s or node_level != level or node_owner != earner:
            raise InconsistentState(
                f"ancestor {depth + 1} of slot {slot} at level {level} must be slot {s} "
                f"with its owner, got {node!r} / {owner!r}"
            )
        filled += 1
        if filled > MATRIX_SIZE or completed:
            raise InconsistentState(f"matrix of {node!r} is already complete")
        share = split[depth]
        if share:
            if filled > reserve_from and earner != company_id:
                status = _RESERVED
                reserved += share
            elif owner[2]:  # frozen
                status = _HELD
            else:
                status = _PENDING
            lines.append(
                _new(RewardLine, (earner, share, _POOL_KINDS[depth], status, level, s, None, None))
            )
        if filled == MATRIX_SIZE:
            done, completion, effect, progression = settle_completion(
                plan, level, s, owner, reserved
            )
            updated.append(done)
            completions = (*completions, completion)
            if effect is not None:
                effects = (*effects, effect)
            if progression is not None:
                progressions = (*progressions, progression)
        else:
            updated.append(_new(NodeView, (level, s, earner, filled, reserved, False)))
        depth += 1

    company_share = split[3]
    if company_share:
        lines.append(
            _new(
                RewardLine,
                (company_id, company_share, _COMPANY, _PENDING, level, None, None, _PLAN_SHARE),
            )
        )
    while depth < MATRIX_LAYERS:
        share = split[depth]
        depth += 1
        if share:
            lines.append(
                _new(
                    RewardLine,
                    (company_id, share, _COMPANY, _PENDING, level, None, depth, _MISSING_ANCESTOR),
                )
            )
    dust = split[4]
    if dust:
        lines.append(
            _new(RewardLine, (company_id, dust, _COMPANY, _PENDING, level, None, None, _DUST))
        )
    return _new(
        PlacementResult,
        (
            tuple(lines),
            _new(NodeView, (level, slot, owner_id, 0, 0, False)),
            tuple(updated),
            completions,
            effects,
            progressions,
        ),
    )


def retopup(
    plan: PlanConfig,
    company_id: int,
    payer: Participant,
    amount: int,
    generations: Sequence[Participant],
) -> RetopupResult:
    """Split a confirmed retopup paying ``amount`` into LEVEL income.

    ``generations`` is the payer's sponsor chain, nearest first, up to ``plan.generations``
    long (shorter only where the chain ends). Generation g earns ``level_bps[g-1]`` if it has
    retopped up (held while frozen); a missing or ineligible generation's share and the rounding
    dust go to the company, each line with its reason. Σ lines == amount.
    """
    if amount <= 0:
        raise PlanError(f"retopup amount must be > 0 wei, got {amount}")
    if len(generations) > plan.generations:
        raise InconsistentState(
            f"{len(generations)} generations given, the plan has {plan.generations}"
        )
    expected = payer.sponsor_id
    for p in generations:
        if p.id != expected or p.id == payer.id:
            raise InconsistentState(f"generation {p!r} is not the next sponsor ({expected})")
        expected = p.sponsor_id
    if len(generations) < plan.generations and expected is not None:
        raise InconsistentState(f"sponsor chain cut short: sponsor {expected} is missing")
    lines: list[RewardLine] = []
    paid = 0
    n = len(generations)
    for g, bps in enumerate(plan.level_bps, 1):
        share = amount * bps // BPS
        if not share:
            continue
        paid += share
        if g > n:
            lines.append(
                RewardLine(
                    company_id,
                    share,
                    _COMPANY,
                    _PENDING,
                    None,
                    None,
                    g,
                    CompanyReason.MISSING_GENERATION,
                )
            )
            continue
        p = generations[g - 1]
        if p.has_retopup:
            lines.append(RewardLine(p.id, share, RewardKind.LEVEL, _status(p), None, None, g))
        else:
            lines.append(
                RewardLine(
                    company_id,
                    share,
                    _COMPANY,
                    _PENDING,
                    None,
                    None,
                    g,
                    CompanyReason.INELIGIBLE_GENERATION,
                )
            )
    dust = amount - paid
    if dust:
        lines.append(
            RewardLine(
                company_id,
                dust,
                _COMPANY,
                _PENDING,
                None,
                None,
                None,
                CompanyReason.ROUNDING_DUST,
            )
        )
    return RetopupResult(payer.id, tuple(lines))


def release_reserve(plan: PlanConfig, node: NodeView, owner: Participant) -> ReleaseResult:
    """Admin release of an accumulated reserve (policy `accumulate`): the node's reserved rows
    become pending (held while the owner is frozen). Only a completed node's reserve can be
    released; before completion it is still being earned."""
    if node.owner_id != owner.id:
        raise InconsistentState(f"{owner!r} does not own {node!r}")
    if not node.completed:
        raise PlanError(f"node at level {node.level} slot {node.slot} has not completed")
    if node.reserved <= 0:
        raise PlanError(f"node at level {node.level} slot {node.slot} has no reserve")
    effect = ReserveEffect(
        node.level, node.slot, owner.id, ReserveAction.RELEASE, node.reserved, _status(owner)
    )
    return ReleaseResult(node._replace(reserved=0), effect)
