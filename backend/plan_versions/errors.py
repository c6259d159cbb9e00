"""Errors of the plan-versions domain."""

from backend.core.errors import Conflict


class UnknownPlan(Conflict):
    type = "unknown-plan"
    title = "Unknown plan hash"


class PlanVersionTaken(Conflict):
    type = "plan-version-taken"
    title = "That plan version or document is already published"
