"""Errors of the pool domain (problem `type`s are stable: clients switch on them)."""

from backend.core.errors import Conflict, Unavailable


class SlotUnavailable(Unavailable):
    """Every free level-1 slot waits for its parent to be confirmed: retry shortly."""

    type = "slot-unavailable"
    title = "No level-1 slot can be leased yet"


class SlotTaken(Conflict):
    type = "slot-taken"
    title = "The slot is confirmed or under a live lease"


class ParentEmpty(Conflict):
    type = "parent-empty"
    title = "The slot's parent holds no confirmed node"


class UnknownLevel(Conflict):
    status = 404
    type = "unknown-level"
    title = "No such level"
