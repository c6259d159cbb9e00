"""The rolling 24-hour outflow cap: never more than the cap in any 24 hours, and the contract's
decisions equal the documented hourly-bucket model (docs/contract.md)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contracts.conftest import ETHER, PoolHarness

HOUR = 3600
DAY = 24 * HOUR


def _at(h: PoolHarness, timestamp: int) -> None:
    h.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]


def _next_hour_start(h: PoolHarness) -> int:
    return (h.now() // HOUR + 2) * HOUR


def test_outflow_stays_counted_for_24_hours_and_rolls_off_by_25(harness: PoolHarness) -> None:
    h = harness
    fns = h.pool.functions
    h.lower_cap(10 * ETHER)
    h.register(h.users[0], 50 * ETHER)
    start = _next_hour_start(h) + 600  # ten minutes into an hour
    batch = h.batch([(h.users[1], 10 * ETHER)], deadline=start + 3 * DAY)
    _at(h, start)
    assert h.send(h.batch_fn(batch), h.sender)["status"] == 1

    late = h.batch([(h.users[1], 1)], deadline=start + 3 * DAY)
    late_sig = h.sign("PayoutBatch", late)
    # 23:59 and exactly 24:00 later: still inside the window.
    for offset in (DAY - 60, DAY):
        _at(h, start + offset)
        h.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        assert fns.availableOutflow().call() == 0
    _at(h, start + DAY + 1)
    assert h.send(h.batch_fn(late, late_sig), h.sender, gas=1_000_000)["status"] == 0
    # From the start of the 25th hour after the outflow's hour, it has left the window.
    _at(h, start - 600 + 25 * HOUR)
    h.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert fns.availableOutflow().call() == 10 * ETHER
    assert h.send(h.batch_fn(late, late_sig), h.sender)["status"] == 1


def test_outflows_in_one_hour_accumulate(harness: PoolHarness) -> None:
    h = harness
    h.lower_cap(10 * ETHER)
    h.register(h.users[0], 50 * ETHER)
    start = _next_hour_start(h)
    for i, amount in enumerate((3, 3, 4)):
        _at(h, start + 60 * i)
        h.execute([(h.users[1], amount * ETHER)], deadline=start + DAY)
    assert h.pool.functions.availableOutflow().call() == 0


def _model_allows(history: list[tuple[int, int]], now: int, amount: int, cap: int) -> bool:
    hour = now // HOUR
    used = sum(a for t, a in history if 0 <= hour - t // HOUR < 25)
    return used + amount <= cap


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=14 * HOUR), st.integers(1, 6)),
        min_size=1,
        max_size=10,
    )
)
def test_no_24_hour_window_ever_exceeds_the_cap(
    harness: PoolHarness, steps: list[tuple[int, int]]
) -> None:
    h = harness
    snapshot = h.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    try:
        cap = 10 * ETHER
        h.lower_cap(cap)
        h.register(h.users[0], 100 * ETHER)
        now = h.now() + 10
        paid: list[tuple[int, int]] = []
        for gap, units in steps:
            now += gap + 1
            amount = units * ETHER
            expected = _model_allows(paid, now, amount, cap)
            batch = h.batch([(h.users[1], amount)], deadline=now + DAY)
            fn = h.batch_fn(batch)
            _at(h, now)
            ok = h.send(fn, h.sender, gas=1_000_000)["status"] == 1
            assert ok == expected, (paid, now, amount)
            if ok:
                paid.append((now, amount))
        # The guarantee itself: every 24-hour window starting at an outflow holds <= cap.
        for start, _ in paid:
            assert sum(a for t, a in paid if start <= t <= start + DAY) <= cap
    finally:
        h.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
