"""Ledger rows for the signer's tests, written with plain SQL as the owner role: what the API
(payloads, leases, batches) and the listener (participants, rewards from chain events) would
have written. Rows are consistent, so the ledger invariants checked after each test hold."""

from __future__ import annotations

import itertools
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from eth_account import Account

from backend.plan.config import DEFAULT_PLAN_PATH, PlanConfig, load_plan

_counter = itertools.count(1)


def new_address() -> str:
    return str(Account.from_key(secrets.token_bytes(32)).address)


@dataclass(frozen=True)
class Participant:
    id: int
    wallet: str


class LedgerRows:
    def __init__(self, conn: asyncpg.Connection, plan: PlanConfig | None = None) -> None:
        self.conn = conn
        self.plan = plan or load_plan(DEFAULT_PLAN_PATH)
        self.plan_hash = self.plan.plan_hash_hex()
        self._published = False

    @staticmethod
    def unique() -> int:
        return next(_counter) * 1000 + secrets.randbelow(1000)

    async def publish_plan(
        self, plan: PlanConfig | None = None, *, effective_in: float = -1.0
    ) -> str:
        """Publish `plan` (default: plan v1), effective `effective_in` seconds from now."""
        plan = plan or self.plan
        await self.conn.execute(
            "INSERT INTO plan_versions (version, plan_hash, document, effective_from) "
            "VALUES ($1, $2, $3::jsonb, now() + make_interval(secs => $4)) "
            "ON CONFLICT DO NOTHING",
            plan.version,
            plan.plan_hash_hex(),
            json.dumps(plan.model_dump(mode="json")),
            effective_in,
        )
        return plan.plan_hash_hex()

    async def _ensure_plan(self) -> None:
        if not self._published:
            await self.publish_plan()
            self._published = True

    async def participant(
        self, wallet: str | None = None, *, status: str = "active", frozen: bool = False
    ) -> Participant:
        wallet = wallet or new_address()
        known = await self.conn.fetchval("SELECT id FROM users WHERE wallet = $1", wallet)
        if known is not None:
            return Participant(int(known), wallet)
        user_id = await self.conn.fetchval(
            "INSERT INTO users (wallet, status, role, is_frozen, has_retopup) "
            "VALUES ($1, $2, 'user', $3, false) RETURNING id",
            wallet,
            status,
            frozen,
        )
        await self.conn.execute(
            "INSERT INTO user_balances VALUES ($1, 0, 0, 0, 0, 0, 0, 0)", user_id
        )
        return Participant(int(user_id), wallet)

    async def activate(self, who: Participant) -> None:
        """What the listener does when `who`'s registration is final."""
        await self.conn.execute("UPDATE users SET status = 'active' WHERE id = $1", who.id)

    async def payload(
        self, kind: str, user: Participant, message: dict[str, Any], status: str = "pending"
    ) -> int:
        return int(
            await self.conn.fetchval(
                "INSERT INTO transactions (kind, user_id, nonce, amount, deadline, plan_hash, "
                "payload, status) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8) RETURNING id",
                kind,
                user.id,
                int(message["nonce"]),
                int(message["amount"]),
                int(message["deadline"]),
                message["planHash"],
                json.dumps(message),
                status,
            )
        )

    async def registration(
        self,
        *,
        user: Participant | None = None,
        referrer: Participant | None = None,
        slot: int | None = None,
        amount: int | None = None,
        deadline: int | None = None,
        nonce: int | None = None,
    ) -> dict[str, Any]:
        """A registration the API reserved: pending user, pending payload, live slot lease.
        Returns the message it would ask the signer to sign."""
        await self._ensure_plan()
        user = user or await self.participant(status="pending")
        referrer = referrer or await self.participant()
        message = {
            "user": user.wallet,
            "referrer": referrer.wallet,
            "slot": str(slot if slot is not None else self.unique()),
            "amount": str(amount if amount is not None else self.plan.entry_price),
            "planHash": self.plan_hash,
            "nonce": str(nonce or self.unique()),
            "deadline": deadline or int(time.time()) + 600,
        }
        payload_id = await self.payload("register", user, message)
        await self.conn.execute(
            "INSERT INTO slot_leases (level, slot, user_id, referrer_id, transaction_id, "
            "deadline, status) VALUES (1, $1, $2, $3, $4, $5, 'leased')",
            int(message["slot"]),
            user.id,
            referrer.id,
            payload_id,
            message["deadline"],
        )
        return message

    async def retopup(
        self,
        *,
        user: Participant | None = None,
        amount: int | None = None,
        deadline: int | None = None,
    ) -> dict[str, Any]:
        """A retopup payload the API wrote for an active participant (docs/signer.md)."""
        await self._ensure_plan()
        user = user or await self.participant()
        message = {
            "user": user.wallet,
            "amount": str(amount if amount is not None else self.plan.retopup_price),
            "planHash": self.plan_hash,
            "nonce": str(self.unique()),
            "deadline": deadline or int(time.time()) + 600,
        }
        await self.payload("retopup", user, message)
        return message

    async def rewards(self, user: Participant, amounts: list[int], *, status: str) -> list[int]:
        """Reward lines of `user` from one confirmed inflow (as the listener writes them)."""
        total = sum(amounts)
        event_id = await self.conn.fetchval(
            "INSERT INTO chain_events (chain_id, contract, block_number, block_hash, "
            "block_timestamp, tx_hash, log_index, name, args, processed_at) VALUES "
            "(31337, $1, 1, $2, 0, $3, 0, 'RegistrationAccepted', $4::jsonb, now()) RETURNING id",
            "0x" + "00" * 20,
            "0x" + secrets.token_hex(32),
            "0x" + secrets.token_hex(32),
            json.dumps({"amount": str(total)}),
        )
        ids = []
        for line_no, amount in enumerate(amounts):
            ids.append(
                await self.conn.fetchval(
                    "INSERT INTO rewards (chain_event_id, line_no, user_id, amount, kind, status, "
                    "source, plan_hash) VALUES ($1, $2, $3, $4, 'DIRECT', $5, 'registration', $6) "
                    "RETURNING id",
                    event_id,
                    line_no,
                    user.id,
                    amount,
                    status,
                    self.plan_hash,
                )
            )
        await self.conn.execute(
            f"UPDATE user_balances SET {status} = {status} + $2 WHERE user_id = $1", user.id, total
        )
        return [int(i) for i in ids]

    async def batch(
        self,
        amounts: list[int],
        *,
        recipients: list[Participant] | None = None,
        status: str = "built",
        deadline: int | None = None,
    ) -> dict[str, Any]:
        """A payout batch as `build_batch` leaves it: one line per participant, whose pending
        rewards (from a confirmed inflow) are batched under it. Returns its message."""
        recipients = recipients or [await self.participant() for _ in amounts]
        batch_id, nonce = self.unique(), self.unique()
        deadline = deadline or int(time.time()) + 600
        await self.conn.execute(
            "INSERT INTO payout_batches (id, status, total, recipient_count, nonce, deadline, "
            "attempts) VALUES ($1, $2, $3, $4, $5, $6, 0)",
            batch_id,
            status,
            sum(amounts),
            len(amounts),
            nonce,
            deadline,
        )
        for position, (who, amount) in enumerate(zip(recipients, amounts, strict=True)):
            reward_ids = await self.rewards(who, [amount], status="batched")
            await self.conn.execute(
                "UPDATE rewards SET batch_id = $1 WHERE id = ANY($2::bigint[])",
                batch_id,
                reward_ids,
            )
            await self.conn.execute(
                "INSERT INTO payout_lines (batch_id, position, user_id, recipient, amount, "
                "status) VALUES ($1, $2, $3, $4, $5, 'batched')",
                batch_id,
                position,
                who.id,
                who.wallet,
                amount,
            )
        return {
            "batchId": str(batch_id),
            "payouts": [
                {"recipient": who.wallet, "amount": str(amount)}
                for who, amount in zip(recipients, amounts, strict=True)
            ],
            "nonce": str(nonce),
            "deadline": deadline,
        }
