"""Errors of the admin console's actions."""

from backend.core.errors import AppError


class InvalidPlan(AppError):
    status = 422
    type = "invalid-plan"
    title = "The plan document is not valid"
