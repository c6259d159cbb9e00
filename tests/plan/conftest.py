"""Plans used by the engine tests: v1 and variants that exercise every branch of DESIGN §4."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.plan.config import PlanConfig, load_plan

PLANS = Path(__file__).parent / "plans"

V1 = load_plan()
PROGRESSION = load_plan(PLANS / "progression.json")
"""v1 with reserve_slots 13: a completed matrix's reserve (48.6 BNB) funds level 2 (40 BNB)."""
ACCUMULATE = load_plan(PLANS / "accumulate.json")
"""v1 with policy accumulate: the 10.8 BNB reserve stays reserved until an admin releases it."""


def variant(base: PlanConfig, **changes: Any) -> PlanConfig:
    """A validated copy of ``base`` with ``changes``."""
    return PlanConfig.model_validate({**base.model_dump(), **changes})


WEI = 10**18
# Prices and shares that do not divide evenly, so rounding dust is exercised; two levels, so
# the top-level release is reached; 14 reserve slots, so every pool line is reserved at least
# once and progressions cascade.
DUSTY = variant(
    V1,
    levels=2,
    level_prices=(7 * WEI + 3, 11 * WEI + 7),
    direct_bps=777,
    layer_bps=(4999, 2501, 1499),
    company_bps=1001,
    reserve_slots=14,
    retopup_price=13 * WEI + 1,
    level_bps=(3001, 1499, 1000, 500, 500, 500, 500, 500, 1000, 1000),
)
CASCADE = variant(V1, levels=4, level_prices=V1.level_prices[:4], reserve_slots=14, direct_bps=0)
"""Every pool line reserved: reserves of 64 BNB fund level 2 (40), which fund level 3, ..."""
ACCUMULATE_SMALL = variant(
    V1, levels=3, level_prices=V1.level_prices[:3], reserve_policy="accumulate", reserve_slots=6
)

ALL_PLANS = {
    "v1": V1,
    "progression": PROGRESSION,
    "accumulate": ACCUMULATE,
    "dusty": DUSTY,
    "cascade": CASCADE,
    "accumulate_small": ACCUMULATE_SMALL,
}


@pytest.fixture
def v1() -> PlanConfig:
    return V1
