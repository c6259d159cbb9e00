"""All tables. Import from here so Alembic and every process see the same metadata."""

from backend.models.admin import AuditLog, AuthNonce, PlanVersion, RefreshToken, RoleGrant
from backend.models.base import Base
from backend.models.chain import Anomaly, BlockchainSync, ChainEvent, PendingEvent
from backend.models.ledger import (
    LIABILITY_STATUSES,
    PayloadKind,
    PayloadStatus,
    Retopup,
    Reward,
    SurplusCredit,
    Transaction,
)
from backend.models.payouts import BatchStatus, LineStatus, PayoutBatch, PayoutLine
from backend.models.pool import (
    LeaseStatus,
    Placement,
    PlacementSource,
    PlacementStatus,
    Pool,
    PoolNode,
    SlotLease,
)
from backend.models.settlement import (
    AttemptStatus,
    ReconciliationReport,
    SenderAccount,
    TransferStatus,
    TreasuryTransfer,
    TxAttempt,
)
from backend.models.users import Freeze, User, UserBalance, UserRole, UserStatus
from backend.plan.types import RewardStatus

__all__ = [
    "LIABILITY_STATUSES",
    "Anomaly",
    "AttemptStatus",
    "AuditLog",
    "AuthNonce",
    "Base",
    "BatchStatus",
    "BlockchainSync",
    "ChainEvent",
    "Freeze",
    "LeaseStatus",
    "LineStatus",
    "PayloadKind",
    "PayloadStatus",
    "PayoutBatch",
    "PayoutLine",
    "PendingEvent",
    "Placement",
    "PlacementSource",
    "PlacementStatus",
    "PlanVersion",
    "Pool",
    "PoolNode",
    "ReconciliationReport",
    "RefreshToken",
    "Retopup",
    "Reward",
    "RewardStatus",
    "RoleGrant",
    "SenderAccount",
    "SlotLease",
    "SurplusCredit",
    "Transaction",
    "TransferStatus",
    "TreasuryTransfer",
    "TxAttempt",
    "User",
    "UserBalance",
    "UserRole",
    "UserStatus",
]
