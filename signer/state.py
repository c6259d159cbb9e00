"""The signer's own state in PostgreSQL (schema `signer`, migration 0003), which the API's role
cannot read or write:

- `audit_anchors`: the head of the audit log's hash chain (sequence number and hash) and the
  rate limiters' state, one row per deployment (`<chainId>:<contract>`), written with every
  burst of audit records. A trigger lets the anchor move forward only.
- `outflows`: every PayoutBatch signature (digest, batch id, total, time): the rolling 24-hour
  cap is rebuilt from here at start.
- `batch_rewards`: each reward of each batch signed, until that batch's deadline, so that a
  reward cannot be signed out in two live batches.

Anchor writes use `synchronous_commit = off`: the reply does not wait for the database's WAL
flush. A database crash can then lose the last anchor moves (at most 3 × `wal_writer_delay`,
0.6 s by default), which leaves the anchor *behind* the log: the safe direction (a log ahead of
its anchor is accepted and re-anchored). Reward reservations commit synchronously.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from signer.policy import DAY_SECONDS, _Outflow

_MOVE_ANCHOR = """
UPDATE signer.audit_anchors
SET seq = $2, hash = $3, rate_limits = $4::jsonb, updated_at = now()
WHERE deployment = $1
"""

_WRITE_ANCHOR = """
WITH added AS (
    INSERT INTO signer.outflows (deployment, digest, batch_id, amount, signed_at)
    SELECT $1, o.digest, o.batch_id, o.amount, o.signed_at
    FROM unnest($5::text[], $6::numeric[], $7::numeric[], $8::float8[])
        AS o(digest, batch_id, amount, signed_at)
    ON CONFLICT DO NOTHING
)
UPDATE signer.audit_anchors
SET seq = $2, hash = $3, rate_limits = $4::jsonb, updated_at = now()
WHERE deployment = $1
"""

_RESERVE_REWARDS = """
INSERT INTO signer.batch_rewards AS b (deployment, reward_id, batch_id, deadline)
SELECT $1, r, $3, $4 FROM unnest($2::bigint[]) AS r
ON CONFLICT (deployment, reward_id) DO UPDATE
    SET batch_id = excluded.batch_id, deadline = excluded.deadline
    WHERE b.batch_id = excluded.batch_id OR b.deadline < $5
RETURNING reward_id
"""


async def _keep_session(conn: asyncpg.Connection) -> None:
    return None


class StateUnavailable(Exception):
    """The signer's state cannot be read or written."""


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    rate_limits: dict[str, Any]


@dataclass(frozen=True)
class RewardConflict:
    reward_id: int
    batch_id: int
    deadline: int


