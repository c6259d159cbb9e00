"""lapsing leases: an index of live level-1 leases by deadline (the lease lock's hole search)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 18:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_slot_leases_lapsing",
        "slot_leases",
        ["deadline"],
        unique=False,
        postgresql_where=sa.text("level = 1 AND status = 'leased'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_slot_leases_lapsing",
        table_name="slot_leases",
        postgresql_where=sa.text("level = 1 AND status = 'leased'"),
    )
