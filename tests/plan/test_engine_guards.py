"""The steps refuse views that contradict each other instead of writing a wrong ledger."""

from __future__ import annotations

import pytest

from backend.plan import engine
from backend.plan.config import bnb
from backend.plan.errors import InconsistentState, PlanError
from backend.plan.memory import MemoryPool
from backend.plan.types import NodeView, Participant

from .conftest import V1

ROOT = (NodeView(1, 0, 0), Participant(0, None))


def test_ancestor_slots_follow_heap_numbering() -> None:
    assert engine.ancestor_slots(0) == ()
    assert engine.ancestor_slots(1) == (0,)
    assert engine.ancestor_slots(6) == (2, 0)
    assert engine.ancestor_slots(22) == (10, 4, 1)
    assert engine.parent_slot(22) == 10
    with pytest.raises(PlanError):
        engine.parent_slot(0)


def test_place_refuses_bad_input() -> None:
    with pytest.raises(InconsistentState, match="slot 0"):
        engine.place(V1, 0, 1, 0, 1, bnb(18), [])
    with pytest.raises(PlanError, match="amount"):
        engine.place(V1, 0, 1, 1, 1, 0, [ROOT])
    with pytest.raises(InconsistentState, match="ancestors"):
        engine.place(V1, 0, 1, 3, 1, bnb(18), [ROOT])
    with pytest.raises(InconsistentState, match="must be slot 1"):
        engine.place(V1, 0, 1, 3, 9, bnb(18), [(NodeView(1, 2, 2), Participant(2, 0)), ROOT])
    with pytest.raises(InconsistentState, match="owner"):
        engine.place(V1, 0, 1, 1, 9, bnb(18), [(NodeView(1, 0, 0), Participant(5, None))])
    with pytest.raises(InconsistentState, match="complete"):
        engine.place(V1, 0, 1, 1, 9, bnb(18), [(NodeView(1, 0, 0, 14, 0, True), ROOT[1])])
    with pytest.raises(InconsistentState, match="level"):
        engine.place(V1, 0, 2, 1, 9, bnb(40), [ROOT])


def test_register_and_retopup_refuse_bad_input() -> None:
    with pytest.raises(PlanError):
        engine.register(V1, 0, None, 0)
    with pytest.raises(PlanError):
        engine.retopup(V1, 0, Participant(3, 2), 0, [])
    with pytest.raises(InconsistentState, match="next sponsor"):
        engine.retopup(V1, 0, Participant(3, 2), bnb(40), [Participant(1, 0)])
    with pytest.raises(InconsistentState, match="cut short"):
        engine.retopup(V1, 0, Participant(3, 2), bnb(40), [Participant(2, 1)])
    with pytest.raises(InconsistentState, match="generations"):
        engine.retopup(V1, 0, Participant(3, 2), bnb(40), [Participant(2, 1)] * 11)


def test_the_memory_driver_refuses_a_slot_twice() -> None:
    pool = MemoryPool(V1)
    slot = pool.lease(0, 5)
    pool.register(0, slot=slot)
    with pytest.raises(InconsistentState):
        pool.register(0, slot=slot)
    with pytest.raises(InconsistentState):
        pool.register(99)
