"""Balance deltas accumulate: several moves of one participant in one transaction add up."""

from __future__ import annotations

from backend.rewards.service import BalanceDeltas


def test_moves_of_one_participant_add_up() -> None:
    deltas = BalanceDeltas()
    deltas.move(7, "reserved", "pending", 5)
    deltas.move(7, "reserved", "pending", 3)
    deltas.add(7, "pending", 2)
    deltas.move(8, "pending", "batched", 4)
    assert deltas.totals() == {
        7: {"reserved": -8, "pending": 10},
        8: {"pending": -4, "batched": 4},
    }
