"""Registration and participant errors (problem `type`s are stable: clients switch on them)."""

from backend.core.errors import AppError, Conflict


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


class TooManyUnpaidLeases(AppError):
    status = 429
    type = "too-many-unpaid-leases"
    title = "Too many unpaid registrations from this address"


class NotYourData(AppError):
    status = 403
    type = "not-your-data"
    title = "A participant reads and acts on its own data only"


class UserNotFound(AppError):
    status = 404
    type = "user-not-found"
    title = "No such participant"


class NotAParticipant(AppError):
    status = 409
    type = "not-a-participant"
    title = "The wallet has no confirmed registration"


class RetopupPending(Conflict):
    type = "retopup-pending"
    title = "A retopup for this participant is already pending"
