"""lease functions: the level-1 lease rule, and the common registration, inside PostgreSQL

The lease lock (advisory 0x41500001) serializes every level-1 lease. Taken by the API and held
through a dozen statements until COMMIT, each a round trip through a loaded event loop, it was
held about 11 ms per registration, which capped registrations near 80/s whatever the cores. In
these functions the locked part is one statement: the lock is held for its execution and the
COMMIT after it (docs/decisions.md, "Registration inside the lease lock").

* `autopool_lease_level1(now, user, referrer, transaction, deadline)`: the lease rule of
  `backend.pool.service.lease_slot` (lowest hole whose parent is confirmed, else the lowest
  fresh slot at the high-water mark whose parent is confirmed). The caller holds the lease
  lock. Outcome 'leased' (slot, and the lapsed payload whose slot it took, if any), 'no-pool',
  or 'waiting' (every free slot waits for its parent; `first_fresh` is the high-water mark).
* `autopool_register_wallet(...)`: a registration request of a wallet that is not registered,
  not frozen and holds no lease (`backend.users.service.reserve_registration`'s common case: a
  wallet that signed in, or one never seen), under a sponsor that may sponsor and the plan the
  caller computed its amounts from: takes the lease lock, locks or creates the pending user,
  checks the client address's live unpaid leases, writes the payload row, leases the slot,
  writes the pending placement. Outcome 'general' (any other case: the caller takes the
  general path; nothing written), 'too-many-leases' (with `held`; nothing written), or
  'leased'. No slot ('no-pool', 'waiting') raises SQLSTATE AP001 (message: the outcome,
  detail: the high-water mark), which undoes the rows written: the statement can run as its
  own transaction, the lease lock then held for it alone.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 21:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Columns are written qualified; an unqualified name that is also an OUT parameter (slot,
# nonce, held, transaction_id) means the parameter (`#variable_conflict use_variable`).
# Keep in step with backend.core.db (LOCK_LEVEL1_LEASES, EIP712_NONCE_SEQ) and
# backend.pool.repository.LAPSED_CAP (the default 1000 below).
LEASE_LEVEL1 = r"""
CREATE FUNCTION autopool_lease_level1(
    p_now bigint, p_user bigint, p_referrer bigint, p_transaction bigint, p_deadline bigint,
    p_lapsed_cap integer DEFAULT 1000,
    OUT outcome text, OUT slot bigint, OUT lapsed_transaction bigint, OUT first_fresh bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    v_free bigint;
    v_lapsed bigint[];
    v_seen bigint := 0;
    v_oldest bigint;
    v_hole bigint;
    v_lease slot_leases%ROWTYPE;
    v_parent bigint;
BEGIN
    -- The lowest hole: a free slot, or a live lease whose deadline a confirmed block passed,
    -- whose parent holds a confirmed node. The free slots are walked in slot order
    -- (ix_slot_leases_level_status_slot). The lapsed leases are a prefix of
    -- ix_slot_leases_lapsing (deadline order), and usually there are none: its first entry
    -- says so. When there are, they are read through it, capped (`p_lapsed_cap`; past the
    -- cap one query that may scan every live lease decides), in a query planned for this
    -- `now` (EXECUTE): a cached generic plan would guess `deadline < $1` as a third of the
    -- table and may walk it.
    SELECT l.slot INTO v_free FROM slot_leases l
      JOIN pool_nodes p ON p.level = 1 AND p.slot = (l.slot - 1) / 2
     WHERE l.level = 1 AND l.status = 'free' ORDER BY l.slot LIMIT 1;
    -- ORDER BY ... LIMIT 1, not min(): planned while few leases were live, min() became a
    -- walk of the whole index (every live lease, each call).
    SELECT s.deadline INTO v_oldest FROM slot_leases s
     WHERE s.level = 1 AND s.status = 'leased' ORDER BY s.deadline LIMIT 1;
    IF v_oldest < p_now THEN
        EXECUTE $q$
        SELECT
          ARRAY(SELECT x.slot FROM
                  (SELECT s.slot FROM slot_leases s
                    WHERE s.level = 1 AND s.status = 'leased' AND s.deadline < $1
                    ORDER BY s.deadline LIMIT $2) x
                WHERE EXISTS (SELECT 1 FROM pool_nodes p
                               WHERE p.level = 1 AND p.slot = (x.slot - 1) / 2)),
          (SELECT count(*) FROM
             (SELECT 1 FROM slot_leases s
               WHERE s.level = 1 AND s.status = 'leased' AND s.deadline < $1
               ORDER BY s.deadline LIMIT $2 + 1) y)
        $q$ INTO v_lapsed, v_seen USING p_now, p_lapsed_cap;
    END IF;
    IF v_seen > p_lapsed_cap THEN
        EXECUTE $q$
        SELECT l.slot FROM slot_leases l
          JOIN pool_nodes p ON p.level = 1 AND p.slot = (l.slot - 1) / 2
         WHERE l.level = 1
           AND (l.status = 'free' OR (l.status = 'leased' AND l.deadline < $1))
         ORDER BY l.slot LIMIT 1
        $q$ INTO v_hole USING p_now;
    ELSE
        SELECT min(c) INTO v_hole FROM unnest(array_append(v_lapsed, v_free)) AS c;
    END IF;

    IF v_hole IS NOT NULL THEN
        SELECT * INTO v_lease FROM slot_leases l
         WHERE l.level = 1 AND l.slot = v_hole FOR UPDATE;
        UPDATE slot_leases
           SET user_id = p_user, referrer_id = p_referrer, transaction_id = p_transaction,
               deadline = p_deadline, status = 'leased'
         WHERE id = v_lease.id;
        outcome := 'leased';
        slot := v_hole;
        lapsed_transaction := CASE WHEN v_lease.status = 'leased'
                                   THEN v_lease.transaction_id END;
        RETURN;
    END IF;

    -- No hole: the lowest slot at or above the high-water mark whose parent is confirmed.
    -- Its parent is below the mark (a slot at or above it was never leased, so never
    -- confirmed); the slots passed over on the way become holes.
    SELECT p.next_slot INTO first_fresh FROM pools p WHERE p.level = 1 FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'no-pool';
        RETURN;
    END IF;
    SELECT n.slot INTO v_parent FROM pool_nodes n
     WHERE n.level = 1 AND n.slot BETWEEN (first_fresh - 1) / 2 AND first_fresh - 1
     ORDER BY n.slot LIMIT 1;
    IF v_parent IS NULL THEN
        outcome := 'waiting';
        RETURN;
    END IF;
    slot := greatest(2 * v_parent + 1, first_fresh);
    INSERT INTO slot_leases (level, slot, deadline, status)
    SELECT 1, g, 0, 'free' FROM generate_series(first_fresh, slot - 1) AS g;
    INSERT INTO slot_leases (level, slot, user_id, referrer_id, transaction_id, deadline, status)
    VALUES (1, slot, p_user, p_referrer, p_transaction, p_deadline, 'leased');
    UPDATE pools SET next_slot = slot + 1 WHERE level = 1;
    outcome := 'leased';
END
$$
"""

REGISTER_WALLET = r"""
CREATE FUNCTION autopool_register_wallet(
    p_wallet text, p_referrer_wallet text, p_client_ip text, p_max_per_ip integer,
    p_lease_seconds integer, p_plan_hash text, p_amount text, p_placement_amount text,
    OUT outcome text, OUT transaction_id bigint, OUT nonce bigint, OUT slot bigint,
    OUT deadline bigint, OUT held integer, OUT first_fresh bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    v_now bigint;
    v_sponsor users%ROWTYPE;
    v_user bigint;
    v_known users%ROWTYPE;
    v_lease record;
BEGIN
    -- Before the lease lock, what it does not order: the plan in force must be the one the
    -- amounts were computed from, the sponsor must be able to sponsor (active, not frozen,
    -- not the wallet itself), and the confirmed chain time (it only grows: read earlier, it
    -- keeps leases live a little longer and counts more of them as live, never fewer).
    IF p_plan_hash IS DISTINCT FROM (SELECT p.plan_hash FROM plan_in_force() p) THEN
        outcome := 'general';
        RETURN;
    END IF;
    SELECT * INTO v_sponsor FROM users r WHERE r.wallet = p_referrer_wallet;
    IF NOT FOUND OR p_wallet = p_referrer_wallet OR v_sponsor.status <> 'active'
       OR v_sponsor.is_frozen THEN
        outcome := 'general';
        RETURN;
    END IF;
    SELECT coalesce(max(b.last_block_timestamp), 0) INTO v_now FROM blockchain_sync b;
    -- By the later of the wall and the chain clock (backend.monitoring.service.deadline_after).
    deadline := greatest(floor(extract(epoch FROM clock_timestamp()))::bigint, v_now)
                + p_lease_seconds;

    -- The lease lock, then the wallet's row: the order of the general path and the listener.
    PERFORM pg_advisory_xact_lock(1095761921);  -- LOCK_LEVEL1_LEASES, 0x41500001
    SELECT * INTO v_known FROM users u WHERE u.wallet = p_wallet FOR UPDATE;
    -- Registered, frozen, or holding a lease (live: a retry; lapsed: to free first): the
    -- general path decides.
    IF FOUND AND (v_known.status <> 'pending' OR v_known.is_frozen OR EXISTS (
        SELECT 1 FROM slot_leases l WHERE l.user_id = v_known.id AND l.status = 'leased'
    )) THEN
        outcome := 'general';
        RETURN;
    END IF;

    IF p_client_ip IS NOT NULL THEN
        SELECT count(*) INTO held FROM
          (SELECT 1 FROM transactions t
            WHERE t.client_ip = p_client_ip AND t.kind = 'register'
              AND t.status = 'pending' AND t.deadline >= v_now
            LIMIT p_max_per_ip) x;
        IF held >= p_max_per_ip THEN
            outcome := 'too-many-leases';
            RETURN;
        END IF;
    END IF;

    -- Nothing is written before this point: a refusal above leaves the database as it was.
    IF v_known.id IS NOT NULL THEN
        v_user := v_known.id;
        UPDATE users SET referrer_id = v_sponsor.id WHERE id = v_user;
    ELSE
        INSERT INTO users (wallet, referrer_id, status, role, is_frozen, has_retopup)
        VALUES (p_wallet, v_sponsor.id, 'pending', 'user', false, false)
        ON CONFLICT (wallet) DO NOTHING
        RETURNING id INTO v_user;
        IF v_user IS NULL THEN  -- inserted meanwhile (a sign-in): the general path decides
            outcome := 'general';
            RETURN;
        END IF;
        INSERT INTO user_balances
            (user_id, pending, held, reserved, batched, claimable, paid, reinvested)
        VALUES (v_user, 0, 0, 0, 0, 0, 0, 0);
    END IF;

    nonce := nextval('eip712_nonce_seq');
    INSERT INTO transactions
        (kind, user_id, nonce, amount, deadline, plan_hash, payload, status, client_ip)
    VALUES ('register', v_user, nonce, p_amount::numeric, deadline, p_plan_hash, '{}',
            'pending', p_client_ip)
    RETURNING id INTO transaction_id;

    SELECT * INTO v_lease
      FROM autopool_lease_level1(v_now, v_user, v_sponsor.id, transaction_id, deadline);
    outcome := v_lease.outcome;
    first_fresh := v_lease.first_fresh;
    IF outcome <> 'leased' THEN
        -- No slot: undo the rows above (the statement may be its own transaction).
        RAISE EXCEPTION USING ERRCODE = 'AP001', MESSAGE = outcome,
            DETAIL = coalesce(first_fresh::text, '');
    END IF;
    slot := v_lease.slot;
    IF v_lease.lapsed_transaction IS NOT NULL THEN
        -- The slot's previous payload can never execute (a confirmed block passed its
        -- deadline): it and its placement expire.
        UPDATE transactions SET status = 'expired'
         WHERE id = v_lease.lapsed_transaction AND status = 'pending';
        UPDATE placements SET status = 'expired'
         WHERE placements.transaction_id = v_lease.lapsed_transaction AND status = 'pending';
    END IF;
    UPDATE transactions
       SET payload = jsonb_build_object(
             'user', p_wallet, 'referrer', v_sponsor.wallet, 'slot', slot::text,
             'amount', p_amount, 'planHash', p_plan_hash, 'nonce', nonce::text,
             'deadline', deadline)
     WHERE id = transaction_id;
    INSERT INTO placements
        (user_id, level, slot, amount, source, status, plan_hash, transaction_id)
    VALUES (v_user, 1, slot, p_placement_amount::numeric, 'registration', 'pending',
            p_plan_hash, transaction_id);
END
$$
"""


def upgrade() -> None:
    op.execute(LEASE_LEVEL1)
    op.execute(REGISTER_WALLET)


def downgrade() -> None:
    op.execute("DROP FUNCTION autopool_register_wallet")
    op.execute("DROP FUNCTION autopool_lease_level1")
