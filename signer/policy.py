"""What the signer agrees to sign, checked before every signature.

Rules (each refusal names one; `status` is the HTTP status), in the order they are checked:
- `type-not-allowed` (403): the payload type is not in `allowed_types`.
- `domain-mismatch` (403): the caller stated a chain id / contract other than the signer's.
- `deadline-expired` (403): the deadline is not in the future.
- `deadline-too-far` (403): the deadline is more than `max_deadline_window_seconds` ahead.
- `batch-empty` (403), `batch-recipient-cap` (403), `batch-total-cap` (403): PayoutBatch
  shape and size.
- `rate-limit` (429): the per-type rate limit is exhausted (checked here, and again when the
  request's share is taken).
- the ledger's content checks (signer/ledger.py): the payload must be what the ledger holds.
- `rolling-24h-cap` (403): the PayoutBatch totals signed in the last 24 hours plus this one
  would exceed `rolling_24h_cap_wei`.
Malformed requests are refused as `invalid-message` / `unknown-type` (422) before the policy.

The rolling window counts what was *signed*, not what executed on chain: the signer cannot
know whether a batch will be submitted, so it assumes the worst. Signing the identical batch
again (same digest) is not counted twice: the contract executes a batch id at most once.

The window and the rate limiters are state that must survive a restart: every PayoutBatch
signature is persisted (`take_unpersisted`) and the limiters' state is exported
(`rate_state`) with every burst of audit records (signer/state.py); both are loaded at start.
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

    @property
    def tat(self) -> float:
        return self._tat

    def restore(self, tat: float) -> None:
        """Continue from a persisted state (never less used than it is now)."""
        self._tat = max(self._tat, tat)


def parse_rate_limits(spec: str) -> list[RateLimit]:
    return [
        RateLimit(item.amount, float(item.get_expiry()), str(item)) for item in parse_many(spec)
    ]


@dataclass(slots=True, eq=False)
class _Outflow:
    at: float
    amount: int
    digest: bytes
    batch_id: int = 0


class Policy:
    """Stateful policy: the rolling outflow window and the rate limiters live here.

    `check` applies every rule that needs no ledger; `reserve` then (after the ledger's checks)
    applies the rolling cap and the rate limit again and takes the request's share of both at
    once (no await in between, so concurrent requests cannot both squeeze under a cap);
    `release` undoes a reservation when signing then fails.
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
        self._unpersisted: list[_Outflow] = []
        self.rolling_total = 0

    # --- state ------------------------------------------------------------------------------

    def replay(self, records: Iterable[dict[str, Any]]) -> None:
        """Rebuild the rolling window from the audit log's signatures of the last 24 hours."""
        self.restore_outflows(
            (float(r["ts"]), int(r["amount"]), bytes.fromhex(r["digest"][2:]))
            for r in records
            if r.get("event") == "signature" and r.get("primaryType") == OUTFLOW_TYPE
        )

    def restore_outflows(self, outflows: Iterable[tuple[float, int, bytes]]) -> None:
        """Add persisted PayoutBatch signatures `(at, amount, digest)` of the last 24 hours to
        the window; a digest already in it is not counted twice."""
        horizon = self.clock() - DAY_SECONDS
        for at, amount, digest in sorted(outflows, key=lambda o: o[0]):
            if at > horizon and digest not in self._outflow_digests:
                self._insert_outflow(_Outflow(at, amount, digest))

    def take_unpersisted(self) -> list[_Outflow]:
        """The outflows reserved since the last call (to be persisted with the next burst)."""
        taken, self._unpersisted = self._unpersisted, []
        return taken

    def requeue_unpersisted(self, outflows: list[_Outflow]) -> None:
        """Outflows whose persistence failed: persisted with the next burst instead."""
        self._unpersisted[:0] = outflows

    def rate_state(self) -> dict[str, float]:
        """Every rate limiter's state, keyed by payload type and limit."""
        return {
            f"{t}:{limit.spec}": limit.tat
            for t, limits in self._limits.items()
            for limit in limits
            if limit.tat
        }

    def restore_rate_state(self, state: dict[str, Any]) -> None:
        """Continue the rate limiters from `rate_state()` of an earlier run (a limit whose
        definition changed starts afresh)."""
        for t, limits in self._limits.items():
            for limit in limits:
                tat = state.get(f"{t}:{limit.spec}")
                if isinstance(tat, int | float):
                    limit.restore(float(tat))

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

    def _insert_outflow(self, entry: _Outflow) -> None:
        # Entries arrive in time order, except restored ones (which are older than any new one).
        if self._outflows and entry.at < self._outflows[-1].at:
            position = len(self._outflows)
            while position and self._outflows[position - 1].at > entry.at:
                position -= 1
            self._outflows.insert(position, entry)
        else:
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

    def check(self, enc: EncodedMessage) -> None:
        """Every rule that needs neither the ledger nor a reservation."""
        now = self.clock()
        self.check_type(enc.primary_type)
        if enc.deadline <= now:
            raise Refused("deadline-expired", f"deadline {enc.deadline} is not in the future")
        if enc.deadline > now + self.max_window:
            raise Refused(
                "deadline-too-far",
                f"deadline {enc.deadline} is more than {self.max_window} s ahead",
            )
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
        self._check_rate(enc.primary_type, now)

    def _check_rate(self, primary_type: str, now: float) -> list[RateLimit]:
        limits = self._limits[primary_type]
        for limit in limits:
            if not limit.allows(now):
                raise Refused("rate-limit", f"{primary_type} rate limit {limit.spec} reached", 429)
        return limits

    def reserve(self, enc: EncodedMessage, digest: bytes) -> _Outflow | None:
        """Apply the rolling cap and the rate limit and take this request's share of both;
        return the outflow reservation (for `release`), if any."""
        now = self.clock()
        outflow = None
        if enc.primary_type == OUTFLOW_TYPE:
            self._expire(now)
            if digest not in self._outflow_digests:
                if self.rolling_total + enc.amount > self.rolling_cap:
                    raise Refused(
                        "rolling-24h-cap",
                        f"{self.rolling_total} wei signed in 24 h + {enc.amount} > cap "
                        f"{self.rolling_cap}",
                    )
                outflow = _Outflow(now, enc.amount, digest, enc.batch_id or 0)
        for limit in self._check_rate(enc.primary_type, now):
            limit.take(now)
        if outflow is not None:
            self._insert_outflow(outflow)
            self._unpersisted.append(outflow)
        return outflow

    def release(self, reservation: _Outflow | None) -> None:
        """Undo a reservation whose signature was not produced."""
        if reservation is None:
            return
        try:
            self._outflows.remove(reservation)
        except ValueError:
            return
        if reservation in self._unpersisted:
            self._unpersisted.remove(reservation)
        self.rolling_total -= reservation.amount
        left = self._outflow_digests[reservation.digest] - 1
        if left:
            self._outflow_digests[reservation.digest] = left
        else:
            del self._outflow_digests[reservation.digest]
