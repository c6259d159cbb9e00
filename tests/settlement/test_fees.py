"""Fee policy and batch sizing by gas (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.core.settings import Settings
from backend.payouts.fees import BSC_TX_GAS_CAP, MIN_GAS_PER_PAYOUT, FeePolicy, GasModel
from backend.payouts.sender import gas_model

MODEL = GasModel(
    ceiling=15_000_000,
    base=100_000,
    line=16_000,
    new_account=25_000,
    hostile_line=48_700,
    hostile_reserve_bps=1_000,
)


def test_a_replacement_pays_at_least_twelve_and_a_half_percent_more_rounded_up() -> None:
    policy = FeePolicy(bump_bps=1_250, max_gas_price=10**12)
    assert policy.bumped(1_000_000_000, 0) == 1_125_000_000
    assert policy.bumped(7, 0) == 8  # 7.875 rounded up, never down
    assert policy.bumped(1_000, 5_000) == 5_000  # the node's price if higher


def test_no_replacement_beyond_the_cap() -> None:
    policy = FeePolicy(bump_bps=1_250, max_gas_price=1_100)
    assert policy.bumped(1_000, 0) is None
    assert policy.initial(5_000) == 1_100


def test_a_bump_below_twelve_and_a_half_percent_is_refused() -> None:
    with pytest.raises(ValueError):
        FeePolicy(bump_bps=1_000, max_gas_price=1)


def test_the_ceiling_must_stay_below_the_per_transaction_cap() -> None:
    with pytest.raises(ValueError):
        GasModel(BSC_TX_GAS_CAP, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError):
        Settings(settlement_gas_ceiling=BSC_TX_GAS_CAP)
    assert gas_model(Settings()).ceiling < BSC_TX_GAS_CAP


@given(st.lists(st.booleans(), max_size=2_000))
def test_a_batch_cut_by_the_model_fits_under_the_ceiling_with_hostile_room(
    empty: list[bool],
) -> None:
    n = MODEL.fitting(empty)
    assert MODEL.budget(empty[:n]) <= MODEL.ceiling
    if n < len(empty):
        assert MODEL.budget(empty[: n + 1]) > MODEL.ceiling


def test_hostile_room_covers_a_tenth_of_the_lines_burning_their_stipend() -> None:
    assert MODEL.hostile_room(0) == 0
    assert MODEL.hostile_room(1) == 48_700 + MIN_GAS_PER_PAYOUT
    assert MODEL.hostile_room(400) == 40 * 48_700 + MIN_GAS_PER_PAYOUT
    # 2,000 existing accounts go out in at most 5 transactions under the default ceiling.
    assert MODEL.fitting([False] * 2_000) >= 400
