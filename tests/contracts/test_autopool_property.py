"""Property: any sequence of registrations, retopups, batches (with hostile recipients), batch id
replays, batches repeating a recipient and claims keeps `balance == inflows - outflows` with no
surplus, keeps `totalClaimable` equal to the deferred-but-unclaimed amounts, and never executes a
batch id twice."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web3.contract import Contract

from tests.contracts.conftest import PoolHarness, deploy_artifact

UNIT = 10**17  # 0.1 BNB

register_op = st.tuples(st.just("register"), st.integers(0, 5), st.integers(1, 200))
retopup_op = st.tuples(st.just("retopup"), st.integers(0, 5), st.integers(1, 200))
# Recipients 0..5 are EOAs, 6 a contract that rejects while set to, 7 a gas burner. A batch
# has one line per recipient; `dup_batch_op` repeats one (must be refused).
lines = st.lists(
    st.tuples(st.integers(0, 7), st.integers(1, 150)),
    min_size=1,
    max_size=6,
    unique_by=lambda x: x[0],
)
batch_op = st.tuples(
    st.just("batch"),
    lines,
    st.booleans(),  # reuse an executed batch id (must be refused)
)
dup_batch_op = st.tuples(st.just("dup_batch"), lines, st.integers(0, 5))
claim_op = st.tuples(st.just("claim"))
toggle_op = st.tuples(st.just("toggle"))
operations = st.lists(
    st.one_of(register_op, retopup_op, batch_op, dup_batch_op, claim_op, toggle_op),
    min_size=1,
    max_size=12,
)


class Model:
    def __init__(self, h: PoolHarness, rejecting: Contract, burner: Contract) -> None:
        self.h = h
        self.rejecting = rejecting
        self.burner = burner
        self.recipients = [*h.users[:6], rejecting.address, burner.address]
        self.inflow = 0
        self.outflow = 0
        self.claimable: dict[str, int] = {rejecting.address: 0, burner.address: 0}
        self.executed: list[int] = []
        self.rejecting_on = True

    def check(self) -> None:
        h = self.h
        fns = h.pool.functions
        assert h.balance() == self.inflow - self.outflow
        assert fns.surplus().call() == 0
        for account, amount in self.claimable.items():
            assert fns.claimable(account).call() == amount
        assert fns.totalClaimable().call() == sum(self.claimable.values())
        if self.executed:
            assert fns.batchExecuted(self.executed[-1]).call()

    def apply(self, op: tuple[Any, ...]) -> None:
        h = self.h
        kind = op[0]
        if kind in ("register", "retopup"):
            user, amount = h.users[op[1]], op[2] * UNIT
            receipt = h.register(user, amount) if kind == "register" else h.retopup(user, amount)
            assert receipt["status"] == 1
            self.inflow += amount
        elif kind == "batch":
            self._batch(op[1], op[2])
        elif kind == "dup_batch":
            payouts = [(self.recipients[i], units * UNIT) for i, units in op[1]]
            payouts.insert(op[2] % (len(payouts) + 1), payouts[op[2] % len(payouts)])
            h.expect_revert(h.batch_fn(h.batch(payouts)), "DuplicateRecipient", h.sender)
        elif kind == "claim":
            owed = self.claimable[self.rejecting.address]
            if self.rejecting_on or owed == 0:
                receipt = h.send(self.rejecting.functions.claimFromPool(), h.sender, gas=500_000)
                assert receipt["status"] == 0
                return
            receipt = h.send(self.rejecting.functions.claimFromPool(), h.sender)
            (claimed,) = h.events(receipt, "Claimed")
            assert claimed["args"]["amount"] == owed
            self.outflow += owed
            self.claimable[self.rejecting.address] = 0
        elif kind == "toggle":
            self.rejecting_on = not self.rejecting_on
            h.send(self.rejecting.functions.setRejecting(self.rejecting_on), h.sender)

    def _batch(self, lines: list[tuple[int, int]], reuse: bool) -> None:
        h = self.h
        payouts = [(self.recipients[i], units * UNIT) for i, units in lines]
        total = sum(a for _, a in payouts)
        if reuse and self.executed:
            batch = h.batch(payouts, batch_id=self.executed[len(self.executed) // 2])
            h.expect_revert(h.batch_fn(batch), "BatchAlreadyExecuted", h.sender)
            return
        batch = h.batch(payouts)
        free = h.balance() - sum(self.claimable.values())
        if total > free:
            h.expect_revert(h.batch_fn(batch), "InsufficientBalance", h.sender)
            return
        receipt = h.send(h.batch_fn(batch), h.sender)
        assert receipt["status"] == 1
        paid = sum(e["args"]["amount"] for e in h.events(receipt, "PayoutExecuted"))
        deferred_events = h.events(receipt, "PayoutDeferred")
        for e in deferred_events:
            self.claimable[e["args"]["recipient"]] += e["args"]["amount"]
        deferred = sum(e["args"]["amount"] for e in deferred_events)
        (summary,) = h.events(receipt, "BatchExecuted")
        assert (summary["args"]["paidTotal"], summary["args"]["deferredTotal"]) == (paid, deferred)
        assert paid + deferred == total
        # Who defers is exactly who cannot take a 12,300-gas push.
        expected_deferred = {self.burner.address} | (
            {self.rejecting.address} if self.rejecting_on else set()
        )
        assert {e["args"]["recipient"] for e in deferred_events} == {
            r for r, _ in payouts if r in expected_deferred
        }
        self.outflow += paid
        self.executed.append(batch["batchId"])


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_random_sequences_conserve_balance_and_never_repeat_a_batch(
    harness: PoolHarness, ops: list[tuple[Any, ...]]
) -> None:
    h = harness
    w3 = h.w3
    # Hostile recipients are deployed once per test, before the first example's snapshot.
    if not hasattr(h, "hostile"):
        h.hostile = (  # type: ignore[attr-defined]
            deploy_artifact(
                w3, "RejectingRecipient", "test/Recipients", h.pool.address, sender=h.owner
            ),
            deploy_artifact(w3, "GasBurner", "test/Recipients", sender=h.owner),
        )
    rejecting, burner = h.hostile  # type: ignore[attr-defined]
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    try:
        first_block = w3.eth.block_number + 1
        model = Model(h, rejecting, burner)
        for op in ops:
            model.apply(op)
            model.check()
        # From chain data alone: every batch id appears in at most one BatchExecuted.
        logs = h.pool.events.BatchExecuted().get_logs(from_block=first_block)
        ids = [e["args"]["batchId"] for e in logs]
        assert len(ids) == len(set(ids)) == len(model.executed)
        # And the events alone rebuild the balance.
        inflow = sum(
            e["args"]["amount"]
            for name in ("RegistrationAccepted", "RetopupCompleted")
            for e in getattr(h.pool.events, name)().get_logs(from_block=first_block)
        )
        outflow = sum(
            e["args"]["amount"]
            for name in ("PayoutExecuted", "Claimed")
            for e in getattr(h.pool.events, name)().get_logs(from_block=first_block)
        )
        assert h.balance() == inflow - outflow
    finally:
        w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
