"""The signing path: validate → digest → policy → sign → audit. No HTTP here.

Everything per-domain is precomputed (`DomainHasher`); the per-request work is the direct ABI
encoding, two or three keccak-256 calls, the policy checks, one libsecp256k1 signature and one
audit `write(2)`.
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
from signer.audit import AuditLog
from signer.keys import KeyBackend
from signer.policy import OUTFLOW_TYPE, Policy, Refused, _Outflow

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


class SigningService:
    def __init__(
        self,
        key: KeyBackend,
        hasher: DomainHasher,
        policy: Policy,
        audit: AuditLog,
        metrics: Metrics | None = None,
    ) -> None:
        self.key = key
        self.address = key.address
        self.hasher = hasher
        self.policy = policy
        self.audit = audit
        self.metrics = metrics or Metrics()

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

    def _prepare(
        self, primary_type: Any, message: Any, domain: Any
    ) -> tuple[EncodedMessage, bytes, _Outflow | None]:
        digest = None
        try:
            if not isinstance(primary_type, str) or primary_type not in PRIMARY_TYPES:
                raise Refused("unknown-type", f"unknown payload type {primary_type!r}", 422)
            self.policy.check_domain(domain)
            self.policy.check_type(primary_type)
            try:
                enc = encode_message(primary_type, message)
            except TypedDataError as exc:
                raise Refused("invalid-message", str(exc), 422) from exc
            digest = self.hasher.digest_of(enc)
            reservation = self.policy.admit(enc, digest)
        except Refused as exc:
            raise self.refuse(exc, primary_type, digest, message) from None
        return enc, digest, reservation

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

    def sign(self, primary_type: Any, message: Any, domain: Any = None) -> Signed:
        """Sign if the policy allows (raises Refused otherwise), for in-memory keys.

        Every outcome is appended to the audit log (buffered: `audit.durable(seq)` writes and
        syncs it) before this returns.
        """
        enc, digest, reservation = self._prepare(primary_type, message, domain)
        try:
            signature = self.key.sign_digest(digest)
        except Exception:
            self.policy.release(reservation)
            raise
        return self._record(enc, digest, signature, message)

    async def sign_async(self, primary_type: Any, message: Any, domain: Any = None) -> Signed:
        """`sign`, calling a blocking key backend (a remote KMS) off the event loop."""
        if not self.key.blocking:
            return self.sign(primary_type, message, domain)
        enc, digest, reservation = self._prepare(primary_type, message, domain)
        try:
            signature = await asyncio.to_thread(self.key.sign_digest, digest)
        except Exception:
            self.policy.release(reservation)
            raise
        return self._record(enc, digest, signature, message)
