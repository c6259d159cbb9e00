"""database roles: what the API, the listener and the signer may each read and write

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 20:30:00

Three login roles, so that one process's compromise is bounded by what its role may do
(docs/operations.md "Database roles"):

- `autopool_api` (the API and the settlement worker): reads the ledger; writes what a request
  or a payout build decides (pending users, payloads, slot leases, pending placements, payout
  batches and lines, the `pending -> batched` move of rewards, published plan versions, auth
  rows). It cannot write a chain fact: no `chain_events`, no `rewards` row, no activated user,
  no change of a user's wallet, no reward leaving `pending`/`batched`.
- `autopool_listener`: writes the ledger from final chain events (everything above, and
  the chain-derived facts).
- `autopool_signer`: reads the few ledger tables its content checks need, and writes only its
  own schema `signer` (audit anchor, rate-limit state, signed outflows, rewards reserved by the
  batches it signed). The schema and its tables belong to the migrating role, so the signer
  cannot drop the trigger that keeps its audit anchor moving forward.

Roles are cluster-wide and may already exist (another database of the cluster, another test
session): they are created only when missing, with no password (local trust authentication in
development; operators set passwords, `ALTER ROLE ... PASSWORD`). Downgrade revokes this
database's grants and drops what it created here, but leaves the roles to the cluster.

Every later migration that adds a table grants it to these roles.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("autopool_api", "autopool_listener", "autopool_signer")

LEDGER_TABLES = (
    "audit_logs",
    "auth_nonces",
    "blockchain_sync",
    "chain_events",
    "payout_batches",
    "payout_lines",
    "placements",
    "plan_versions",
    "pool_nodes",
    "pools",
    "refresh_tokens",
    "retopups",
    "rewards",
    "slot_leases",
    "transactions",
    "user_balances",
    "users",
)

# What the API role may write, beyond reading every ledger table. Column lists restrict UPDATE
# (and SELECT ... FOR UPDATE, which needs UPDATE on one column) to what the API decides.
API_WRITES = (
    "GRANT INSERT, UPDATE (referrer_id) ON users TO autopool_api",
    "GRANT INSERT, UPDATE (pending, batched) ON user_balances TO autopool_api",
    "GRANT INSERT, UPDATE (payload, signature, status) ON transactions TO autopool_api",
    "GRANT INSERT, UPDATE ON slot_leases TO autopool_api",
    "GRANT INSERT, UPDATE (status) ON placements TO autopool_api",
    "GRANT UPDATE (next_slot) ON pools TO autopool_api",
    "GRANT UPDATE (status, batch_id) ON rewards TO autopool_api",
    "GRANT INSERT, UPDATE ON payout_batches TO autopool_api",
    "GRANT INSERT ON payout_lines TO autopool_api",
    "GRANT INSERT ON plan_versions TO autopool_api",
    "GRANT INSERT, UPDATE, DELETE ON auth_nonces TO autopool_api",
    "GRANT INSERT, UPDATE ON refresh_tokens TO autopool_api",
    "GRANT INSERT ON audit_logs TO autopool_api",
)

# Row-level security where a column grant is not enough. The table owner (migrations, seed,
# development and tests) is not subject to it.
POLICIES = (
    "ALTER TABLE users ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY users_read ON users FOR SELECT "
    "TO autopool_api, autopool_listener, autopool_signer USING (true)",
    # A user the API creates is a pending, unfrozen, ordinary user: only a final registration
    # event (the listener) makes a participant.
    "CREATE POLICY users_api_insert ON users FOR INSERT TO autopool_api WITH CHECK ("
    "status = 'pending' AND role = 'user' AND NOT is_frozen AND NOT has_retopup "
    "AND activated_block IS NULL AND activated_at IS NULL)",
    # The API may lock any user (FOR UPDATE) but change only a pending user's referrer.
    "CREATE POLICY users_api_update ON users FOR UPDATE TO autopool_api "
    "USING (true) WITH CHECK (status = 'pending')",
    "CREATE POLICY users_listener_write ON users FOR ALL TO autopool_listener "
    "USING (true) WITH CHECK (true)",
    "ALTER TABLE rewards ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY rewards_read ON rewards FOR SELECT "
    "TO autopool_api, autopool_listener, autopool_signer USING (true)",
    # Building a batch moves pending rewards to batched (and back): a reward that is paid,
    # claimable, held or reserved is out of the API's reach, so it cannot be batched again.
    "CREATE POLICY rewards_api_batch ON rewards FOR UPDATE TO autopool_api "
    "USING (status IN ('pending', 'batched')) WITH CHECK (status IN ('pending', 'batched'))",
    "CREATE POLICY rewards_listener_write ON rewards FOR ALL TO autopool_listener "
    "USING (true) WITH CHECK (true)",
)

# "The plan in force" for new payloads, defined once: the highest published version whose
# effective time has come. A version published with a future `effective_from` takes over at that
# time. SETOF so that the planner can inline it into the signer's queries.
PLAN_IN_FORCE = """
CREATE FUNCTION plan_in_force() RETURNS SETOF plan_versions
LANGUAGE sql STABLE AS $$
    SELECT * FROM public.plan_versions
    WHERE effective_from <= now()
    ORDER BY version DESC
    LIMIT 1
