"""Registration and participant errors (problem `type`s are stable: clients switch on them)."""

from backend.core.errors import AppError, Conflict, Unavailable


class UserError(AppError):
    status = 422


class UnknownReferrer(UserError):
    type = "unknown-referrer"
    title = "Unknown referrer"


class SelfReferral(UserError):
    type = "self-referral"
    title = "A wallet cannot refer itself"


class ReferrerNotActive(UserError):
    type = "referrer-not-active"
    title = "Referrer is not an active participant"


class ReferrerFrozen(UserError):
    status = 403
    type = "referrer-frozen"
    title = "Referrer is frozen"


class UserFrozen(UserError):
    status = 403
    type = "user-frozen"
    title = "Participant is frozen"


class AlreadyRegistered(Conflict):
    type = "already-registered"
    title = "Wallet already registered"


class RegistrationPending(Conflict):
    type = "registration-pending"
    title = "A registration for this wallet is already pending"


class SlotUnavailable(Unavailable):
    type = "slot-unavailable"
    title = "No level-1 slot can be leased yet"


class UserNotFound(AppError):
    status = 404
    type = "user-not-found"
    title = "User not found"
