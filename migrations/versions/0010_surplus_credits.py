"""surplus credits: the contract's surplus credited to the company as a reward line

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 13:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "surplus_credits",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("amount", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("contract_surplus", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_surplus_credits_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surplus_credits")),
    )
    op.add_column("rewards", sa.Column("surplus_credit_id", sa.BigInteger(), nullable=True))
    op.alter_column("rewards", "chain_event_id", existing_type=sa.BigInteger(), nullable=True)
    op.create_foreign_key(
        op.f("fk_rewards_surplus_credit_id_surplus_credits"),
        "rewards",
        "surplus_credits",
        ["surplus_credit_id"],
        ["id"],
    )
    op.create_unique_constraint("uq_rewards_surplus_credit", "rewards", ["surplus_credit_id"])
    op.create_check_constraint(
        op.f("ck_rewards_one_source"),
        "rewards",
        "(chain_event_id IS NULL) <> (surplus_credit_id IS NULL)",
    )
    # The listener credits a surplus in its range transaction (the ledger's writer); the API,
    # the worker's reconciliation and the signer only read the credits.
    op.execute("GRANT SELECT, INSERT ON surplus_credits TO autopool_listener")
    op.execute("GRANT USAGE ON SEQUENCE surplus_credits_id_seq TO autopool_listener")
    op.execute("GRANT SELECT ON surplus_credits TO autopool_api, autopool_signer")


def downgrade() -> None:
    op.execute(
        "REVOKE ALL ON surplus_credits FROM autopool_api, autopool_listener, autopool_signer"
    )
    op.drop_constraint(op.f("ck_rewards_one_source"), "rewards", type_="check")
    op.drop_constraint("uq_rewards_surplus_credit", "rewards", type_="unique")
    op.drop_constraint(
        op.f("fk_rewards_surplus_credit_id_surplus_credits"), "rewards", type_="foreignkey"
    )
    op.execute("DELETE FROM rewards WHERE surplus_credit_id IS NOT NULL")
    op.alter_column("rewards", "chain_event_id", existing_type=sa.BigInteger(), nullable=False)
    op.drop_column("rewards", "surplus_credit_id")
    op.drop_table("surplus_credits")
