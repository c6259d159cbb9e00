"""Gas targets from issue 3, checked on every run (the full table: benchmarks/bench_gas.py).

register <= 75,000 and retopup <= 70,000 total tx gas with a cold (never written) nonce word;
<= 15,000 gas per recipient in a 200-recipient batch to existing funded EOAs, events included,
on a fresh contract (every storage word the batch writes is cold and zero: the worst case)."""

from __future__ import annotations

from tests.contracts.conftest import ETHER, PoolHarness, fresh_address


def test_register_and_retopup_fit_their_gas_targets_with_a_cold_nonce_word(
    harness: PoolHarness,
) -> None:
    h = harness
    register = h.register(h.users[0], 20 * ETHER, nonce=10 * 256)
    retopup = h.retopup(h.users[0], 40 * ETHER, nonce=11 * 256)
    assert register["gasUsed"] <= 75_000, register["gasUsed"]
    assert retopup["gasUsed"] <= 70_000, retopup["gasUsed"]


def test_200_recipient_batch_costs_at_most_15k_gas_per_recipient(harness: PoolHarness) -> None:
    h = harness
    recipients = [fresh_address() for _ in range(200)]
    for r in recipients:  # existing, funded EOAs
        h.w3.provider.make_request("anvil_setBalance", [r, hex(ETHER)])  # type: ignore[arg-type]
    h.register(h.users[0], 1_000 * ETHER)
    receipt = h.execute([(r, ETHER + i) for i, r in enumerate(recipients)])
    assert len(h.events(receipt, "PayoutExecuted")) == 200
    per_recipient = receipt["gasUsed"] / 200
    assert per_recipient <= 15_000, per_recipient
