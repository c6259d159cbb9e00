"""Errors of the treasury domain (problem `type`s are stable: clients switch on them)."""

from backend.core.errors import AppError, Conflict, NotFound


class TreasuryError(AppError):
    """Base of the treasury domain's errors."""


class NotAnApprover(TreasuryError):
    status = 403
    type = "not-a-treasury-approver"
    title = "Only a configured treasury approver may do this"


class TransferNotFound(TreasuryError, NotFound):
    type = "transfer-not-found"
    title = "No such treasury transfer"


class TransferWrongState(TreasuryError, Conflict):
    type = "transfer-wrong-state"
    title = "The transfer is not awaiting approvals"


class AlreadyApproved(TreasuryError, Conflict):
    type = "transfer-already-approved"
    title = "This approver approved the transfer already"


class InsufficientCompanyBalance(TreasuryError, Conflict):
    type = "insufficient-company-balance"
    title = "The company's pending rewards do not cover the transfer"
