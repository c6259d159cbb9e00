"""The signing path: validate → digest → policy → ledger → reserve → sign → audit. No HTTP here.

Everything per-domain is precomputed (`DomainHasher`); the per-request work is the direct ABI
encoding, two or three keccak-256 calls, the policy checks, one indexed ledger query (three for a
batch), one libsecp256k1 signature and one audit `write(2)`, whose burst is then anchored in
the signer's state (signer/state.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from backend.chain.typed_data import (
    PRIMARY_TYPES,
    DomainHasher,
    EncodedMessage,
    TypedDataError,
    encode_message,
)
from signer.audit import AnchorError, AuditError, AuditLog, check_anchor
from signer.keys import KeyBackend
from signer.ledger import Ledger, LedgerFacts
from signer.policy import OUTFLOW_TYPE, Policy, Refused, _Outflow
from signer.state import SignerState

_MAX_REFUSED_MESSAGE_CHARS = 2_000
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)


class Metrics:
    """Prometheus metrics, in their own registry (one signer per process, several in tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.signatures = Counter(
            "autopool_signer_signatures",
            "Signatures produced, by payload type",
            ["type"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "autopool_signer_refusals",
            "Requests refused, by rule",
            ["rule"],
            registry=self.registry,
        )
        self.sign_latency = Histogram(
            "autopool_signer_sign_seconds",
            "POST /sign latency inside the server (validate, digest, policy, sign, audit "
            "write and fsync), by type",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rolling_total = Gauge(
            "autopool_signer_rolling_24h_wei",
            "PayoutBatch totals signed in the last 24 hours (wei)",
            registry=self.registry,
        )
        # Bound children: labels() costs more than the increment itself.
        self._signed = {t: self.signatures.labels(t) for t in PRIMARY_TYPES}
        self._latency = {t: self.sign_latency.labels(t) for t in PRIMARY_TYPES}

    def signed(self, primary_type: str) -> None:
        self._signed[primary_type].inc()

    def observe(self, primary_type: str, seconds: float) -> None:
        self._latency[primary_type].observe(seconds)

    def refused(self, rule: str) -> None:
        self.refusals.labels(rule).inc()


@dataclass(slots=True)
class Signed:
    primary_type: str
    signature: bytes
    digest: bytes
    signer: str
    seq: int  # audit record number (await `audit.durable(seq)` before handing it out)

    def as_json(self) -> dict[str, str]:
        return {
            "signature": "0x" + self.signature.hex(),
            "digest": "0x" + self.digest.hex(),
            "signer": self.signer,
        }


class StartupError(Exception):
    """The signer must not serve: its state cannot be read, or its log is behind its anchor."""


class SigningService:
    """Signs what the policy and the ledger allow; `start()` before the first request.

    `state` is None only for a service without persistent limits and anchor (benchmarks'
    baseline); `build_service` always wires one.
    """

    def __init__(
        self,
        key: KeyBackend,
        hasher: DomainHasher,
        policy: Policy,
        audit: AuditLog,
        ledger: Ledger,
        state: SignerState | None = None,
        metrics: Metrics | None = None,
        *,
        records: list[dict[str, Any]] | None = None,
        batch_reuse_grace: int = 300,
    ) -> None:
        self.key = key
        self.address = key.address
        self.hasher = hasher
        self.policy = policy
        self.audit = audit
        self.ledger = ledger
        self.state = state
        self.metrics = metrics or Metrics()
        self.batch_reuse_grace = batch_reuse_grace
        self.halted: str | None = None
        self._records = records or []  # the log as opened, checked against the anchor at start

    async def start(self) -> None:
        """Check the audit log against its anchor, continue the limits from the persisted
        state, and open the ledger. Raises StartupError (nothing is served then)."""
        try:
            if self.state is not None:
                await self.state.open()
                await self._restore()
            await self.ledger.open()
        except AuditError as exc:
            await self.aclose()
            raise StartupError(str(exc)) from exc
        except Exception as exc:
            await self.aclose()
            raise StartupError(
                f"the database is unreachable or not migrated ({type(exc).__name__}: {exc}); "
                "the signer does not sign without it"
            ) from exc
        self._records = []

    async def _restore(self) -> None:
        assert self.state is not None
        seq, digest = self.audit.head
        anchor = await self.state.anchor()
        if anchor is None:
            await self.state.create_anchor(seq, digest)
        else:
            check_anchor(self.audit.path, self._records, anchor.seq, anchor.hash)
            self.policy.restore_rate_state(anchor.rate_limits)
        self.policy.restore_outflows(await self.state.recent_outflows(self.policy.clock()))
        self.audit.anchor = self._anchor
        self.audit.anchored = anchor.seq if anchor is not None else seq
        if self.audit.anchored < seq:
            await self.audit.anchored_to(seq)
        self.metrics.rolling_total.set(self.policy.rolling_total)

    async def _anchor(self, seq: int, digest: str) -> None:
        """The audit log's anchor sink: the head, the limiters and new outflows, in one write."""
        assert self.state is not None
        outflows = self.policy.take_unpersisted()
        try:
            await self.state.write(seq, digest, self.policy.rate_state(), outflows)
        except Exception as exc:
            self.policy.requeue_unpersisted(outflows)
            if type(exc).__name__ == "CheckViolationError":
                # Another signer anchored past this log: two signers for one deployment would
                # each count only their own signatures against the caps. Stop signing.
                self.halted = f"the audit anchor moved past this signer's log: {exc}"
            raise AnchorError(f"cannot anchor the audit log: {type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        await self.audit.aclose()
        await self.ledger.close()
        if self.state is not None:
            await self.state.close()

    def refuse(
        self, exc: Refused, primary_type: Any, digest: bytes | None, message: Any
    ) -> Refused:
        """Audit and count a refusal (the audit record is also the log line); return it."""
        digest_hex = "0x" + digest.hex() if digest is not None else None
        record: dict[str, Any] = {
            "ts": time.time(),
            "event": "refusal",
            "primaryType": primary_type if isinstance(primary_type, str) else repr(primary_type),
            "rule": exc.rule,
            "detail": exc.detail,
            "digest": digest_hex,
        }
        if digest is not None:
            record["message"] = message
        else:
            record["message"] = repr(message)[:_MAX_REFUSED_MESSAGE_CHARS]
        self.audit.append(record)
        self.metrics.refused(exc.rule)
        return exc

    async def handed_out(self, signed: Signed) -> None:
        """Return once `signed` may be handed out: its record is written (synced with
        `always`); for a PayoutBatch also anchored, with its outflow persisted. For Registration
        and Retopup (inflows: the wallet pays) the anchor write of the burst starts at once but
        the reply does not wait for its round trip (docs/signer.md "Audit anchor")."""
        await self.audit.durable(signed.seq, anchored=signed.primary_type == OUTFLOW_TYPE)

    def _validate(
        self, primary_type: Any, message: Any, domain: Any
    ) -> tuple[EncodedMessage, bytes]:
        digest = None
        try:
            if self.halted is not None:
                raise Refused("signer-halted", self.halted, 503)
            if not isinstance(primary_type, str) or primary_type not in PRIMARY_TYPES:
                raise Refused("unknown-type", f"unknown payload type {primary_type!r}", 422)
            self.policy.check_domain(domain)
            self.policy.check_type(primary_type)
            try:
                enc = encode_message(primary_type, message)
            except TypedDataError as exc:
                raise Refused("invalid-message", str(exc), 422) from exc
            digest = self.hasher.digest_of(enc)
            self.policy.check(enc)
        except Refused as exc:
            raise self.refuse(exc, primary_type, digest, message) from None
        return enc, digest

    async def _admit(
        self, enc: EncodedMessage, digest: bytes, message: dict[str, Any]
    ) -> _Outflow | None:
        """The ledger's checks, then the reservation of this request's share of the limits."""
        try:
            facts = await self.ledger.check(enc, message)
            reservation = self.policy.reserve(enc, digest)
            if facts.reward_ids and self.state is not None:
                await self._reserve_rewards(enc, facts, reservation)
        except Refused as exc:
            raise self.refuse(exc, enc.primary_type, digest, message) from None
        return reservation

    async def _reserve_rewards(
        self, enc: EncodedMessage, facts: LedgerFacts, reservation: _Outflow | None
    ) -> None:
        assert self.state is not None and enc.batch_id is not None
        reusable_before = int(self.policy.clock()) - self.batch_reuse_grace
        try:
            conflicts = await self.state.reserve_rewards(
                list(facts.reward_ids), enc.batch_id, enc.deadline, reusable_before
            )
        except Exception as exc:
            self.policy.release(reservation)
            raise Refused(
                "state-unavailable",
                f"the signer's state did not answer ({type(exc).__name__})",
                503,
            ) from exc
        if conflicts:
            self.policy.release(reservation)
            c = conflicts[0]
            raise Refused(
                "reward-in-live-batch",
                f"reward {c.reward_id} is in batch {c.batch_id}, signed with deadline "
                f"{c.deadline}, which may still execute",
            )

    def _record(self, enc: EncodedMessage, digest: bytes, signature: bytes, message: Any) -> Signed:
        # Built by hand: every field but the message is hex, a fixed name or a number, and one
        # json.dumps of a whole record would cost as much as the rest of the path.
        batch = (
            f',"batchId":"{enc.batch_id}","recipients":{enc.recipients}'
            if enc.batch_id is not None
            else ""
        )
        seq = self.audit.append_fields(
            f'"ts":{time.time():.6f},"event":"signature","primaryType":"{enc.primary_type}",'
            f'"digest":"0x{digest.hex()}","signature":"0x{signature.hex()}",'
            f'"signer":"{self.address}","amount":"{enc.amount}","nonce":"{enc.nonce}",'
            f'"deadline":{enc.deadline}{batch},"message":{_dumps(message)}'
        )
        self.metrics.signed(enc.primary_type)
        if enc.primary_type == OUTFLOW_TYPE:
            self.metrics.rolling_total.set(self.policy.rolling_total)
        return Signed(enc.primary_type, signature, digest, self.address, seq)

    async def sign(self, primary_type: Any, message: Any, domain: Any = None) -> Signed:
        """Sign if the policy and the ledger allow it (raises Refused otherwise).

        Every outcome is appended to the audit log (buffered: `audit.durable(seq)` writes,
        syncs and anchors it) before this returns. A blocking key backend (a remote KMS) is
        called off the event loop.
        """
        enc, digest = self._validate(primary_type, message, domain)
        reservation = await self._admit(enc, digest, message)
        try:
            if self.key.blocking:
                signature = await asyncio.to_thread(self.key.sign_digest, digest)
            else:
                signature = self.key.sign_digest(digest)
        except Exception:
            self.policy.release(reservation)
            raise
        return self._record(enc, digest, signature, message)
