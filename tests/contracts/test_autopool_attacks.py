"""Each AutoPool guarantee, attacked: replays, forged or malleated signatures, wrong value or
sender, batch replays, re-entrant and gas-burning recipients, pause, cap, signer rotation."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.types import TxParams

from backend.chain.typed_data import Domain
from tests.contracts.conftest import (
    ETHER,
    OTHER_KEY,
    SECP256K1_N,
    PoolHarness,
    deploy_artifact,
    error_selector,
    fresh_address,
    high_s,
)

# ---------------------------------------------------------------- replay and nonces


def test_replayed_registration_is_rejected(harness: PoolHarness) -> None:
    h = harness
    msg = h.registration(h.users[0], ETHER)
    sig = h.sign("Registration", msg)
    assert h.send(h.register_fn(msg, sig), h.users[0], ETHER)["status"] == 1
    h.expect_revert(h.register_fn(msg, sig), "NonceAlreadyUsed", h.users[0], ETHER)
    assert h.balance() == ETHER


def test_replayed_retopup_is_rejected(harness: PoolHarness) -> None:
    h = harness
    msg = h.retopup_payload(h.users[0], ETHER)
    sig = h.sign("Retopup", msg)
    assert h.send(h.retopup_fn(msg, sig), h.users[0], ETHER)["status"] == 1
    h.expect_revert(h.retopup_fn(msg, sig), "NonceAlreadyUsed", h.users[0], ETHER)


def test_a_nonce_is_single_use_across_payload_types(harness: PoolHarness) -> None:
    h = harness
    reg = h.registration(h.users[0], 2 * ETHER)
    h.send(h.register_fn(reg), h.users[0], 2 * ETHER)
    # A different, correctly signed payload reusing the nonce: rejected whatever its type.
    h.expect_revert(
        h.retopup_fn(h.retopup_payload(h.users[0], ETHER, nonce=reg["nonce"])),
        "NonceAlreadyUsed",
        h.users[0],
        ETHER,
    )
    h.expect_revert(
        h.register_fn(h.registration(h.users[1], ETHER, nonce=reg["nonce"])),
        "NonceAlreadyUsed",
        h.users[1],
        ETHER,
    )
    h.expect_revert(
        h.batch_fn(h.batch([(h.users[2], ETHER)], nonce=reg["nonce"])),
        "NonceAlreadyUsed",
        h.sender,
    )


def test_nonces_are_unordered(harness: PoolHarness) -> None:
    h = harness
    for nonce in (1000, 3, 2**255 + 7, 4):
        h.register(h.users[0], ETHER, nonce=nonce)
    for nonce in (1000, 3, 2**255 + 7, 4):
        assert h.pool.functions.isNonceUsed(nonce).call()
    assert not h.pool.functions.isNonceUsed(5).call()


def test_expired_deadline_is_rejected(harness: PoolHarness) -> None:
    h = harness
    past = h.now() - 1
    h.expect_revert(
        h.register_fn(h.registration(h.users[0], ETHER, deadline=past)),
        "DeadlineExpired",
        h.users[0],
        ETHER,
    )
    h.expect_revert(
        h.retopup_fn(h.retopup_payload(h.users[0], ETHER, deadline=past)),
        "DeadlineExpired",
        h.users[0],
        ETHER,
    )
    h.register(h.users[0], 10 * ETHER)
    h.expect_revert(
        h.batch_fn(h.batch([(h.users[1], ETHER)], deadline=past)), "DeadlineExpired", h.sender
    )


def test_deadline_passing_while_pending_is_rejected(harness: PoolHarness) -> None:
    h = harness
    msg = h.registration(h.users[0], ETHER, deadline=h.now() + 60)
    h.w3.provider.make_request("evm_increaseTime", [61])  # type: ignore[arg-type]
    h.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    h.expect_revert(h.register_fn(msg), "DeadlineExpired", h.users[0], ETHER)


# ---------------------------------------------------------------- signatures


def test_wrong_chain_id_signature_is_rejected(harness: PoolHarness) -> None:
    h = harness
    msg = h.registration(h.users[0], ETHER)
    bsc = Domain(chain_id=56, verifying_contract=h.pool.address)
    sig = h.sign("Registration", msg, domain=bsc)
    h.expect_revert(h.register_fn(msg, sig), "UnauthorizedSigner", h.users[0], ETHER)


def test_signature_for_another_contract_is_rejected(harness: PoolHarness) -> None:
    h = harness
    msg = h.registration(h.users[0], ETHER)
    other = Domain(chain_id=h.w3.eth.chain_id, verifying_contract=fresh_address())
    sig = h.sign("Registration", msg, domain=other)
    h.expect_revert(h.register_fn(msg, sig), "UnauthorizedSigner", h.users[0], ETHER)


def test_domain_follows_a_chain_id_change(harness: PoolHarness) -> None:
    """After a fork changes the chain id, signatures for the old chain id stop verifying."""
    h = harness
    old_chain = h.w3.eth.chain_id
    msg = h.registration(h.users[0], ETHER)
    sig = h.sign("Registration", msg)
    old_separator = h.pool.functions.DOMAIN_SEPARATOR().call()
    h.w3.provider.make_request("anvil_setChainId", [old_chain + 1])  # type: ignore[arg-type]
    try:
        assert h.pool.functions.DOMAIN_SEPARATOR().call() != old_separator
        data = ""
        try:
            h.register_fn(msg, sig).call({"from": h.users[0], "value": ETHER})
        except Exception as exc:
            data = str(getattr(exc, "data", exc))
        assert data.startswith(error_selector(h.pool.abi, "UnauthorizedSigner"))
    finally:
        h.w3.provider.make_request("anvil_setChainId", [old_chain])  # type: ignore[arg-type]
    assert h.pool.functions.DOMAIN_SEPARATOR().call() == old_separator


def test_signature_by_another_key_is_rejected(harness: PoolHarness) -> None:
    h = harness
    msg = h.registration(h.users[0], ETHER)
    sig = h.sign("Registration", msg, key=OTHER_KEY)
    data = h.expect_revert(h.register_fn(msg, sig), "UnauthorizedSigner", h.users[0], ETHER)
    assert data[-40:].lower() == Account.from_key(OTHER_KEY).address[2:].lower()
    h.register(h.users[0], ETHER)
    batch = h.batch([(h.users[1], ETHER)])
    forged = h.sign("PayoutBatch", batch, key=OTHER_KEY)
    h.expect_revert(h.batch_fn(batch, forged), "UnauthorizedSigner", h.sender)


def test_high_s_malleated_signature_is_rejected(harness: PoolHarness) -> None:
    h = harness
    msg = h.registration(h.users[0], ETHER)
    sig = h.sign("Registration", msg)
    twin = high_s(sig)
    assert (
        Account._recover_hash(  # the twin really recovers the signer
            h.pool.functions.registrationDigest(h.as_tuple("Registration", msg)).call(),
            signature=twin,
        )
        == Account.from_key(h.signer_key).address
    )
    h.expect_revert(h.register_fn(msg, twin), "SignatureHighS", h.users[0], ETHER)
    h.register(h.users[1], 5 * ETHER)
    batch = h.batch([(h.users[1], ETHER)])
    h.expect_revert(
        h.batch_fn(batch, high_s(h.sign("PayoutBatch", batch))), "SignatureHighS", h.sender
    )


def test_malformed_signatures_are_rejected(harness: PoolHarness) -> None:
    h = harness
    msg = h.registration(h.users[0], ETHER)
    sig = h.sign("Registration", msg)
    h.expect_revert(h.register_fn(msg, sig[:64]), "InvalidSignatureLength", h.users[0], ETHER)
    h.expect_revert(h.register_fn(msg, sig + b"\x00"), "InvalidSignatureLength", h.users[0], ETHER)
    h.expect_revert(
        h.register_fn(msg, sig[:64] + bytes([sig[64] - 27])), "InvalidSignatureV", h.users[0], ETHER
    )
    h.expect_revert(h.register_fn(msg, bytes(64) + b"\x1b"), "InvalidSignature", h.users[0], ETHER)


def test_signatures_with_r_zero_r_at_or_above_n_or_s_zero_recover_nothing(
    harness: PoolHarness,
) -> None:
    """ecrecover returns nothing for r = 0, r >= n or s = 0; the contract then refuses with
    InvalidSignature (never "recovered address(0)" mistaken for a signer). s >= n is already
    refused as high-s."""
    h = harness
    msg = h.registration(h.users[0], ETHER)
    good = h.sign("Registration", msg)
    r, s_, v = good[:32], good[32:64], good[64:]
    n = SECP256K1_N.to_bytes(32, "big")
    bad_r = [bytes(32), n, (SECP256K1_N + 1).to_bytes(32, "big"), b"\xff" * 32]
    for bad in [x + s_ + v for x in bad_r] + [r + bytes(32) + v]:
        h.expect_revert(h.register_fn(msg, bad), "InvalidSignature", h.users[0], ETHER)
    h.expect_revert(h.register_fn(msg, r + n + v), "SignatureHighS", h.users[0], ETHER)
    h.register(h.users[1], 5 * ETHER)
    batch = h.batch([(h.users[2], ETHER)])
    sig = h.sign("PayoutBatch", batch)
    for bad in (bytes(32) + sig[32:], n + sig[32:], sig[:32] + bytes(32) + sig[64:]):
        h.expect_revert(h.batch_fn(batch, bad), "InvalidSignature", h.sender)
    assert h.send(h.register_fn(msg, good), h.users[0], ETHER)["status"] == 1


def test_tampered_payload_does_not_verify(harness: PoolHarness) -> None:
    h = harness
    msg = h.registration(h.users[0], ETHER, slot=3)
    sig = h.sign("Registration", msg)
    h.expect_revert(h.register_fn({**msg, "slot": 4}, sig), "UnauthorizedSigner", h.users[0], ETHER)
    h.register(h.users[1], 10 * ETHER)
    batch = h.batch([(h.users[1], ETHER)])
    sig = h.sign("PayoutBatch", batch)
    bigger = {**batch, "payouts": [{"recipient": h.users[1], "amount": 2 * ETHER}]}
    h.expect_revert(h.batch_fn(bigger, sig), "UnauthorizedSigner", h.sender)
    redirected = {**batch, "payouts": [{"recipient": h.users[2], "amount": ETHER}]}
    h.expect_revert(h.batch_fn(redirected, sig), "UnauthorizedSigner", h.sender)


def test_rotated_signer_old_signatures_are_rejected(harness: PoolHarness) -> None:
    h = harness
    old_msg = h.registration(h.users[0], ETHER)
    old_sig = h.sign("Registration", old_msg)
    h.register(h.users[1], 10 * ETHER)
    old_batch = h.batch([(h.users[2], ETHER)])
    old_batch_sig = h.sign("PayoutBatch", old_batch)
    new_key = "0x" + "33" * 32
    h.rotate_signer(new_key)
    h.expect_revert(h.register_fn(old_msg, old_sig), "UnauthorizedSigner", h.users[0], ETHER)
    h.expect_revert(h.batch_fn(old_batch, old_batch_sig), "UnauthorizedSigner", h.sender)
    new_sig = h.sign("Registration", old_msg, key=new_key)
    assert h.send(h.register_fn(old_msg, new_sig), h.users[0], ETHER)["status"] == 1


# ---------------------------------------------------------------- value and sender


def test_wrong_msg_value_is_rejected(harness: PoolHarness) -> None:
    h = harness
    msg = h.registration(h.users[0], 20 * ETHER)
    for value in (0, 20 * ETHER - 1, 20 * ETHER + 1):
        h.expect_revert(h.register_fn(msg), "WrongValue", h.users[0], value)
    top = h.retopup_payload(h.users[0], 40 * ETHER)
    h.expect_revert(h.retopup_fn(top), "WrongValue", h.users[0], 39 * ETHER)
    assert h.balance() == 0


def test_sender_other_than_user_is_rejected(harness: PoolHarness) -> None:
    h = harness
    msg = h.registration(h.users[0], ETHER)
    h.expect_revert(h.register_fn(msg), "SenderNotUser", h.users[1], ETHER)
    top = h.retopup_payload(h.users[0], ETHER)
    h.expect_revert(h.retopup_fn(top), "SenderNotUser", h.users[1], ETHER)


# ---------------------------------------------------------------- batches


def test_batch_id_executes_at_most_once(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    batch = h.batch([(h.users[1], ETHER)])
    sig = h.sign("PayoutBatch", batch)
    assert h.send(h.batch_fn(batch, sig), h.sender)["status"] == 1
    # The same signed batch again, and the same id re-signed under a fresh nonce.
    h.expect_revert(h.batch_fn(batch, sig), "BatchAlreadyExecuted", h.sender)
    again = h.batch([(h.users[1], ETHER)], batch_id=batch["batchId"])
    h.expect_revert(h.batch_fn(again), "BatchAlreadyExecuted", h.sender)
    assert h.balance() == 19 * ETHER


def test_executed_batch_reports_already_executed_even_after_deadline_or_pause(
    harness: PoolHarness,
) -> None:
    """A settlement worker retrying an executed batch must never read it as expired."""
    h = harness
    h.register(h.users[0], 20 * ETHER)
    batch = h.batch([(h.users[1], ETHER)], deadline=h.now() + 60)
    sig = h.sign("PayoutBatch", batch)
    assert h.send(h.batch_fn(batch, sig), h.sender)["status"] == 1
    h.w3.provider.make_request("evm_increaseTime", [120])  # type: ignore[arg-type]
    h.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    h.expect_revert(h.batch_fn(batch, sig), "BatchAlreadyExecuted", h.sender)
    h.send(h.pool.functions.pause(), h.guardian)
    h.expect_revert(h.batch_fn(batch, sig), "BatchAlreadyExecuted", h.sender)
    # An unexecuted batch past its deadline is reported as expired.
    late = h.batch([(h.users[1], ETHER)], deadline=h.now() - 1)
    h.unpause()
    h.expect_revert(h.batch_fn(late), "DeadlineExpired", h.sender)
    assert not h.pool.functions.batchExecuted(late["batchId"]).call()


def test_batch_checks_recipients_and_shape(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    h.expect_revert(h.batch_fn(h.batch([])), "EmptyBatch", h.sender)
    zero = "0x" + "00" * 20
    h.expect_revert(h.batch_fn(h.batch([(h.users[1], 1), (zero, 1)])), "InvalidRecipient", h.sender)
    h.expect_revert(h.batch_fn(h.batch([(h.pool.address, 1)])), "InvalidRecipient", h.sender)


def _dirty(calldata: str, clean: str, upper: bytes) -> str:
    """`calldata` with the one 32-byte word holding address `clean` given nonzero upper bits."""
    word = bytes(12) + bytes.fromhex(clean[2:])
    raw = bytes.fromhex(calldata[2:])
    assert raw.count(word) == 1
    dirty = upper.rjust(12, b"\x00") + bytes.fromhex(clean[2:])
    return "0x" + raw.replace(word, dirty).hex()


def test_recipient_with_dirty_upper_bits_in_hand_built_calldata_is_refused(
    harness: PoolHarness,
) -> None:
    """The EVM would call the low 160 bits, but the hash, the event topic and the ledger would
    see another word: a line whose recipient word is not a clean address is refused, named."""
    h = harness
    h.register(h.users[0], 10 * ETHER)
    victim = fresh_address()
    batch = h.batch([(h.users[1], ETHER), (victim, 2 * ETHER)])
    sig = h.sign("PayoutBatch", batch)
    clean = h.pool.encode_abi("executeBatchPayouts", args=[h.as_tuple("PayoutBatch", batch), sig])
    expected = error_selector(h.pool.abi, "InvalidRecipient")
    for upper in (b"\x01", b"\xff" * 12, b"\x80" + bytes(11)):
        data = _dirty(clean, victim, upper)
        tx: TxParams = {"from": h.sender, "to": h.pool.address, "data": data, "gas": 1_000_000}
        with pytest.raises(ContractCustomError) as info:
            h.w3.eth.call(tx)
        word = int.from_bytes(upper.rjust(12, b"\x00") + bytes.fromhex(victim[2:]), "big")
        assert str(info.value.data) == expected + f"{1:064x}" + f"{word:064x}"
        receipt = h.w3.eth.wait_for_transaction_receipt(h.w3.eth.send_transaction(tx))
        assert receipt["status"] == 0
    assert h.w3.eth.get_balance(victim) == 0
    assert not h.pool.functions.batchExecuted(batch["batchId"]).call()
    # The same signed batch, clean, executes.
    tx = {"from": h.sender, "to": h.pool.address, "data": clean, "gas": 1_000_000}
    assert h.w3.eth.wait_for_transaction_receipt(h.w3.eth.send_transaction(tx))["status"] == 1
    assert h.w3.eth.get_balance(victim) == 2 * ETHER


def test_zero_amount_lines_are_refused(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 10 * ETHER)
    data = h.expect_revert(
        h.batch_fn(h.batch([(h.users[1], ETHER), (h.users[2], 0)])), "ZeroAmount", h.sender
    )
    assert int(data[10:], 16) == 1
    h.expect_revert(h.batch_fn(h.batch([(h.users[1], 0)])), "ZeroAmount", h.sender)


def test_duplicate_recipient_lines_are_refused(harness: PoolHarness) -> None:
    """One line per recipient: a repeat anywhere in the batch is refused and named."""
    h = harness
    h.register(h.users[0], 100 * ETHER)
    a, b, c = h.users[1], h.users[2], h.users[3]
    for lines, index, who in (
        ([(a, ETHER), (a, ETHER)], 1, a),
        ([(a, ETHER), (b, ETHER), (c, ETHER), (b, 2 * ETHER)], 3, b),
        ([(a, 1), *[(fresh_address(), 1) for _ in range(40)], (a, 1)], 41, a),
    ):
        data = h.expect_revert(h.batch_fn(h.batch(lines)), "DuplicateRecipient", h.sender)
        assert (int(data[10:74], 16), "0x" + data[-40:]) == (index, who.lower())


def test_recipients_sharing_low_address_bits_are_not_duplicates(harness: PoolHarness) -> None:
    """The duplicate check's filter is keyed by the low 16 bits of the address: distinct
    recipients that share them are compared in full and paid; a real repeat among them is
    still refused."""
    h = harness
    h.register(h.users[0], 100 * ETHER)
    tail = secrets.token_bytes(2)
    twins = [to_checksum_address(secrets.token_bytes(18) + tail) for _ in range(9)]
    receipt = h.execute([(t, ETHER + i) for i, t in enumerate(twins)])
    assert [e["args"]["recipient"] for e in h.events(receipt, "PayoutExecuted")] == twins
    lines = [(t, ETHER) for t in twins] + [(twins[4], ETHER)]
    data = h.expect_revert(h.batch_fn(h.batch(lines)), "DuplicateRecipient", h.sender)
    assert int(data[10:74], 16) == 9


def test_duplicate_recipients_are_found_in_a_large_batch(harness: PoolHarness) -> None:
    """Past 512 lines the filter grows (more words, keyed by more address bits): a repeat is
    still found, and a batch of distinct recipients still executes."""
    h = harness
    h.register(h.users[0], 1_000 * ETHER)
    recipients = [fresh_address() for _ in range(600)]
    for r in recipients:  # existing accounts: a batch to 600 new ones would need more gas
        h.rpc("anvil_setBalance", [r, hex(ETHER)])
    lines = [(r, ETHER) for r in recipients]
    data = h.expect_revert(
        h.batch_fn(h.batch([*lines, (recipients[3], 1)])), "DuplicateRecipient", h.sender
    )
    assert (int(data[10:74], 16), "0x" + data[-40:]) == (600, recipients[3].lower())
    receipt = h.send(h.batch_fn(h.batch(lines)), h.sender, gas=12_000_000)
    assert len(h.events(receipt, "PayoutExecuted")) == 600


def test_batch_cannot_spend_more_than_the_balance(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 2 * ETHER)
    h.expect_revert(
        h.batch_fn(h.batch([(h.users[1], ETHER), (h.users[2], ETHER + 1)])),
        "InsufficientBalance",
        h.sender,
    )


def test_batch_amount_overflow_is_rejected(harness: PoolHarness) -> None:
    h = harness
    big = 2**256 - 1
    h.expect_revert(
        h.batch_fn(h.batch([(h.users[1], big), (h.users[2], 1)])), "AmountOverflow", h.sender
    )


# ---------------------------------------------------------------- hostile recipients


def _recipient(h: PoolHarness, name: str, *args: Any) -> Contract:
    return deploy_artifact(h.w3, name, "test/Recipients", *args, sender=h.owner)


def test_reverting_recipient_is_deferred_and_can_claim(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    rejecting = _recipient(h, "RejectingRecipient", h.pool.address)
    batch = h.batch([(h.users[1], ETHER), (rejecting.address, 2 * ETHER), (h.users[2], 3 * ETHER)])
    receipt = h.send(h.batch_fn(batch), h.sender)
    assert receipt["status"] == 1
    (deferred,) = h.events(receipt, "PayoutDeferred")
    assert dict(deferred["args"]) == {
        "batchId": batch["batchId"],
        "recipient": rejecting.address,
        "amount": 2 * ETHER,
    }
    assert [e["args"]["recipient"] for e in h.events(receipt, "PayoutExecuted")] == [
        h.users[1],
        h.users[2],
    ]
    (summary,) = h.events(receipt, "BatchExecuted")
    assert summary["args"]["paidTotal"] == 4 * ETHER
    assert summary["args"]["deferredTotal"] == 2 * ETHER
    fns = h.pool.functions
    assert fns.claimable(rejecting.address).call() == 2 * ETHER
    assert fns.totalClaimable().call() == 2 * ETHER

    # Deferred BNB is reserved: a new batch cannot spend it.
    h.expect_revert(
        h.batch_fn(h.batch([(h.users[3], 14 * ETHER + 1)])), "InsufficientBalance", h.sender
    )

    # Still rejecting: the claim fails as a whole and the amount stays claimable.
    assert h.send(rejecting.functions.claimFromPool(), h.users[3], gas=500_000)["status"] == 0
    assert fns.claimable(rejecting.address).call() == 2 * ETHER
    h.send(rejecting.functions.setRejecting(False), h.users[3])
    receipt = h.send(rejecting.functions.claimFromPool(), h.users[3])
    (claimed,) = h.events(receipt, "Claimed")
    assert dict(claimed["args"]) == {"account": rejecting.address, "amount": 2 * ETHER}
    assert h.w3.eth.get_balance(rejecting.address) == 2 * ETHER
    assert fns.claimable(rejecting.address).call() == 0
    assert fns.totalClaimable().call() == 0
    h.expect_revert(fns.claim(), "NothingToClaim", rejecting.address, mined=False)


def test_claim_to_another_address_for_accounts_that_cannot_receive(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 5 * ETHER)
    rejecting = _recipient(h, "RejectingRecipient", h.pool.address)
    h.execute([(rejecting.address, ETHER)])
    before = h.w3.eth.get_balance(h.users[5])
    receipt = h.send(rejecting.functions.claimFromPoolTo(h.users[5]), h.users[3])
    assert h.events(receipt, "Claimed")[0]["args"]["amount"] == ETHER
    assert dict(h.events(receipt, "ClaimedTo")[0]["args"]) == {
        "account": rejecting.address,
        "to": h.users[5],
        "amount": ETHER,
    }
    assert h.w3.eth.get_balance(h.users[5]) - before == ETHER


def test_gas_burning_and_revert_bomb_recipients_are_deferred_at_bounded_cost(
    harness: PoolHarness,
) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    burners = [_recipient(h, "GasBurner").address for _ in range(2)]
    bomb = _recipient(h, "ReturnBomb", h.pool.address, 40_000)
    h.send(bomb.functions.setMode(1), h.owner)  # reverts with 40 kB, inside the stipend
    receipt = h.execute(
        [(h.users[1], ETHER), (burners[0], ETHER), (bomb.address, ETHER), (h.users[2], ETHER)]
    )
    deferred = {e["args"]["recipient"] for e in h.events(receipt, "PayoutDeferred")}
    assert deferred == {burners[0], bomb.address}
    assert len(h.events(receipt, "PayoutExecuted")) == 2

    # What one more hostile line adds to a batch (fresh contract, new claimable slot): its
    # stipend burnt, the call, the claimable slot and the event, nothing more.
    def batch_gas(hostile: list[str]) -> int:
        lines = [(h.users[1], ETHER), *[(r, ETHER) for r in hostile], (h.users[2], ETHER)]
        return h.gas_of(h.batch_fn(h.batch(lines)), h.sender)

    one = batch_gas([burners[1]])
    fresh = _recipient(h, "GasBurner").address
    per_hostile = batch_gas([burners[1], fresh]) - one
    assert per_hostile < 2_600 + 9_000 + 12_300 + 22_100 + 3_000, per_hostile


def test_tight_gas_limit_cannot_force_a_deferral(harness: PoolHarness) -> None:
    """A submitter who starves the last recipient's call gets a revert, not a deferral."""
    h = harness
    h.register(h.users[0], 20 * ETHER)
    rejecting = _recipient(h, "RejectingRecipient", h.pool.address)
    h.send(rejecting.functions.setRejecting(False), h.owner)  # a healthy contract recipient
    batch = h.batch([(h.users[1], ETHER), (rejecting.address, ETHER)])
    fn = h.batch_fn(batch)
    estimate = fn.estimate_gas({"from": h.sender})
    for gas in (estimate - 5_000, estimate - 20_000, estimate - 40_000):
        assert h.send(fn, h.sender, gas=gas)["status"] == 0
    assert h.pool.functions.totalClaimable().call() == 0
    receipt = h.send(fn, h.sender, gas=estimate)
    assert receipt["status"] == 1
    assert h.events(receipt, "PayoutDeferred") == []


