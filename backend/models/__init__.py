"""All tables. Import from here so Alembic and every process see the same metadata."""

from backend.models.admin import AuditLog, AuthNonce, PlanVersion, RefreshToken
from backend.models.base import Base
from backend.models.chain import BlockchainSync, ChainEvent
from backend.models.ledger import LIABILITY_STATUSES, Retopup, Reward, Transaction
from backend.models.payouts import PayoutBatch, PayoutLine
from backend.models.pool import Placement, Pool, PoolNode, SlotLease
from backend.models.users import User, UserBalance

__all__ = [
    "LIABILITY_STATUSES",
    "AuditLog",
    "AuthNonce",
    "Base",
    "BlockchainSync",
    "ChainEvent",
    "PayoutBatch",
    "PayoutLine",
    "Placement",
    "PlanVersion",
    "Pool",
    "PoolNode",
    "RefreshToken",
    "Retopup",
    "Reward",
    "SlotLease",
    "Transaction",
    "User",
    "UserBalance",
]