class SignerState:
    """The signer's tables, through its own role and a small connection pool."""

    def __init__(self, dsn: str, deployment: str, *, timeout: float = 2.0) -> None:
        self.dsn = dsn
        self.deployment = deployment
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._writer: asyncpg.Connection | None = None  # anchor writes: one at a time

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=2,
            timeout=self.timeout,
            command_timeout=self.timeout,
            # No reset query on release (a round trip per request): these connections never
            # change their session state (no SET, LISTEN, advisory lock or cursor).
            reset=_keep_session,
            server_settings={
                "application_name": "autopool-signer-state",
                "synchronous_commit": "off",
            },
        )

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.terminate()
            self._writer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StateUnavailable("the signer's state store is not open")
        return self._pool

    async def anchor(self) -> Anchor | None:
        row = await self.pool.fetchrow(
            "SELECT seq, hash, rate_limits FROM signer.audit_anchors WHERE deployment = $1",
            self.deployment,
        )
        if row is None:
            return None
        return Anchor(int(row["seq"]), str(row["hash"]), json.loads(row["rate_limits"]))

    async def create_anchor(self, seq: int, digest: str) -> None:
        """The first anchor of a deployment (a concurrent first start inserts nothing)."""
        await self.pool.execute(
            "INSERT INTO signer.audit_anchors (deployment, seq, hash) VALUES ($1, $2, $3) "
            "ON CONFLICT (deployment) DO NOTHING",
            self.deployment,
            seq,
            digest,
        )

    async def outflows_since(self, since: float) -> list[tuple[float, int, bytes]]:
        rows = await self.pool.fetch(
            "SELECT signed_at, amount, digest FROM signer.outflows "
            "WHERE deployment = $1 AND signed_at > $2",
            self.deployment,
            since,
        )
        return [(float(r[0]), int(r[1]), bytes.fromhex(r[2][2:])) for r in rows]

    async def recent_outflows(self, now: float) -> list[tuple[float, int, bytes]]:
        return await self.outflows_since(now - DAY_SECONDS)

    async def write(
        self, seq: int, digest: str, rate_limits: dict[str, float], outflows: Iterable[_Outflow]
    ) -> None:
        """Move the anchor to (seq, digest) and persist the rate limiters and new outflows, in
        one statement. Raises asyncpg.CheckViolationError when the anchor would move back
        (another signer for the same deployment wrote past this one)."""
        items = list(outflows)
        try:
            if self._writer is None or self._writer.is_closed():
                self._writer = await asyncpg.connect(
                    self.dsn,
                    timeout=self.timeout,
                    server_settings={
                        "application_name": "autopool-signer-anchor",
                        "synchronous_commit": "off",
                    },
                )
            if items:
                status = await self._writer.execute(
                    _WRITE_ANCHOR,
                    self.deployment,
                    seq,
                    digest,
                    json.dumps(rate_limits),
                    ["0x" + o.digest.hex() for o in items],
                    [o.batch_id for o in items],
                    [o.amount for o in items],
                    [o.at for o in items],
                    timeout=self.timeout,
                )
            else:
                status = await self._writer.execute(
                    _MOVE_ANCHOR,
                    self.deployment,
                    seq,
                    digest,
                    json.dumps(rate_limits),
                    timeout=self.timeout,
                )
        except Exception:
            if self._writer is not None and not self._writer.is_closed():
                self._writer.terminate()
            self._writer = None
            raise
        if status != "UPDATE 1":
            raise StateUnavailable(f"no audit anchor row for {self.deployment}")

    async def reserve_rewards(
        self, reward_ids: list[int], batch_id: int, deadline: int, reusable_before: int
    ) -> list[RewardConflict]:
        """Record `reward_ids` as signed out in `batch_id` until `deadline`, unless one of them
        is in another batch whose deadline is not before `reusable_before`: then nothing is
        recorded and the conflicts are returned. Concurrent reservations of one reward are
        serialized by its row: only one batch gets it."""
        try:
            return await self._reserve(reward_ids, batch_id, deadline, reusable_before)
        except _Conflict as conflict:  # rolled back: nothing was recorded
            return conflict.conflicts

    async def _reserve(
        self, reward_ids: list[int], batch_id: int, deadline: int, reusable_before: int
    ) -> list[RewardConflict]:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = on")
            taken = await conn.fetch(
                _RESERVE_REWARDS,
                self.deployment,
                reward_ids,
                batch_id,
                deadline,
                reusable_before,
            )
            if len(taken) == len(set(reward_ids)):
                return []
            rows = await conn.fetch(
                "SELECT reward_id, batch_id, deadline FROM signer.batch_rewards "
                "WHERE deployment = $1 AND reward_id = ANY($2::bigint[]) AND batch_id <> $3 "
                "ORDER BY reward_id LIMIT 5",
                self.deployment,
                reward_ids,
                batch_id,
            )
            conflicts = [RewardConflict(int(r[0]), int(r[1]), int(r[2])) for r in rows]
            raise _Conflict(conflicts)


class _Conflict(Exception):
    def __init__(self, conflicts: list[RewardConflict]) -> None:
        super().__init__("rewards in a live batch")
        self.conflicts = conflicts
