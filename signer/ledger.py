"""The signer's content checks: a payload is signed only if it is what the ledger holds.

The signer reads the ledger through its own role (`autopool_signer`, migration 0003), which may
only SELECT the tables below, on connections that are read-only as well. It never writes the
ledger. What it checks (docs/signer.md "Ledger checks"):

- **Registration**: a pending `register` payload row with the message's nonce, for the
  message's user, with the same amount, plan hash and deadline; the user is not a participant
  yet and not frozen; the level-1 slot of the message is leased to that user, for that payload,
  until that deadline; the referrer is the lease's referrer, an active, unfrozen participant
  other than the user; the plan hash is the plan in force and the amount its entry price.
- **Retopup**: a pending `retopup` payload row with the message's nonce, user, amount, plan
  hash and deadline; the user is an active, unfrozen participant; the plan hash is the plan
  in force and the amount its retopup price.
- **PayoutBatch**: a payout batch built (or signed) with the message's id, nonce and deadline,
  whose lines are the message's payouts in order (recipient, amount); each recipient is the
  wallet of the line's participant, active and not frozen; the rewards `batched` under the
  batch for that participant sum exactly to the line, and nothing else is batched under it.
  Rewards are written only from confirmed chain events, by the listener's role: the API's role
  can move a reward between `pending` and `batched`, but cannot create one, change its owner
  or amount, or change a participant's wallet. So a batch line the API forges for an address
  that earned nothing finds no rewards, and is refused.

"The plan in force" is the database function `plan_in_force()` (migration 0003): the highest
published version whose `effective_from` has come. Its document must hash to its plan hash
(keccak-256 of the canonical JSON, as `backend.plan.config.PlanConfig.canonical_json`); the
entry price is `level_prices[0]`, the retopup price `retopup_price`.

Each check is one indexed query (a batch: three, in one read-only snapshot); concurrent
Registration checks share one query (`RegistrationReader`). When the database
does not answer, the request is refused (`ledger-unavailable`, 503): the signer fails closed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from backend.chain.typed_data import EncodedMessage, keccak256
from signer.policy import Refused

_INT64_MAX = 2**63 - 1

# Registrations are the hot path (hundreds per second): concurrent checks are answered by one
# query (`RegistrationReader`), each request a row of `q`, numbered by `i`.
_REGISTRATIONS = """
SELECT q.i, t.kind, t.status, t.amount, t.deadline, t.plan_hash, t.id AS payload_id,
       u.id AS user_id, u.wallet AS user_wallet, u.status AS user_status,
       u.is_frozen AS user_frozen,
       l.transaction_id AS lease_payload, l.user_id AS lease_user, l.status AS lease_status,
       l.deadline AS lease_deadline,
       r.id AS referrer_id, r.wallet AS referrer_wallet, r.status AS referrer_status,
       r.is_frozen AS referrer_frozen,
       (SELECT p.plan_hash FROM plan_in_force() p) AS plan_in_force
FROM unnest($1::numeric[], $2::bigint[]) WITH ORDINALITY AS q(nonce, slot, i)
JOIN transactions t ON t.nonce = q.nonce
JOIN users u ON u.id = t.user_id
LEFT JOIN slot_leases l ON l.level = 1 AND l.slot = q.slot
LEFT JOIN users r ON r.id = l.referrer_id
"""

_RETOPUP = """
SELECT t.kind, t.status, t.amount, t.deadline, t.plan_hash,
       u.wallet AS user_wallet, u.status AS user_status, u.is_frozen AS user_frozen,
       (SELECT p.plan_hash FROM plan_in_force() p) AS plan_in_force
FROM transactions t
JOIN users u ON u.id = t.user_id
WHERE t.nonce = $1
"""

_BATCH = "SELECT status, nonce, deadline FROM payout_batches WHERE id = $1"

_BATCH_LINES = """
SELECT l.position, l.recipient, l.amount, u.wallet, u.status, u.is_frozen,
       coalesce(r.total, 0) AS batched, coalesce(r.ids, '{}') AS reward_ids