def _reentry_events(h: PoolHarness, attacker: Contract, receipt: Any) -> list[dict[str, Any]]:
    from web3.logs import DISCARD

    logs = attacker.events.ReentryAttempt().process_receipt(receipt, errors=DISCARD)
    return [dict(e["args"]) for e in logs]


def test_recipient_reentering_claim_during_payout_is_blocked(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    attacker = _recipient(h, "ReentrantRecipient", h.pool.address)
    reentrant = bytes.fromhex(error_selector(h.pool.abi, "ReentrantCall")[2:])

    # Swallowing the failed re-entry: the payout itself is accepted, once.
    h.send(attacker.functions.configure(1, False), h.owner)
    receipt = h.execute([(attacker.address, ETHER)])
    assert _reentry_events(h, attacker, receipt) == [
        {"mode": 1, "success": False, "returnData": reentrant}
    ]
    assert h.w3.eth.get_balance(attacker.address) == ETHER

    # Bubbling it: the payout is deferred, and a re-entrant claim still pays exactly once.
    h.send(attacker.functions.configure(1, True), h.owner)
    receipt = h.execute([(attacker.address, 2 * ETHER)])
    assert len(h.events(receipt, "PayoutDeferred")) == 1
    assert h.pool.functions.claimable(attacker.address).call() == 2 * ETHER
    # Claiming with a bubbling re-entry reverts the whole claim: nothing moves.
    assert h.send(attacker.functions.claimFromPool(), h.users[3], gas=1_000_000)["status"] == 0
    assert h.pool.functions.claimable(attacker.address).call() == 2 * ETHER
    # With full gas in claim, the re-entrant claim() is refused; the outer claim pays once.
    h.send(attacker.functions.configure(1, False), h.owner)
    receipt = h.send(attacker.functions.claimFromPool(), h.users[3])
    assert receipt["status"] == 1
    assert _reentry_events(h, attacker, receipt) == [
        {"mode": 1, "success": False, "returnData": reentrant}
    ]
    assert h.w3.eth.get_balance(attacker.address) == 3 * ETHER
    assert h.balance() == 17 * ETHER
    assert h.pool.functions.totalClaimable().call() == 0


def test_recipient_reentering_execute_batch_is_blocked(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    attacker = _recipient(h, "ReentrantRecipient", h.pool.address)
    reentrant = bytes.fromhex(error_selector(h.pool.abi, "ReentrantCall")[2:])

    # A second, validly signed batch the attacker replays from inside its receive.
    inner = h.batch([(h.users[1], 5 * ETHER)])
    inner_call = h.pool.encode_abi(
        "executeBatchPayouts", args=[h.as_tuple("PayoutBatch", inner), h.sign("PayoutBatch", inner)]
    )
    h.send(attacker.functions.setPayload(inner_call), h.owner)
    h.send(attacker.functions.configure(2, True), h.owner)

    # During a payout (12,300 gas): the re-entry is refused, the payout deferred.
    outer = h.batch([(attacker.address, ETHER), (h.users[2], ETHER)])
    outer_sig = h.sign("PayoutBatch", outer)
    receipt = h.send(h.batch_fn(outer, outer_sig), h.sender)
    assert receipt["status"] == 1
    assert [e["args"]["recipient"] for e in h.events(receipt, "PayoutDeferred")] == [
        attacker.address
    ]
    assert not h.pool.functions.batchExecuted(inner["batchId"]).call()

    # During a claim (all gas forwarded): refused too; the claim completes once.
    h.send(attacker.functions.configure(2, False), h.owner)
    receipt = h.send(attacker.functions.claimFromPool(), h.users[3])
    assert receipt["status"] == 1
    assert _reentry_events(h, attacker, receipt) == [
        {"mode": 2, "success": False, "returnData": reentrant}
    ]
    assert not h.pool.functions.batchExecuted(inner["batchId"]).call()
    assert h.w3.eth.get_balance(attacker.address) == ETHER

    # The attacker replaying the very batch that pays it, from inside its payout.
    same = h.batch([(attacker.address, ETHER)])
    same_sig = h.sign("PayoutBatch", same)
    same_call = h.pool.encode_abi(
        "executeBatchPayouts", args=[h.as_tuple("PayoutBatch", same), same_sig]
    )
    h.send(attacker.functions.setPayload(same_call), h.owner)
    receipt = h.send(h.batch_fn(same, same_sig), h.sender)
    assert _reentry_events(h, attacker, receipt) == [
        {"mode": 2, "success": False, "returnData": reentrant}
    ]
    assert len(h.events(receipt, "PayoutExecuted")) == 1
    assert h.w3.eth.get_balance(attacker.address) == 2 * ETHER

    # The inner batch was never consumed: it still executes normally, once.
    assert (
        h.send(h.pool.functions.executeBatchPayouts(*inner_call_args(h, inner)), h.sender)["status"]
        == 1
    )
    assert h.pool.functions.batchExecuted(inner["batchId"]).call()
    assert h.balance() == 20 * ETHER - ETHER - ETHER - ETHER - 5 * ETHER


def inner_call_args(h: PoolHarness, batch: dict[str, Any]) -> tuple[Any, bytes]:
    return h.as_tuple("PayoutBatch", batch), h.sign("PayoutBatch", batch)


# ---------------------------------------------------------------- pause


def test_pause_stops_signed_paths_but_not_claims(harness: PoolHarness) -> None:
    h = harness
    fns = h.pool.functions
    h.register(h.users[0], 20 * ETHER)
    rejecting = _recipient(h, "RejectingRecipient", h.pool.address)
    h.execute([(rejecting.address, ETHER)])

    h.expect_revert(fns.pause(), "NotGuardianOrOwner", h.users[0])
    receipt = h.send(fns.pause(), h.guardian)
    assert h.events(receipt, "Paused")[0]["args"]["account"] == h.guardian
    assert fns.paused().call()
    h.expect_revert(fns.pause(), "ContractPaused", h.owner)

    h.expect_revert(
        h.register_fn(h.registration(h.users[1], ETHER)), "ContractPaused", h.users[1], ETHER
    )
    h.expect_revert(
        h.retopup_fn(h.retopup_payload(h.users[0], ETHER)), "ContractPaused", h.users[0], ETHER
    )
    h.expect_revert(h.batch_fn(h.batch([(h.users[1], ETHER)])), "ContractPaused", h.sender)

    # Claims of already-authorised, already-capped amounts stay open.
    h.send(rejecting.functions.setRejecting(False), h.owner)
    assert h.send(rejecting.functions.claimFromPool(), h.users[3])["status"] == 1

    # The guardian cannot lift it; the owner can, after announcing it for the public delay.
    h.expect_revert(fns.proposeUnpause(), "NotOwner", h.guardian)
    receipt = h.unpause()
    assert h.events(receipt, "Unpaused")[0]["args"]["account"] == h.owner
    h.expect_revert(fns.proposeUnpause(), "ContractNotPaused", h.owner)
    h.execute([(h.users[1], ETHER)])
    h.send(fns.pause(), h.owner)  # the owner can pause too
    assert fns.paused().call()


# ---------------------------------------------------------------- outflow cap


def test_cap_exceeded_is_rejected(harness: PoolHarness) -> None:
    h = harness
    h.lower_cap(10 * ETHER)
    h.register(h.users[0], 20 * ETHER)
    h.expect_revert(
        h.batch_fn(h.batch([(h.users[1], 10 * ETHER + 1)])), "OutflowCapExceeded", h.sender
    )
    h.execute([(h.users[1], 6 * ETHER)])
    assert h.pool.functions.availableOutflow().call() == 4 * ETHER
    data = h.expect_revert(
        h.batch_fn(h.batch([(h.users[1], 3 * ETHER), (h.users[2], ETHER + 1)])),
        "OutflowCapExceeded",
        h.sender,
    )
    assert int(data[-64:], 16) == 4 * ETHER  # `available` in the error
    h.execute([(h.users[1], 3 * ETHER), (h.users[2], ETHER)])
    assert h.pool.functions.availableOutflow().call() == 0


def test_deferred_amounts_count_against_the_cap_once(harness: PoolHarness) -> None:
    h = harness
    h.lower_cap(5 * ETHER)
    h.register(h.users[0], 20 * ETHER)
    rejecting = _recipient(h, "RejectingRecipient", h.pool.address)
    h.execute([(rejecting.address, 5 * ETHER)])
    assert h.pool.functions.availableOutflow().call() == 0
    h.send(rejecting.functions.setRejecting(False), h.owner)
    assert h.send(rejecting.functions.claimFromPool(), h.users[3])["status"] == 1
    assert h.pool.functions.availableOutflow().call() == 0


def test_lowering_the_cap_below_recent_outflow_blocks_until_it_rolls_off(
    harness: PoolHarness,
) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    h.execute([(h.users[1], 5 * ETHER)])
    h.lower_cap(3 * ETHER)
    assert h.pool.functions.availableOutflow().call() == 0
    h.expect_revert(h.batch_fn(h.batch([(h.users[1], 1)])), "OutflowCapExceeded", h.sender)


def test_stolen_signer_key_cannot_drain_past_the_cap(harness: PoolHarness) -> None:
    h = harness
    h.lower_cap(10 * ETHER)
    for user in h.users[:5]:
        h.register(user, 20 * ETHER)
    thief = h.users[5]
    stolen = 0
    for _ in range(5):
        batch = h.batch([(thief, 4 * ETHER)])
        receipt = h.send(h.batch_fn(batch), thief, gas=1_000_000)
        if receipt["status"] == 1:
            stolen += 4 * ETHER
    assert stolen == 8 * ETHER
    assert h.balance() == 100 * ETHER - stolen
