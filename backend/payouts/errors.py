from backend.core.errors import AppError, Conflict, NotFound


class PayoutError(AppError):
    pass


class BatchNotFound(NotFound):
    type = "batch-not-found"
    title = "Payout batch not found"


class BatchWrongState(Conflict):
    type = "batch-wrong-state"
    title = "The batch is not in a state that allows this"


class NothingToPay(Conflict):
    type = "nothing-to-pay"
    title = "No pending rewards to batch"
