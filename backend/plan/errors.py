"""Errors of the compensation-plan engine.

The engine has no HTTP dependency; callers map these onto their own problem types (the API
maps `PlanError` to 409/422, the listener treats it as a bug in the loaded state).
"""

from __future__ import annotations


class PlanError(ValueError):
    """A step was asked to do something the plan or the tree forbids."""


class InconsistentState(PlanError):
    """The views handed to a step contradict each other (wrong ancestors, a slot reused, ...)."""


class NoLeasableSlot(PlanError):
    """No level-1 slot can be leased now (every free slot's parent is still under a lease)."""