$$
"""

SIGNER_SCHEMA = (
    "CREATE SCHEMA signer",
    # The head of each signer's audit hash chain, per deployment it signs for, and the state
    # of its rate limits. Written with every burst of audit records; a signer whose log is
    # behind its anchor refuses to start.
    """
    CREATE TABLE signer.audit_anchors (
        deployment text PRIMARY KEY,
        seq bigint NOT NULL CHECK (seq >= 0),
        hash char(64) NOT NULL,
        rate_limits jsonb NOT NULL DEFAULT '{}'::jsonb,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE FUNCTION signer.anchor_moves_forward() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.deployment <> OLD.deployment
           OR NEW.seq < OLD.seq
           OR (NEW.seq = OLD.seq AND NEW.hash <> OLD.hash) THEN
            RAISE EXCEPTION 'the audit anchor of % only moves forward (seq % -> %)',
                OLD.deployment, OLD.seq, NEW.seq
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER anchor_moves_forward BEFORE UPDATE ON signer.audit_anchors
        FOR EACH ROW EXECUTE FUNCTION signer.anchor_moves_forward()
    """,
    # Every PayoutBatch signature (its digest once): the rolling 24-hour cap is rebuilt from
    # here at start, whatever became of the audit log file.
    """
    CREATE TABLE signer.outflows (
        deployment text NOT NULL,
        digest char(66) NOT NULL,
        batch_id numeric(78, 0) NOT NULL,
        amount numeric(78, 0) NOT NULL CHECK (amount >= 0),
        signed_at double precision NOT NULL,
        PRIMARY KEY (deployment, digest)
    )
    """,
    "CREATE INDEX ix_signer_outflows_signed_at ON signer.outflows (deployment, signed_at)",
    # Each reward in a batch the signer signed, until that batch's deadline: a reward cannot
    # be signed out in two live batches.
    """
    CREATE TABLE signer.batch_rewards (
        deployment text NOT NULL,
        reward_id bigint NOT NULL,
        batch_id numeric(78, 0) NOT NULL,
        deadline bigint NOT NULL,
        PRIMARY KEY (deployment, reward_id)
    )
    """,
)

SIGNER_GRANTS = (
    "GRANT USAGE ON SCHEMA signer TO autopool_signer",
    "GRANT SELECT, INSERT, UPDATE ON signer.audit_anchors TO autopool_signer",
    "GRANT SELECT, INSERT ON signer.outflows TO autopool_signer",
    "GRANT SELECT, INSERT, UPDATE ON signer.batch_rewards TO autopool_signer",
    "GRANT SELECT ON users, transactions, slot_leases, plan_versions, payout_batches, "
    "payout_lines, rewards TO autopool_signer",
)


def _create_role(name: str) -> str:
    # Cluster-wide and shared by every database of the cluster: created once, concurrently
    # safe (two migrations racing both see "exists").
    return f"""
    DO $$
    BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN
            CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
        END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END $$
    """


def upgrade() -> None:
    for role in ROLES:
        op.execute(_create_role(role))
    tables = ", ".join(LEDGER_TABLES)
    op.execute(f"GRANT SELECT ON {tables} TO autopool_api")
    for grant in API_WRITES:
        op.execute(grant)
    op.execute("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO autopool_api, autopool_listener")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON {tables} TO autopool_listener")
    op.execute("GRANT DELETE ON auth_nonces TO autopool_listener")
    for statement in POLICIES:
        op.execute(statement)
    op.execute(PLAN_IN_FORCE)
    for statement in SIGNER_SCHEMA + SIGNER_GRANTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS signer CASCADE")
    op.execute("DROP FUNCTION IF EXISTS plan_in_force()")
    for table, policies in (
        ("users", ("users_read", "users_api_insert", "users_api_update", "users_listener_write")),
        ("rewards", ("rewards_read", "rewards_api_batch", "rewards_listener_write")),
    ):
        for policy in policies:
            op.execute(f"DROP POLICY IF EXISTS {policy} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    roles = ", ".join(ROLES)
    tables = ", ".join(LEDGER_TABLES)
    op.execute(f"REVOKE ALL ON {tables} FROM {roles}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {roles}")
