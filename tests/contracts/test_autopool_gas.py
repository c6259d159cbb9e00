"""Gas targets, checked on every run (the full table: benchmarks/bench_gas.py).

register <= 60,000 total tx gas with a cold (never written) nonce word (retopup keeps its
earlier target of 70,000); <= 12,700 gas per recipient in a 200-recipient batch to existing
funded EOAs, events included, as the first batch on a fresh contract (its batch-id and nonce
words are cold and zero: the worst case)."""

from __future__ import annotations

import random

from eth_utils.address import to_checksum_address

from tests.contracts.conftest import ETHER, PoolHarness


def test_register_and_retopup_fit_their_gas_targets_with_a_cold_nonce_word(
    harness: PoolHarness,
) -> None:
    h = harness
    register = h.register(h.users[0], 20 * ETHER, nonce=10 * 256)
    retopup = h.retopup(h.users[0], 40 * ETHER, nonce=11 * 256)
    assert register["gasUsed"] <= 60_000, register["gasUsed"]
    assert retopup["gasUsed"] <= 70_000, retopup["gasUsed"]


def test_first_200_recipient_batch_costs_at_most_12_700_gas_per_recipient(
    harness: PoolHarness,
) -> None:
    h = harness
    # Fixed addresses: the duplicate check's filter costs a little more when two recipients
    # share their low 16 bits, and a test must not depend on luck. The spread over random sets
    # is measured by benchmarks/bench_gas.py.
    rng = random.Random(2026)
    recipients = [to_checksum_address(rng.randbytes(20)) for _ in range(200)]
    for r in recipients:  # existing, funded EOAs
        h.rpc("anvil_setBalance", [r, hex(ETHER)])
    h.register(h.users[0], 1_000 * ETHER)
    # Nonce and batch id each start a never-written bitmap word.
    receipt = h.execute([(r, 10**15 + i) for i, r in enumerate(recipients)], nonce=7 * 256)
    assert h.pool.functions.nonceBitmap(7).call() == 1
    assert len(h.events(receipt, "PayoutExecuted")) == 200
    per_recipient = receipt["gasUsed"] / 200
    assert per_recipient <= 12_700, per_recipient
