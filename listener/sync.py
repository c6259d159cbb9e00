"""Ingest final contract logs into `chain_events` and settle them, block range by range.

A range is ingested and settled in one transaction together with the cursor, so a crash at
any point leaves either all of it or none of it; the unique key per log makes re-ingesting a
range harmless. Only final blocks are read: the node's `finalized` tag (`finality="tag"`, what
BSC's fast finality serves) or `confirmations` deep (`finality="depth"`). If the block under
the cursor has been replaced (a reorg deeper than finality), the listener records the halt on
its cursor (shown by `/ready`), writes nothing more and waits for an operator.

An event the ledger did not expect is recorded as an anomaly (`backend.ledger.anomalies`) in
a savepoint of the range's transaction, and the range goes on: never a retry loop.

Fencing: each listener that takes leadership bumps the cursor's `leader_generation`; the
cursor row is locked for the range's transaction and a listener whose generation is no longer
the cursor's is refused, so one that lost its lock without knowing cannot commit.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from eth_utils import function_signature_to_4byte_selector
from prometheus_client import Counter, Gauge
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import AsyncWeb3

from backend.chain.events import EventDecoder
from backend.chain.rpc import AdaptiveRange, RpcClient, bloom_may_contain
from backend.core.db import unit_of_work
from backend.core.logging import log
from backend.ledger import anomalies, bulk, surplus
from backend.ledger.apply import apply_event
from backend.ledger.bulk import BULK_EVENTS, SettleEvent
from backend.ledger.errors import BulkRefused, UnexpectedEvent
from backend.models import BlockchainSync, ChainEvent, PendingEvent

EVENTS_SETTLED = Counter("autopool_listener_events_total", "Events settled", ["event"])
LAST_BLOCK = Gauge("autopool_listener_last_block", "Last final block ingested")
HALTED = Gauge("autopool_listener_halted", "1 while ledger writes are halted by a deep reorg")
PENDING = Gauge("autopool_listener_pending_events", "Contract logs in blocks not final yet")
# The participant each event concerns (its pending events are shown to it).
_CONCERNS = {
    "RegistrationAccepted": "user",
    "RetopupCompleted": "user",
    "PayoutExecuted": "recipient",
    "PayoutDeferred": "recipient",
    "Claimed": "account",
}
_SURPLUS_SELECTOR = "0x" + function_signature_to_4byte_selector("surplus()").hex()
LOG_RECHECKS = Counter(
    "autopool_listener_log_rechecks_total",
    "Blocks whose logsBloom named the contract but eth_getLogs over the range returned nothing",
    ["outcome"],
)
REORGS = Counter("autopool_listener_reorgs_total", "Reorgs seen", ["depth"])
BULK_FALLBACKS = Counter(
    "autopool_listener_bulk_fallbacks_total",
    "Runs the bulk path refused (an unexpected event): settled event by event instead",
)

_STORE_EVENTS = text(
    """
    INSERT INTO chain_events (chain_id, contract, block_number, block_hash, block_timestamp,
                              tx_hash, log_index, name, args)
    SELECT c, a, b, h, t, x, i, n, CAST(j AS jsonb)
    FROM unnest(CAST(:c AS bigint[]), CAST(:a AS text[]), CAST(:b AS bigint[]),
                CAST(:h AS text[]), CAST(:t AS bigint[]), CAST(:x AS text[]),
                CAST(:i AS int[]), CAST(:n AS text[]), CAST(:j AS text[]))
         WITH ORDINALITY AS v(c, a, b, h, t, x, i, n, j, o)
    ORDER BY o
    ON CONFLICT (chain_id, tx_hash, log_index) DO NOTHING
    RETURNING id, tx_hash, log_index
    """
)


async def store_events(
    session: AsyncSession, rows: list[dict[str, Any]], chunk: int = 5_000
) -> list[SettleEvent]:
    """Store decoded logs (in chain order) in `chain_events`, one statement per `chunk`;
    returns the ones not stored before, in the same order. The unique key per log makes a
    second ingest of the same range store nothing."""
    new: list[SettleEvent] = []
    for first in range(0, len(rows), chunk):
        part = rows[first : first + chunk]
        result = await session.execute(
            _STORE_EVENTS,
            {
                "c": [r["chain_id"] for r in part],
                "a": [r["contract"] for r in part],
                "b": [r["block_number"] for r in part],
                "h": [r["block_hash"] for r in part],
                "t": [r["block_timestamp"] for r in part],
                "x": [r["tx_hash"] for r in part],
                "i": [r["log_index"] for r in part],
                "n": [r["name"] for r in part],
                "j": [orjson.dumps(r["args"]).decode() for r in part],
            },
        )
        ids = {(tx, index): int(id_) for id_, tx, index in result.all()}
        for r in part:
            id_ = ids.get((r["tx_hash"], r["log_index"]))
            if id_ is not None:
                new.append(SettleEvent(id_, r["name"], r["args"], r["block_number"], r["tx_hash"]))
    return new


class DeepReorg(RuntimeError):
    """The block under the cursor is no longer canonical."""


class Halted(RuntimeError):
    """The cursor is halted (a deep reorg): nothing is written until an operator resumes."""


class LostLeadership(RuntimeError):
    """Another listener took leadership (a newer fencing generation holds the cursor)."""


class ChainSync:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        w3: AsyncWeb3[Any],
        chain_id: int,
        contract: str,
        *,
        confirmations: int = 2,
        start_block: int = 0,
        max_range: int = 2_000,
        finality: str = "depth",
        generation: int | None = None,
        rpc: RpcClient | None = None,
        bulk_min_events: int = 2,
    ) -> None:
        self.sessions = sessions
        self.w3 = w3
        self.chain_id = chain_id
        self.contract = AsyncWeb3.to_checksum_address(contract)
        self.confirmations = confirmations
        self.start_block = start_block
        self.max_range = max_range
        if finality not in ("depth", "tag"):
            raise ValueError(f"finality must be 'depth' or 'tag', not {finality!r}")
        self.finality = finality
        self.generation = generation
        # Logs come raw from the node (no web3 formatters), in adaptive spans, with failover.
        self.rpc = rpc or RpcClient([str(getattr(w3.provider, "endpoint_uri", ""))])
        self.ranges = AdaptiveRange(maximum=max_range)
        self.decoder = EventDecoder(w3, self.contract)
        self.sync_id = f"{chain_id}:{self.contract}"
        # Runs of at least this many registrations/retopups are settled in bulk (a backfill, a
        # busy block); a lone one event by event, as is any run the bulk path refuses.
        self.bulk_min_events = bulk_min_events

    async def cursor_row(self, session: AsyncSession) -> BlockchainSync:
        """The cursor row, created at `start_block - 1` if missing, locked for update."""
        await session.execute(
            insert(BlockchainSync)
            .values(
                id=self.sync_id,
                chain_id=self.chain_id,
                contract=self.contract,
                last_block=self.start_block - 1,
                last_block_timestamp=0,
            )
            .on_conflict_do_nothing()
        )
        cursor = await session.scalar(
            select(BlockchainSync).where(BlockchainSync.id == self.sync_id).with_for_update()
        )
        assert cursor is not None
        return cursor

    async def _cursor(self, session: AsyncSession) -> BlockchainSync:
        """The locked cursor, refused to a fenced-out listener and while halted."""
        cursor = await self.cursor_row(session)
        if self.generation is not None and cursor.leader_generation != self.generation:
            raise LostLeadership(
                f"cursor held by generation {cursor.leader_generation}, not {self.generation}"
            )
        if cursor.halted_reason is not None:
            raise Halted(cursor.halted_reason)
        return cursor

    async def final_block(self) -> int:
        """The newest final block: the node's `finalized` tag, or `confirmations` deep."""
        if self.finality == "tag":
            return int((await self.w3.eth.get_block("finalized"))["number"])
        return int(await self.w3.eth.block_number) - self.confirmations

    async def halt(self, reason: str) -> None:
        """Record on the cursor that ledger writes stop (its own transaction)."""
        async with unit_of_work(self.sessions) as session:
            cursor = await session.get(BlockchainSync, self.sync_id, with_for_update=True)
            if cursor is not None and cursor.halted_reason is None:
                cursor.halted_reason = reason
                cursor.halted_at = datetime.now(UTC)
        HALTED.set(1)
        REORGS.labels("deep").inc()
        log.critical("listener halted: ledger writes stop until an operator resumes", reason=reason)

    async def sync_once(self) -> int:
        """Ingest and settle every final block not yet seen, then show the logs of the blocks
        above it as pending; returns events settled."""
        settled = await self._sync_final()
        await self.refresh_pending()
        return settled

    async def refresh_pending(self) -> int:
        """Replace the pending (not final) events with the logs of the blocks above the cursor
        as the chain has them now: a reorg in that window drops the replaced blocks' logs."""
        head = int(await self.w3.eth.block_number)
        async with unit_of_work(self.sessions) as session:
            cursor = await self._cursor(session)
            start = max(cursor.last_block + 1, 0)
            rows = []
            if start <= head:
                logs = await self.w3.eth.get_logs(
                    {"address": self.contract, "fromBlock": start, "toBlock": head}
                )
                for entry in logs:
                    decoded = self.decoder.decode(entry)
                    if decoded is None:
                        continue
                    name, args = decoded
                    who = args.get(_CONCERNS.get(name, ""))
                    rows.append(
                        {
                            "chain_id": self.chain_id,
                            "block_number": int(entry["blockNumber"]),
                            "block_hash": entry["blockHash"].to_0x_hex(),
                            "tx_hash": entry["transactionHash"].to_0x_hex(),
                            "log_index": int(entry["logIndex"]),
                            "name": name,
                            "wallet": who,
                            "amount": int(args["amount"]) if "amount" in args else None,
                            "args": args,
                        }
                    )
            await session.execute(
                delete(PendingEvent).where(PendingEvent.chain_id == self.chain_id)
            )
            if rows:
                await session.execute(insert(PendingEvent), rows)
        PENDING.set(len(rows))
        return len(rows)

    async def _sync_final(self) -> int:
        settled = 0
        while True:
            confirmed = await self.final_block()
            reorged: str | None = None
            async with unit_of_work(self.sessions) as session:
                cursor = await self._cursor(session)
                if cursor.last_block >= confirmed:
                    return settled
                if cursor.last_block_hash is not None and cursor.last_block >= 0:
                    block = await self.w3.eth.get_block(cursor.last_block)
                    if block["hash"].to_0x_hex() != cursor.last_block_hash:
                        reorged = (
                            f"block {cursor.last_block} changed under the cursor "
                            f"({cursor.last_block_hash} is now {block['hash'].to_0x_hex()}): "
                            "a reorg deeper than finality; investigate, then "
                            "`autopool listener resume`"
                        )
                if reorged is None:
                    start = cursor.last_block + 1
                    end = min(confirmed, start + self.max_range - 1)
                    count, tip = await self._ingest(session, start, end)
                    settled += count
                    await surplus.credit_new(session, await self._surplus_at(end), start, end)
                    cursor.last_block, cursor.last_block_hash = end, tip["hash"]
                    cursor.last_block_timestamp = int(tip["timestamp"], 16)
                    cursor.updated_at = datetime.now(UTC)
            if reorged is not None:
                await self.halt(reorged)
                raise DeepReorg(reorged)
            LAST_BLOCK.set(end)

    async def _surplus_at(self, block: int) -> int:
        """The contract's `surplus()` at `block` (0 before its deployment)."""
        result = await self.rpc.call(
            "eth_call", [{"to": self.contract, "data": _SURPLUS_SELECTOR}, hex(block)]
        )
        return int(result, 16) if result not in (None, "0x") else 0

    async def _complete_logs(
        self, start: int, end: int
    ) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
        """Every log of the contract in [start, end]. `eth_getLogs` over a range is not trusted
        to be complete: a block whose `logsBloom` says the contract may have logged, but of
        which the range returned nothing, is asked again by hash (of every RPC URL) before the
        cursor moves past it. Returns the logs and each block's header (raw JSON-RPC)."""
        raw_logs, range_headers = await asyncio.gather(
            self.rpc.logs_in_ranges(self.contract, start, end, self.ranges),
            self.rpc.headers(start, end),
        )
        headers: dict[int, dict[str, Any]] = {}
        seen = {int(x["blockNumber"], 16) for x in raw_logs}
        address = bytes.fromhex(self.contract[2:])
        for header in range_headers:
            number = int(header["number"], 16)
            headers[number] = header
            if number in seen or not bloom_may_contain(header["logsBloom"], address):
                continue
            found = await self.rpc.logs_of_block(self.contract, header["hash"])
            outcome = "recovered" if found else "bloom-false-positive"
            LOG_RECHECKS.labels(outcome).inc()
            if found:
                log.warning(
                    "eth_getLogs missed a block's logs; recovered by hash",
                    block=number,
                    logs=len(found),
                )
                raw_logs.extend(found)
        return raw_logs, headers

    async def _ingest(
        self, session: AsyncSession, start: int, end: int
    ) -> tuple[int, dict[str, Any]]:
        """Store and apply the range's new events; (events settled, the header of `end`)."""
        raw_logs, headers = await self._complete_logs(start, end)
        rows = []
        for raw in sorted(
            raw_logs, key=lambda x: (int(x["blockNumber"], 16), int(x["logIndex"], 16))
        ):
            if raw.get("removed"):
                continue
            decoded = self.decoder.decode_raw(raw)
            if decoded is None:
                continue
            number = int(raw["blockNumber"], 16)
            rows.append(
                {
                    "chain_id": self.chain_id,
                    "contract": self.contract,
                    "block_number": number,
                    "block_hash": raw["blockHash"],
                    "block_timestamp": int(headers[number]["timestamp"], 16),
                    "tx_hash": raw["transactionHash"],
                    "log_index": int(raw["logIndex"], 16),
                    "name": decoded[0],
                    "args": decoded[1],
                }
            )
        # One transaction's events are applied together: if one of them is unexpected, none
        # is (a stolen batch's lines and its BatchExecuted all become anomalies).
        groups: list[list[SettleEvent]] = []
        for event in await store_events(session, rows):  # the new ones, in chain order
            if groups and groups[-1][0].tx_hash == event.tx_hash:
                groups[-1].append(event)
            else:
                groups.append([event])
        settled = 0
        i = 0
        while i < len(groups):
            j = i
            while j < len(groups) and all(e.name in BULK_EVENTS for e in groups[j]):
                j += 1
            run = [e for group in groups[i:j] for e in group]
            if len(run) >= self.bulk_min_events and await self._apply_bulk(session, run):
                settled += len(run)
            else:
                for group in groups[i : max(j, i + 1)]:
                    settled += await self._apply_transaction(
                        session, [await self._stored(session, e.id) for e in group]
                    )
            i = max(j, i + 1)
        return settled, headers[end]

    @staticmethod
    async def _stored(session: AsyncSession, event_id: int) -> ChainEvent:
        event = await session.get(ChainEvent, event_id)
        if event is None:
            raise RuntimeError(f"chain event {event_id} vanished after its insert")
        return event

    async def _apply_bulk(self, session: AsyncSession, run: list[SettleEvent]) -> bool:
        """Settle a run of registrations and retopups in bulk (`backend.ledger.bulk`); False
        (nothing written) if the run holds an event the ledger did not expect: the caller then
        settles it event by event, which records the anomaly."""
        try:
            async with session.begin_nested():
                await bulk.settle_run(session, run)
        except BulkRefused as exc:
            BULK_FALLBACKS.inc()
            log.warning(
                "bulk settlement refused a run; settling it event by event",
                events=len(run),
                first_block=run[0].block_number,
                error=str(exc),
            )
            return False
        await session.execute(
            update(ChainEvent)
            .where(ChainEvent.id.in_([e.id for e in run]))
            .values(processed_at=datetime.now(UTC))
        )
        for event in run:
            EVENTS_SETTLED.labels(event.name).inc()
        log.info(
            "events settled in bulk",
            events=len(run),
            first_block=run[0].block_number,
            last_block=run[-1].block_number,
        )
        return True

    async def _apply_transaction(self, session: AsyncSession, events: list[ChainEvent]) -> int:
        """Apply one transaction's new events in a savepoint; an unexpected one turns them
        all into anomalies, with nothing of them in the ledger."""
        try:
            async with session.begin_nested():
                for event in events:
                    await apply_event(session, event)
        except UnexpectedEvent as exc:
            for event in events:
                culprit = event.id == exc.event_id
                event.error = exc.reason if culprit else f"in a transaction with: {exc}"
                await anomalies.record(session, event, str(exc) if culprit else event.error)
        now = datetime.now(UTC)
        for event in events:
            event.processed_at = now
            EVENTS_SETTLED.labels(event.name).inc()
            log.info("event settled", name=event.name, block=event.block_number, tx=event.tx_hash)
        return len(events)
