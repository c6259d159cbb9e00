"""Hand-worked examples (docs/plan.md shows the same tables; numbers checked by hand here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.plan import engine
from backend.plan.config import bnb
from backend.plan.errors import PlanError
from backend.plan.memory import MemoryPool
from backend.plan.types import (
    CompanyReason,
    CompletionOutcome,
    NodeView,
    Participant,
    ReserveAction,
    RewardKind,
    RewardLine,
    RewardStatus,
)

from .conftest import ACCUMULATE, CASCADE, PROGRESSION, V1, variant
from .worked_examples import (
    chain_pool,
    earner_table,
    lines_table,
    registrations_table,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "plan.md"
PENDING, RESERVED, HELD = RewardStatus.PENDING, RewardStatus.RESERVED, RewardStatus.HELD
COMPANY = RewardKind.COMPANY


def bnbs(tenths: int) -> int:
    """Tenths of a BNB in wei (2.7 BNB == bnbs(27))."""
    return tenths * 10**17


def test_a_registration_pays_direct_and_places_the_rest() -> None:
    sponsor = Participant(7, 0)
    result = engine.register(V1, 0, sponsor, bnb(20))
    assert result.lines == (RewardLine(7, bnb(2), RewardKind.DIRECT, PENDING),)
    assert result.placement_amount == bnb(18)
    frozen = engine.register(V1, 0, sponsor._replace(frozen=True), bnb(20))
    assert frozen.lines[0].status is HELD
    orphan = engine.register(V1, 0, None, bnb(20))
    assert orphan.lines == (
        RewardLine(0, bnb(2), COMPANY, PENDING, reason=CompanyReason.MISSING_SPONSOR),
    )


def test_first_fifteen_registrations() -> None:
    pool = chain_pool(V1, 15)
    assert pool.steps is not None
    placements = [s for s in pool.steps if s.event == "placement"]
    # registration 1: parent is the company's root; no grandparent or great-grandparent
    assert placements[0].lines == (
        RewardLine(0, bnbs(90), RewardKind.POOL_L1, PENDING, 1, 0),
        RewardLine(0, bnbs(18), COMPANY, PENDING, 1, None, None, CompanyReason.PLAN_SHARE),
        RewardLine(0, bnbs(45), COMPANY, PENDING, 1, None, 2, CompanyReason.MISSING_ANCESTOR),
        RewardLine(0, bnbs(27), COMPANY, PENDING, 1, None, 3, CompanyReason.MISSING_ANCESTOR),
    )
    # registration 7 (slot 7): parent 3, grandparent 1, great-grandparent 0
    assert placements[6].lines == (
        RewardLine(3, bnbs(90), RewardKind.POOL_L1, PENDING, 1, 3),
        RewardLine(1, bnbs(45), RewardKind.POOL_L2, PENDING, 1, 1),
        RewardLine(0, bnbs(27), RewardKind.POOL_L3, PENDING, 1, 0),
        RewardLine(0, bnbs(18), COMPANY, PENDING, 1, None, None, CompanyReason.PLAN_SHARE),
    )
    # the company's matrix (slots 1..14) completes at registration 14, with nothing reserved
    completions = [c for s in placements for c in (s.result.completions if s.result else ())]
    assert [(c.level, c.slot, c.reserve, c.outcome) for c in completions] == [
        (1, 0, 0, CompletionOutcome.RELEASED)
    ]
    # totals: 15 x 20 BNB in; P1 earned 2 DIRECT + 2 x 9 + 4 x 4.5 + 2.7
    assert pool.inflow == bnb(300)
    assert pool.pending[1] == bnb(2) + bnb(18) + bnb(18) + bnbs(27)
    assert pool.liabilities() == bnb(300)


def test_a_matrix_completes_and_releases_the_last_four() -> None:
    pool = chain_pool(V1, 22)
    node = pool.node(1, 1)
    assert (node.filled, node.completed, node.reserved) == (14, True, 0)
    assert pool.steps is not None
    last = pool.steps[-1]
    assert last.result is not None
    (completion,) = last.result.completions
    assert completion == (1, 1, 1, bnbs(108), CompletionOutcome.RELEASED)
    (effect,) = last.result.reserve_effects
    assert effect == (1, 1, 1, ReserveAction.RELEASE, bnbs(108), PENDING, ())
    assert last.result.progressions == ()
    reserved = [
        x for s in pool.steps for x in s.lines if x.status is RESERVED and x.earner_slot == 1
    ]
    assert [x.amount for x in reserved] == [bnbs(27)] * 4  # from slots 19, 20, 21, 22
    # P1: DIRECT 2 + POOL 2x9 + 4x4.5 + 8x2.7 (4 of them released at completion)
    assert pool.pending[1] == bnb(2) + bnb(18) + bnb(18) + 8 * bnbs(27)


def test_an_auto_progression_is_funded_by_the_reserve() -> None:
    pool = chain_pool(PROGRESSION, 22)
    assert pool.steps is not None
    completing = pool.steps[-2]
    assert completing.result is not None
    (completion,) = completing.result.completions
    # 13 reserved lines: 9 + 4 x 4.5 + 8 x 2.7 = 48.6 BNB >= 40 BNB (price of level 2)
    assert completion == (1, 1, 1, bnbs(486), CompletionOutcome.PROGRESSED)
    (effect,) = completing.result.reserve_effects
    assert effect.action is ReserveAction.REINVEST
    assert effect.amount == bnbs(486)
    assert effect.lines == (RewardLine(1, bnbs(86), RewardKind.RESERVE_EXCESS, PENDING, 1, 1),)
    assert completing.result.progressions == ((1, 2, bnb(40), 1, 1),)
    progression = pool.steps[-1]
    assert progression.result is not None
    assert progression.result.node == NodeView(2, 1, 1, 0, 0, False)
    assert progression.lines == (
        RewardLine(0, bnb(20), RewardKind.POOL_L1, PENDING, 2, 0),
        RewardLine(0, bnb(4), COMPANY, PENDING, 2, None, None, CompanyReason.PLAN_SHARE),
        RewardLine(0, bnb(10), COMPANY, PENDING, 2, None, 2, CompanyReason.MISSING_ANCESTOR),
        RewardLine(0, bnb(6), COMPANY, PENDING, 2, None, 3, CompanyReason.MISSING_ANCESTOR),
    )
    assert pool.node(1, 1).reserved == 0
    assert pool.reinvested == bnbs(486)
    assert pool.liabilities() == pool.inflow == bnb(22 * 20)


def test_progressions_cascade_to_the_top_level_which_releases() -> None:
    pool = MemoryPool(CASCADE, record=True)
    n = 0
    while pool.levels[CASCADE.levels].completed.count(1) < 2:
        pool.register(n)
        n += 1
    assert pool.steps is not None
    outcomes = {
        (c.level, c.outcome)
        for s in pool.steps
        if s.result is not None
        for c in s.result.completions
        if c.owner_id != 0
    }
    assert (1, CompletionOutcome.PROGRESSED) in outcomes
    assert (CASCADE.levels - 1, CompletionOutcome.PROGRESSED) in outcomes
    assert (CASCADE.levels, CompletionOutcome.RELEASED) in outcomes
    # a single placement can trigger a chain: L1 completion -> L2 placement completes a matrix
    chains = [
        s
        for i, s in enumerate(pool.steps)
        if s.result is not None
        and s.result.node.level >= 2
        and s.result.progressions
        and pool.steps[i - 1].result is not None
        and pool.steps[i - 1].result.progressions  # type: ignore[union-attr]
    ]
    assert chains, "a progression placement itself completed a matrix and progressed"
    assert pool.liabilities() == pool.inflow


def test_accumulate_keeps_the_reserve_until_an_admin_releases_it() -> None:
    pool = chain_pool(ACCUMULATE, 22)
    node = pool.node(1, 1)
    assert (node.completed, node.reserved) == (True, bnbs(108))
    assert pool.steps is not None
    last = pool.steps[-1].result
    assert last is not None
    assert last.completions[0].outcome is CompletionOutcome.ACCUMULATED
    assert last.reserve_effects == ()
    before = pool.pending[1]
    pool.freeze(1)
    effect = pool.release_reserve(1, 1)
    assert effect == (1, 1, 1, ReserveAction.RELEASE, bnbs(108), HELD, ())
    assert pool.held[1] == bnbs(108) and pool.pending[1] == before
    pool.unfreeze(1)
    assert pool.pending[1] == before + bnbs(108)
    with pytest.raises(PlanError, match="no reserve"):
        pool.release_reserve(1, 1)
    with pytest.raises(PlanError, match="has not completed"):
        engine.release_reserve(ACCUMULATE, NodeView(1, 5, 5, 3, bnb(1)), Participant(5, 4))


def test_top_level_releases_even_under_accumulate() -> None:
    plan = variant(ACCUMULATE, levels=1, level_prices=ACCUMULATE.level_prices[:1])
    pool = chain_pool(plan, 22)
    assert pool.steps is not None and pool.steps[-1].result is not None
    assert pool.steps[-1].result.completions[0].outcome is CompletionOutcome.RELEASED


def test_frozen_earners_lines_are_held_but_reserve_stays_reserve() -> None:
    pool = MemoryPool(V1, record=True)
    for k in range(1, 19):
        pool.register(k - 1)
    pool.freeze(1)
    pool.freeze(9)
    pool.register(18)  # slot 19: parent 9, grandparent 4, great-grandparent 1
    assert pool.steps is not None
    lines = pool.steps[-1].lines
    assert lines[0] == RewardLine(9, bnb(9), RewardKind.POOL_L1, HELD, 1, 9)
    assert lines[2] == RewardLine(1, bnbs(27), RewardKind.POOL_L3, RESERVED, 1, 1)
    for k in range(20, 23):
        pool.register(k - 1)
    # completion while frozen: the released reserve is held
    effect = pool.steps[-1].result.reserve_effects[0]  # type: ignore[union-attr]
    assert (effect.action, effect.status, effect.amount) == (
        ReserveAction.RELEASE,
        HELD,
        bnbs(108),
    )


def test_company_income_is_never_reserved() -> None:
    pool = chain_pool(variant(V1, reserve_slots=14), 14)
    assert pool.steps is not None
    company_pool_lines = [
        x for s in pool.steps for x in s.lines if x.recipient_id == 0 and x.kind is not COMPANY
    ]
    assert company_pool_lines and all(x.status is PENDING for x in company_pool_lines)


def test_retopup_with_ineligible_generations() -> None:
    pool = chain_pool(V1, 15)
    for k in (11, 9, 5, 2):
        pool.retopup(k)
    pool.freeze(9)
    result = engine.retopup(V1, 0, pool.participant(12), V1.retopup_price, pool.generations(12))
    ineligible = CompanyReason.INELIGIBLE_GENERATION
    assert result.lines == (
        RewardLine(11, bnb(12), RewardKind.LEVEL, PENDING, None, None, 1),
        RewardLine(0, bnb(6), COMPANY, PENDING, None, None, 2, ineligible),
        RewardLine(9, bnb(4), RewardKind.LEVEL, HELD, None, None, 3),
        RewardLine(0, bnb(2), COMPANY, PENDING, None, None, 4, ineligible),
        RewardLine(0, bnb(2), COMPANY, PENDING, None, None, 5, ineligible),
        RewardLine(0, bnb(2), COMPANY, PENDING, None, None, 6, ineligible),
        RewardLine(5, bnb(2), RewardKind.LEVEL, PENDING, None, None, 7),
        RewardLine(0, bnb(2), COMPANY, PENDING, None, None, 8, ineligible),
        RewardLine(0, bnb(4), COMPANY, PENDING, None, None, 9, ineligible),
        RewardLine(2, bnb(4), RewardKind.LEVEL, PENDING, None, None, 10),
    )
    assert sum(x.amount for x in result.lines) == bnb(40)
    short = engine.retopup(V1, 0, pool.participant(3), V1.retopup_price, pool.generations(3))
    assert [x.reason for x in short.lines[3:]] == [CompanyReason.MISSING_GENERATION] * 7
    assert short.lines[0] == RewardLine(2, bnb(12), RewardKind.LEVEL, PENDING, None, None, 1)


def test_rounding_dust_goes_to_the_company_with_its_reason() -> None:
    result = engine.place(V1, 0, 1, 1, 5, 10**18 + 7, [(NodeView(1, 0, 0), Participant(0, None))])
    dust = [x for x in result.lines if x.reason is CompanyReason.ROUNDING_DUST]
    assert len(dust) == 1 and dust[0].amount > 0
    assert sum(x.amount for x in result.lines) == 10**18 + 7
    level = engine.retopup(V1, 0, Participant(5, None), 10**18 + 3, [])
    assert level.lines[-1].reason is CompanyReason.ROUNDING_DUST
    assert sum(x.amount for x in level.lines) == 10**18 + 3


def test_the_document_shows_what_the_engine_does() -> None:
    doc = DOC.read_text(encoding="utf-8")
    v1 = chain_pool(V1, 22)
    progression = chain_pool(PROGRESSION, 22)
    assert registrations_table(v1, 1, 15) in doc
    assert registrations_table(v1, 16, 22) in doc
    assert earner_table(v1, 1, 1) in doc
    assert earner_table(progression, 1, 1) in doc
    assert progression.steps is not None
    assert lines_table(progression.steps[-1].lines) in doc
    pool = chain_pool(V1, 15)
    for k in (11, 9, 5, 2):
        pool.retopup(k)
    pool.freeze(9)
    result = engine.retopup(V1, 0, pool.participant(12), V1.retopup_price, pool.generations(12))
    assert lines_table(result.lines) in doc
    assert V1.plan_hash_hex() in doc
