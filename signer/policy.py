"""What the signer agrees to sign, checked before every signature.

Rules (each refusal names one; `status` is the HTTP status):
- `type-not-allowed` (403): the payload type is not in `allowed_types`.
- `domain-mismatch` (403): the caller stated a chain id / contract other than the signer's.
- `deadline-expired` (403): the deadline is not in the future.
- `deadline-too-far` (403): the deadline is more than `max_deadline_window_seconds` ahead.
- `batch-empty` (403), `batch-recipient-cap` (403), `batch-total-cap` (403): PayoutBatch
  shape and size.
- `rolling-24h-cap` (403): the PayoutBatch totals signed in the last 24 hours plus this one
  would exceed `rolling_24h_cap_wei`.
- `rate-limit` (429): the per-type rate limit is exhausted.
Malformed requests are refused as `invalid-message` / `unknown-type` (422) before the policy.

The rolling window counts what was *signed*, not what executed on chain: the signer cannot
know whether a batch will be submitted, so it assumes the worst. Signing the identical batch
again (same digest) is not counted twice: the contract executes a batch id at most once.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from limits import parse_many

from backend.chain.typed_data import EncodedMessage
from signer.settings import SignerSettings

DAY_SECONDS = 86_400
OUTFLOW_TYPE = "PayoutBatch"


class Refused(Exception):
    """A request the signer will not sign. `rule` is stable (it is the problem `type`)."""

    def __init__(self, rule: str, detail: str, status: int = 403) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail
        self.status = status


class RateLimit:
    """`amount` per `period` seconds as a GCRA (a token bucket of `amount` tokens refilled
    evenly over `period`): O(1) time and state per check.

    The `limits` package parses the notation ("100/second;1000/minute"), but its in-memory
    strategies cost ~90 µs per test+hit (locks, key formatting, an expiry thread), more than the
    signature itself, so the arithmetic is done here.
    """

    __slots__ = ("_tat", "emission", "spec", "tolerance")

    def __init__(self, amount: int, period: float, spec: str = "") -> None:
        self.emission = period / amount
        self.tolerance = period - self.emission
        self.spec = spec or f"{amount}/{period}s"
        self._tat = 0.0  # theoretical arrival time of the next request

    def allows(self, now: float) -> bool:
        return max(self._tat, now) - now <= self.tolerance

    def take(self, now: float) -> None:
        self._tat = max(self._tat, now) + self.emission


def parse_rate_limits(spec: str) -> list[RateLimit]:
    return [
        RateLimit(item.amount, float(item.get_expiry()), str(item)) for item in parse_many(spec)
    ]


@dataclass(slots=True)
class _Outflow:
    at: float
    amount: int
    digest: bytes


class Policy:
    """Stateful policy: the rolling outflow window and the rate limiters live here.

    `admit` checks every rule and, if all pass, reserves the request's share of the window and
    rate limit at once (no await in between, so concurrent requests cannot both squeeze under a
    cap); `release` undoes a reservation when signing then fails.
    """

    def __init__(self, settings: SignerSettings, clock: Callable[[], float] = time.time) -> None:
        self.allowed_types = frozenset(settings.allowed_types)
        self.chain_id = settings.chain_id
        self.contract = settings.contract_address.lower()
        self.max_window = settings.max_deadline_window_seconds
        self.max_batch_total = settings.max_batch_total_wei
        self.max_recipients = settings.max_batch_recipients
        self.rolling_cap = settings.rolling_24h_cap_wei
        self.clock = clock
        self._limits: dict[str, list[RateLimit]] = {
            t: parse_rate_limits(spec) for t, spec in settings.rate_limits().items()
        }
        self._outflows: deque[_Outflow] = deque()
        self._outflow_digests: dict[bytes, int] = {}
        self.rolling_total = 0

    # --- state ------------------------------------------------------------------------------

    def replay(self, records: Iterable[dict[str, Any]]) -> None:
        """Rebuild the rolling window from the audit log's signatures of the last 24 hours."""
        horizon = self.clock() - DAY_SECONDS
        for r in records:
            if r.get("event") == "signature" and r.get("primaryType") == OUTFLOW_TYPE:
                at = float(r["ts"])
                digest = bytes.fromhex(r["digest"][2:])
                if at > horizon and digest not in self._outflow_digests:
                    self._add_outflow(_Outflow(at, int(r["amount"]), digest))

    def _expire(self, now: float) -> None:
        horizon = now - DAY_SECONDS
        while self._outflows and self._outflows[0].at <= horizon:
            old = self._outflows.popleft()
            self.rolling_total -= old.amount
            left = self._outflow_digests[old.digest] - 1
            if left:
                self._outflow_digests[old.digest] = left
            else:
                del self._outflow_digests[old.digest]

    def _add_outflow(self, entry: _Outflow) -> None:
        self._outflows.append(entry)
        self.rolling_total += entry.amount
        self._outflow_digests[entry.digest] = self._outflow_digests.get(entry.digest, 0) + 1

    # --- rules ------------------------------------------------------------------------------

    def check_domain(self, domain: Any) -> None:
        """Callers do not choose the domain; one that states it must agree with the signer's."""
        if domain is None:
            return
        if not isinstance(domain, dict):
            raise Refused("domain-mismatch", "domain must be an object")
        chain_id = domain.get("chainId", self.chain_id)
        contract = domain.get("verifyingContract", self.contract)
        if chain_id != self.chain_id or not isinstance(contract, str):
            raise Refused("domain-mismatch", f"this signer signs for chain {self.chain_id} only")
        if contract.lower() != self.contract:
            raise Refused("domain-mismatch", f"this signer signs for {self.contract} only")

    def check_type(self, primary_type: str) -> None:
        if primary_type not in self.allowed_types:
            raise Refused("type-not-allowed", f"{primary_type} is not an allowed payload type")

    def admit(self, enc: EncodedMessage, digest: bytes) -> _Outflow | None:
        """Check every rule for `enc`; reserve its share; return the reservation (if any)."""
        now = self.clock()
        self.check_type(enc.primary_type)
        if enc.deadline <= now:
            raise Refused("deadline-expired", f"deadline {enc.deadline} is not in the future")
        if enc.deadline > now + self.max_window:
            raise Refused(
                "deadline-too-far",
                f"deadline {enc.deadline} is more than {self.max_window} s ahead",
            )
        outflow = None
        if enc.primary_type == OUTFLOW_TYPE:
            if enc.recipients == 0:
                raise Refused("batch-empty", "a payout batch needs at least one recipient")
            if enc.recipients > self.max_recipients:
                raise Refused(
                    "batch-recipient-cap",
                    f"{enc.recipients} recipients > cap {self.max_recipients}",
                )
            if enc.amount > self.max_batch_total:
                raise Refused(
                    "batch-total-cap", f"batch total {enc.amount} wei > cap {self.max_batch_total}"
                )
            self._expire(now)
            if digest not in self._outflow_digests:
                if self.rolling_total + enc.amount > self.rolling_cap:
                    raise Refused(
                        "rolling-24h-cap",
                        f"{self.rolling_total} wei signed in 24 h + {enc.amount} > cap "
                        f"{self.rolling_cap}",
                    )
                outflow = _Outflow(now, enc.amount, digest)
        limits = self._limits[enc.primary_type]
        for limit in limits:
            if not limit.allows(now):
                raise Refused(
                    "rate-limit", f"{enc.primary_type} rate limit {limit.spec} reached", 429
                )
        for limit in limits:
            limit.take(now)
        if outflow is not None:
            self._add_outflow(outflow)
        return outflow

    def release(self, reservation: _Outflow | None) -> None:
        """Undo a reservation whose signature was not produced."""
        if reservation is None:
            return
        try:
            self._outflows.remove(reservation)
        except ValueError:
            return
        self.rolling_total -= reservation.amount
        left = self._outflow_digests[reservation.digest] - 1
        if left:
            self._outflow_digests[reservation.digest] = left
        else:
            del self._outflow_digests[reservation.digest]
