"""api: staff role grants, freezes by block, refresh-token rotation, plan effective block, client address of payloads

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-23 20:57:04.928249
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

SPONSOR_IS_FINAL = """
CREATE FUNCTION sponsor_is_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'active' AND NEW.referrer_id IS DISTINCT FROM OLD.referrer_id THEN
        RAISE EXCEPTION 'the sponsor of active participant % is final', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$
"""

HELD_ONLY_TO_PENDING = """
CREATE FUNCTION held_only_to_pending() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'held' AND NEW.status NOT IN ('held', 'pending') THEN
        RAISE EXCEPTION 'held reward % can only return to pending (unfreeze), not %',
            OLD.id, NEW.status USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$
"""

PLAN_IN_FORCE = """
CREATE OR REPLACE FUNCTION plan_in_force() RETURNS SETOF plan_versions
LANGUAGE sql STABLE AS $$
    SELECT * FROM public.plan_versions
    WHERE effective_from <= now()
      AND (effective_block IS NULL
           OR effective_block <= (SELECT coalesce(max(last_block), -1) FROM public.blockchain_sync))
    ORDER BY version DESC
    LIMIT 1
$$
"""

PLAN_IN_FORCE_0003 = """
CREATE OR REPLACE FUNCTION plan_in_force() RETURNS SETOF plan_versions
LANGUAGE sql STABLE AS $$
    SELECT * FROM public.plan_versions WHERE effective_from <= now()
    ORDER BY version DESC LIMIT 1
$$
"""

revision: str = "0007"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "role_grants",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("granted_by", sa.String(length=42), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=42), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_grants")),
    )
    op.create_index(op.f("ix_role_grants_wallet"), "role_grants", ["wallet"], unique=False)
    op.create_table(
        "freezes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.Column("effective_block", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=256), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_freezes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_freezes")),
    )
    op.create_index(op.f("ix_freezes_user_id"), "freezes", ["user_id"], unique=False)
    op.add_column("plan_versions", sa.Column("effective_block", sa.BigInteger(), nullable=True))
    op.add_column("plan_versions", sa.Column("published_by", sa.String(length=64), nullable=True))
    op.add_column(
        "refresh_tokens", sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "refresh_tokens", sa.Column("session_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("transactions", sa.Column("client_ip", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_transactions_client_ip"), "transactions", ["client_ip"], unique=False)
    op.create_index("ix_rewards_user_id", "rewards", ["user_id", "id"], unique=False)
    # Grants (migration 0003): the API writes staff grants and admins' freezes, audited; the
    # listener reads freezes to apply each event under the ones in force at its block.
    op.execute("GRANT SELECT, INSERT, UPDATE ON role_grants TO autopool_api")
    op.execute("GRANT SELECT ON role_grants TO autopool_listener")
    op.execute("GRANT SELECT, INSERT ON freezes TO autopool_api")
    op.execute("GRANT SELECT, INSERT ON freezes TO autopool_listener")
    op.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO autopool_api, autopool_listener")
    # Freezing is an admin decision the API records; unfreezing returns held rewards to pending.
    op.execute("GRANT UPDATE (is_frozen) ON users TO autopool_api")
    op.execute("GRANT UPDATE (held) ON user_balances TO autopool_api")
    op.execute("DROP POLICY users_api_update ON users")
    op.execute(
        "CREATE POLICY users_api_update ON users FOR UPDATE TO autopool_api "
        "USING (true) WITH CHECK (true)"
    )
    op.execute("DROP POLICY rewards_api_batch ON rewards")
    op.execute(
        "CREATE POLICY rewards_api_batch ON rewards FOR UPDATE TO autopool_api "
        "USING (status IN ('pending', 'batched', 'held')) "
        "WITH CHECK (status IN ('pending', 'batched'))"
    )
    # A held reward (owed to a frozen participant) only ever becomes pending, when it is
    # unfrozen: never batched or paid straight from held, whoever asks.
    op.execute(HELD_ONLY_TO_PENDING)
    op.execute(
        "CREATE TRIGGER held_only_to_pending BEFORE UPDATE OF status ON rewards "
        "FOR EACH ROW EXECUTE FUNCTION held_only_to_pending()"
    )
    # Column grants cannot tell an active user from a pending one, so this holds for every
    # role: an active participant's sponsor is a chain fact, never rewritten.
    op.execute(SPONSOR_IS_FINAL)
    op.execute(
        "CREATE TRIGGER sponsor_is_final BEFORE UPDATE OF referrer_id ON users "
        "FOR EACH ROW EXECUTE FUNCTION sponsor_is_final()"
    )
    # The plan in force also waits for its effective block (when it names one).
    op.execute(PLAN_IN_FORCE)
    op.execute("GRANT SELECT ON blockchain_sync TO autopool_signer")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS held_only_to_pending ON rewards")
    op.execute("DROP FUNCTION IF EXISTS held_only_to_pending()")
    op.execute("DROP TRIGGER IF EXISTS sponsor_is_final ON users")
    op.execute("DROP FUNCTION IF EXISTS sponsor_is_final()")
    op.execute(PLAN_IN_FORCE_0003)
    op.execute("REVOKE SELECT ON blockchain_sync FROM autopool_signer")
    op.execute("DROP POLICY users_api_update ON users")
    op.execute(
        "CREATE POLICY users_api_update ON users FOR UPDATE TO autopool_api "
        "USING (true) WITH CHECK (status = 'pending')"
    )
    op.execute("DROP POLICY rewards_api_batch ON rewards")
    op.execute(
        "CREATE POLICY rewards_api_batch ON rewards FOR UPDATE TO autopool_api "
        "USING (status IN ('pending', 'batched')) WITH CHECK (status IN ('pending', 'batched'))"
    )
    op.execute("REVOKE UPDATE (is_frozen) ON users FROM autopool_api")
    op.execute("REVOKE UPDATE (held) ON user_balances FROM autopool_api")
    op.drop_index("ix_rewards_user_id", table_name="rewards")
    op.drop_index(op.f("ix_transactions_client_ip"), table_name="transactions")
    op.drop_column("transactions", "client_ip")
    op.drop_column("refresh_tokens", "session_expires_at")
    op.drop_column("refresh_tokens", "rotated_at")
    op.drop_column("plan_versions", "published_by")
    op.drop_column("plan_versions", "effective_block")
    op.drop_index(op.f("ix_freezes_user_id"), table_name="freezes")
    op.drop_table("freezes")
    op.drop_index(op.f("ix_role_grants_wallet"), table_name="role_grants")
    op.drop_table("role_grants")