FROM payout_lines l
JOIN users u ON u.id = l.user_id
LEFT JOIN LATERAL (
    SELECT sum(amount) AS total, array_agg(id) AS ids FROM rewards
    WHERE batch_id = l.batch_id AND user_id = l.user_id AND status = 'batched'
) r ON true
WHERE l.batch_id = $1
ORDER BY l.position
"""

_BATCH_REWARDS = (
    "SELECT coalesce(sum(amount), 0) FROM rewards WHERE batch_id = $1 AND status = 'batched'"
)

_PLAN_DOCUMENT = "SELECT document FROM plan_versions WHERE plan_hash = $1"


async def _keep_session(conn: asyncpg.Connection) -> None:
    return None


SIGNABLE_BATCH_STATUSES = ("built", "signed")


@dataclass(frozen=True)
class LedgerFacts:
    """What the ledger vouched for, that the signer must remember: the rewards a batch pays
    (they must not be signed out in another live batch)."""

    reward_ids: tuple[int, ...] = ()


class Ledger(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def check(self, enc: EncodedMessage, message: dict[str, Any]) -> LedgerFacts:
        """Raise Refused unless the ledger holds exactly this payload."""
        ...


@dataclass(frozen=True)
class PlanPrices:
    entry: int
    retopup: int


def plan_prices(plan_hash: str, document: Any) -> PlanPrices:
    """The prices of a published plan, after checking that its document hashes to its hash
    (a row whose document was swapped is refused, not trusted)."""
    if isinstance(document, str):
        document = json.loads(document)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if "0x" + keccak256(canonical.encode("ascii")).hex() != plan_hash.lower():
        raise Refused(
            "plan-not-in-force", f"the published document of plan {plan_hash} does not hash to it"
        )
    try:
        return PlanPrices(int(document["level_prices"][0]), int(document["retopup_price"]))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise Refused("plan-not-in-force", f"plan {plan_hash} has no prices") from exc


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


_SERVER_SETTINGS = {
    "application_name": "autopool-signer-ledger",
    "default_transaction_read_only": "on",
    # Plan each prepared check once: its plan (index lookups by key) does not depend on the
    # values, and planning the registration query costs ~2 ms, ten times its execution.
    "plan_cache_mode": "force_generic_plan",
}
_MAX_BATCH = 256


class RegistrationReader:
    """Registration rows by (nonce, slot), on dedicated connections. A request finding a
    connection idle is sent at once (no added latency); requests arriving while every connection
    is busy wait and go together in the next query, so the database's per-query cost is shared
    under load."""

    def __init__(self, dsn: str, size: int, timeout: float) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._idle: list[asyncpg.Connection | None] = [None] * size
        self._pending: list[tuple[int, int, asyncio.Future[Any]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._idle = [await self._connect() for _ in self._idle]

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        for conn in self._idle:
            if conn is not None:
                conn.terminate()
        self._idle = [None] * len(self._idle)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.dsn, timeout=self.timeout, server_settings=_SERVER_SETTINGS
        )

    async def row(self, nonce: int, slot: int) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((nonce, slot, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._pending and self._idle:
            conn = self._idle.pop()
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            task = asyncio.ensure_future(self._query(conn, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _query(
        self, conn: asyncpg.Connection | None, batch: list[tuple[int, int, asyncio.Future[Any]]]
    ) -> None:
        try:
            if conn is None or conn.is_closed():
                conn = await self._connect()
            rows = await conn.fetch(
                _REGISTRATIONS,
                [nonce for nonce, _, _ in batch],
                [slot for _, slot, _ in batch],
                timeout=self.timeout,
            )
            found = {row["i"]: row for row in rows}
            for i, (_, _, future) in enumerate(batch, start=1):
                if not future.done():
                    future.set_result(found.get(i))
        except BaseException as exc:
            if conn is not None:
                conn.terminate()  # a fresh connection next time
                conn = None
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else ConnectionError("cancelled")
                    )
            if not isinstance(exc, Exception):
                raise
        finally:
            self._idle.append(conn)
            self._dispatch()


class PostgresLedger:
    """The ledger, read through the signer's read-only role."""

    def __init__(self, dsn: str, *, pool_size: int = 4, timeout: float = 1.0) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._registrations = RegistrationReader(dsn, max(1, pool_size - 1), timeout)
        self._plans: dict[str, PlanPrices] = {}  # published plans never change

    async def open(self) -> None:
        await self._registrations.open()
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=1,
            max_size=max(1, self.pool_size // 2),
            timeout=self.timeout,
            # No reset query on release (a round trip per request): these connections never
            # change their session state (no SET, LISTEN, advisory lock or cursor).
            reset=_keep_session,
            server_settings=_SERVER_SETTINGS,
        )

    async def close(self) -> None:
        await self._registrations.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def check(self, enc: EncodedMessage, message: dict[str, Any]) -> LedgerFacts:
        if self._pool is None:
            raise Refused("ledger-unavailable", "the ledger connection is not open", 503)
        try:
            if enc.primary_type == "Registration":
                await self._registration(message)
                return LedgerFacts()
            async with self._pool.acquire(timeout=self.timeout) as conn:
                if enc.primary_type == "Retopup":
                    await self._retopup(conn, message)
                    return LedgerFacts()
                return await self._batch(conn, enc, message)
        except Refused:
            raise
        except Exception as exc:  # fail closed: whatever went wrong, nothing is signed
            raise Refused(
                "ledger-unavailable", f"the ledger did not answer ({type(exc).__name__})", 503
            ) from exc

    async def _prices(self, plan_hash: str) -> PlanPrices:
        prices = self._plans.get(plan_hash)
        if prices is None:
            assert self._pool is not None
            document = await self._pool.fetchval(_PLAN_DOCUMENT, plan_hash, timeout=self.timeout)
            if document is None:
                raise Refused("plan-not-in-force", f"plan {plan_hash} is not published")
            prices = self._plans[plan_hash] = plan_prices(plan_hash, document)
        return prices

    def _payload(self, row: Any, kind: str, m: dict[str, Any], nonce: int) -> None:
        """The payload row the API wrote for this nonce, before it asked for the signature."""
        if row is None or row["kind"] != kind:
            raise Refused("payload-unknown", f"the ledger has no {kind} payload with nonce {nonce}")
        if row["status"] != "pending":
            raise Refused("payload-not-pending", f"payload {nonce} is {row['status']}")
        for field, ours in (
            ("user", row["user_wallet"]),
            ("planHash", row["plan_hash"]),
        ):
            if not _same(m[field], ours):
                raise Refused("payload-mismatch", f"{field} {m[field]} != ledger {ours}")
        for field, value in (("amount", row["amount"]), ("deadline", row["deadline"])):
            if int(m[field]) != int(value):
                raise Refused("payload-mismatch", f"{field} {m[field]} != ledger {int(value)}")

    async def _plan(self, row: Any, m: dict[str, Any]) -> PlanPrices:
        in_force = row["plan_in_force"]
        if in_force is None or not _same(m["planHash"], in_force):
            raise Refused(
                "plan-not-in-force", f"plan {m['planHash']} is not the plan in force ({in_force})"
            )
        return await self._prices(str(in_force).lower())

    async def _registration(self, m: dict[str, Any]) -> None:
        nonce, slot = int(m["nonce"]), int(m["slot"])
        if slot > _INT64_MAX:
            raise Refused("lease-mismatch", f"slot {slot} is not leased")
        row = await self._registrations.row(nonce, slot)
        self._payload(row, "register", m, nonce)
        prices = await self._plan(row, m)
        if int(m["amount"]) != prices.entry:
            raise Refused(
                "amount-not-plan-price",
                f"amount {m['amount']} != the entry price {prices.entry} of the plan in force",
            )
        if row["user_status"] != "pending" or row["user_frozen"]:
            state = "frozen" if row["user_frozen"] else row["user_status"]
            raise Refused("user-not-eligible", f"{m['user']} cannot register: it is {state}")
        if (
            row["lease_payload"] != row["payload_id"]
            or row["lease_user"] != row["user_id"]
            or row["lease_status"] != "leased"
            or row["lease_deadline"] != int(m["deadline"])
        ):
            raise Refused(
                "lease-mismatch",
                f"level-1 slot {slot} is not leased to {m['user']} for payload {nonce} until "
                f"{m['deadline']}",
            )
        if (
            row["referrer_id"] is None
            or not _same(m["referrer"], row["referrer_wallet"])
            or _same(m["referrer"], m["user"])
            or row["referrer_id"] == row["user_id"]
        ):
            raise Refused(
                "referrer-not-eligible",
                f"{m['referrer']} is not the referrer of this lease, or is the user",
            )
        if row["referrer_status"] != "active" or row["referrer_frozen"]:
            raise Refused(
                "referrer-not-eligible",
                f"{m['referrer']} is not an active, unfrozen participant",
            )

    async def _retopup(self, conn: asyncpg.Connection, m: dict[str, Any]) -> None:
        nonce = int(m["nonce"])
        row = await conn.fetchrow(_RETOPUP, nonce, timeout=self.timeout)
        self._payload(row, "retopup", m, nonce)
        prices = await self._plan(row, m)
        if int(m["amount"]) != prices.retopup:
            raise Refused(
                "amount-not-plan-price",
                f"amount {m['amount']} != the retopup price {prices.retopup} of the plan in force",
            )
        if row["user_status"] != "active" or row["user_frozen"]:
            state = "frozen" if row["user_frozen"] else row["user_status"]
            raise Refused("user-not-eligible", f"{m['user']} cannot retop up: it is {state}")

    async def _batch(
        self, conn: asyncpg.Connection, enc: EncodedMessage, m: dict[str, Any]
    ) -> LedgerFacts:
        batch_id = int(m["batchId"])
        if batch_id > _INT64_MAX:
            raise Refused("batch-unknown", f"the ledger has no payout batch {batch_id}")
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            batch = await conn.fetchrow(_BATCH, batch_id, timeout=self.timeout)
            if batch is None or batch["status"] not in SIGNABLE_BATCH_STATUSES:
                state = "no" if batch is None else f"a {batch['status']}"
                raise Refused(
                    "batch-unknown", f"the ledger has {state} payout batch {batch_id} to sign"
                )
            for field, value in (("nonce", batch["nonce"]), ("deadline", batch["deadline"])):
                if int(m[field]) != int(value):
                    raise Refused("batch-mismatch", f"{field} {m[field]} != ledger {int(value)}")
            lines = await conn.fetch(_BATCH_LINES, batch_id, timeout=self.timeout)
            batched_total = int(await conn.fetchval(_BATCH_REWARDS, batch_id, timeout=self.timeout))
        payouts = m["payouts"]
        if len(lines) != len(payouts):
            raise Refused(
                "batch-mismatch", f"{len(payouts)} payouts != {len(lines)} lines in the ledger"
            )
        reward_ids: list[int] = []
        for i, (line, payout) in enumerate(zip(lines, payouts, strict=True)):
            if not _same(payout["recipient"], line["recipient"]) or int(payout["amount"]) != int(
                line["amount"]
            ):
                raise Refused(
                    "batch-mismatch",
                    f"payouts[{i}] ({payout['recipient']}, {payout['amount']}) != ledger line "
                    f"({line['recipient']}, {int(line['amount'])})",
                )
            if (
                not _same(payout["recipient"], line["wallet"])
                or line["status"] != "active"
                or line["is_frozen"]
            ):
                raise Refused(
                    "recipient-unknown",
                    f"payouts[{i}]: {payout['recipient']} is not the wallet of an active, "
                    "unfrozen participant of this line",
                )
            if int(line["batched"]) != int(payout["amount"]):
                raise Refused(
                    "rewards-mismatch",
                    f"payouts[{i}]: {payout['amount']} wei, but {int(line['batched'])} wei of "
                    f"its rewards are batched under batch {batch_id}",
                )
            reward_ids.extend(int(r) for r in line["reward_ids"])
        if batched_total != enc.amount:
            raise Refused(
                "rewards-mismatch",
                f"{batched_total} wei of rewards are batched under batch {batch_id}, the "
                f"payouts total {enc.amount}",
            )
        return LedgerFacts(tuple(reward_ids))
