"""Errors of the payouts domain (problem `type`s are stable: clients switch on them)."""

from backend.core.errors import AppError, Conflict, NotFound


class PayoutError(AppError):
    """Base of the payouts domain's errors."""


class BatchNotFound(PayoutError, NotFound):
    type = "batch-not-found"
    title = "Payout batch not found"


class BatchWrongState(PayoutError, Conflict):
    type = "batch-wrong-state"
    title = "The batch is not in a state that allows this"


class NothingToPay(PayoutError, Conflict):
    type = "nothing-to-pay"
    title = "No pending rewards to batch"
