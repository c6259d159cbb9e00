"""lease before signing: free slot rows have no user, payloads are stored before their signature

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 20:00:00

Registration now commits its slot lease and payload row before it asks the signer (so the
lease lock is not held across the signer call, and the signer can check the lease), and slots
passed over while their parent was unconfirmed are kept as `free` rows with no user.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("slot_leases", "user_id", existing_type=sa.BigInteger(), nullable=True)
    op.alter_column("transactions", "signature", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM slot_leases WHERE user_id IS NULL")
    # An unsigned payload can never execute: an empty signature says so in the old schema.
    op.execute("UPDATE transactions SET signature = '' WHERE signature IS NULL")
    op.alter_column("transactions", "signature", existing_type=sa.Text(), nullable=False)
    op.alter_column("slot_leases", "user_id", existing_type=sa.BigInteger(), nullable=False)
