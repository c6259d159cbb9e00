"""AutoPool happy paths: what each entry point accepts, what it emits, and the admin surface."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from web3.exceptions import Web3RPCError
from web3.types import TxParams, Wei

from backend.chain import typed_data
from tests.contracts.conftest import (
    ETHER,
    GUARDIAN,
    OUTFLOW_CAP,
    PLAN_HASH,
    SIGNER,
    UNPAUSE,
    PoolHarness,
    abi_items,
    deploy_artifact,
)


def test_typehashes_equal_the_backend_type_strings(harness: PoolHarness) -> None:
    fns = harness.pool.functions
    assert fns.REGISTRATION_TYPEHASH().call() == keccak(text=typed_data.REGISTRATION_TYPE)
    assert fns.RETOPUP_TYPEHASH().call() == keccak(text=typed_data.RETOPUP_TYPE)
    assert fns.PAYOUT_TYPEHASH().call() == keccak(text=typed_data.PAYOUT_TYPE)
    assert fns.PAYOUT_BATCH_TYPEHASH().call() == keccak(text=typed_data.PAYOUT_BATCH_TYPE)


def test_digests_equal_eth_account_eip712_hashes(harness: PoolHarness) -> None:
    h = harness
    cases = [
        ("Registration", h.registration(h.users[0]), h.pool.functions.registrationDigest),
        ("Retopup", h.retopup_payload(h.users[0]), h.pool.functions.retopupDigest),
        (
            "PayoutBatch",
            h.batch([(h.users[1], 3), (h.users[2], 5 * ETHER)]),
            h.pool.functions.payoutBatchDigest,
        ),
    ]
    for primary, msg, view in cases:
        signable = encode_typed_data(full_message=typed_data.full_message(h.domain, primary, msg))
        expected = keccak(b"\x19" + signable.version + signable.header + signable.body)
        assert view(h.as_tuple(primary, msg)).call() == expected, primary


def test_domain_separator_commits_to_name_version_chain_and_contract(harness: PoolHarness) -> None:
    h = harness
    domain_type = keccak(
        text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    encoded = (
        domain_type
        + keccak(text="AutoPool")
        + keccak(text="1")
        + h.w3.eth.chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(h.pool.address[2:])
    )
    assert h.pool.functions.DOMAIN_SEPARATOR().call() == keccak(encoded)


def test_constructor_sets_roles_and_emits_admin_state(harness: PoolHarness) -> None:
    h = harness
    fns = h.pool.functions
    assert fns.owner().call() == h.owner
    assert fns.signer().call() == Account.from_key(h.signer_key).address
    assert fns.guardian().call() == h.guardian
    assert fns.paused().call() is False
    assert fns.outflowCap().call() == 10_000 * ETHER
    assert fns.availableOutflow().call() == 10_000 * ETHER
    assert fns.changeDelay().call() == 60  # deploy_autopool's devnet/test default
    assert fns.surplus().call() == 0
    for change in (SIGNER, OUTFLOW_CAP, GUARDIAN, UNPAUSE):
        assert fns.pendingChange(change).call() == [0, 0]


def test_register_accepts_signed_payload_and_emits_the_ledger_fields(harness: PoolHarness) -> None:
    h = harness
    user, referrer = h.users[0], h.users[1]
    msg = h.registration(user, 20 * ETHER, referrer=referrer, slot=7)
    receipt = h.send(h.register_fn(msg), user, 20 * ETHER)
    assert receipt["status"] == 1
    (event,) = h.events(receipt, "RegistrationAccepted")
    assert dict(event["args"]) == {
        "user": user,
        "referrer": referrer,
        "slot": 7,
        "amount": 20 * ETHER,
        "planHash": PLAN_HASH,
        "nonce": msg["nonce"],
    }
    assert h.balance() == 20 * ETHER
    assert h.pool.functions.isNonceUsed(msg["nonce"]).call()
    word = h.pool.functions.nonceBitmap(msg["nonce"] >> 8).call()
    assert word == 1 << (msg["nonce"] & 255)


def test_deadline_equal_to_block_time_is_still_valid(harness: PoolHarness) -> None:
    h = harness
    at = h.now() + 100
    msg = h.registration(h.users[0], ETHER, deadline=at)
    h.w3.provider.make_request("evm_setNextBlockTimestamp", [at])  # type: ignore[arg-type]
    assert h.send(h.register_fn(msg), h.users[0], ETHER)["status"] == 1


def test_retopup_accepts_signed_payload_and_emits_the_ledger_fields(harness: PoolHarness) -> None:
    h = harness
    msg = h.retopup_payload(h.users[0], 40 * ETHER)
    receipt = h.send(h.retopup_fn(msg), h.users[0], 40 * ETHER)
    (event,) = h.events(receipt, "RetopupCompleted")
    assert dict(event["args"]) == {
        "user": h.users[0],
        "amount": 40 * ETHER,
        "planHash": PLAN_HASH,
        "nonce": msg["nonce"],
    }


def test_batch_pays_every_recipient_and_summarises(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    before = [h.w3.eth.get_balance(u) for u in h.users[1:4]]
    msg = h.batch([(h.users[1], ETHER), (h.users[2], 2 * ETHER), (h.users[3], 3 * ETHER)])
    receipt = h.send(h.batch_fn(msg), h.sender)
    paid = [dict(e["args"]) for e in h.events(receipt, "PayoutExecuted")]
    assert paid == [
        {"batchId": msg["batchId"], "recipient": h.users[i + 1], "amount": (i + 1) * ETHER}
        for i in range(3)
    ]
    (summary,) = h.events(receipt, "BatchExecuted")
    assert dict(summary["args"]) == {
        "batchId": msg["batchId"],
        "paidTotal": 6 * ETHER,
        "deferredTotal": 0,
        "recipientCount": 3,
    }
    after = [h.w3.eth.get_balance(u) for u in h.users[1:4]]
    assert [a - b for a, b in zip(after, before, strict=True)] == [ETHER, 2 * ETHER, 3 * ETHER]
    assert h.balance() == 14 * ETHER
    assert h.pool.functions.batchExecuted(msg["batchId"]).call()
    assert h.pool.functions.availableOutflow().call() == 10_000 * ETHER - 6 * ETHER


def test_anyone_may_submit_a_signed_batch(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    msg = h.batch([(h.users[1], ETHER)])
    assert h.send(h.batch_fn(msg), h.users[5])["status"] == 1


def test_plain_bnb_transfer_is_refused(harness: PoolHarness) -> None:
    h = harness
    try:
        tx: TxParams = {
            "from": h.users[0],
            "to": h.pool.address,
            "value": Wei(ETHER),
            "gas": 100_000,
        }
        receipt = h.w3.eth.wait_for_transaction_receipt(h.w3.eth.send_transaction(tx))
        assert receipt["status"] == 0
    except Web3RPCError:
        pass
    assert h.balance() == 0


def test_signer_rotation_is_proposed_then_executed_after_the_delay(harness: PoolHarness) -> None:
    h = harness
    fns = h.pool.functions
    new_signer = Account.from_key("0x" + "22" * 32).address
    h.expect_revert(fns.proposeSigner(new_signer), "NotOwner", h.users[0])
    h.expect_revert(fns.proposeSigner(h.guardian), "NotOwner", h.guardian)
    h.expect_revert(fns.proposeSigner("0x" + "00" * 20), "ZeroAddress", h.owner)
    receipt = h.send(fns.proposeSigner(new_signer), h.owner)
    (proposed,) = h.events(receipt, "ChangeProposed")
    executable_at = h.now() + h.delay
    assert dict(proposed["args"]) == {
        "change": SIGNER,
        "value": int(new_signer, 16),
        "executableAt": executable_at,
    }
    assert fns.pendingChange(SIGNER).call() == [int(new_signer, 16), executable_at]
    assert fns.signer().call() == Account.from_key(h.signer_key).address
    h.expect_revert(fns.proposeSigner(new_signer), "ChangeAlreadyPending", h.owner)
    h.expect_revert(fns.executeChange(SIGNER), "NotOwner", h.guardian)

    h.warp(h.delay)
    receipt = h.send(fns.executeChange(SIGNER), h.owner)
    (event,) = h.events(receipt, "SignerRotated")
    assert dict(event["args"]) == {
        "previous": Account.from_key(h.signer_key).address,
        "next": new_signer,
    }
    (executed,) = h.events(receipt, "ChangeExecuted")
    assert dict(executed["args"]) == {"change": SIGNER, "value": int(new_signer, 16)}
    assert fns.signer().call() == new_signer
    assert fns.pendingChange(SIGNER).call() == [0, 0]
    h.expect_revert(fns.executeChange(SIGNER), "NoPendingChange", h.owner)


def test_lowering_the_cap_is_immediate_and_raising_it_waits(harness: PoolHarness) -> None:
    h = harness
    fns = h.pool.functions
    h.expect_revert(fns.lowerOutflowCap(1), "NotOwner", h.guardian)
    receipt = h.lower_cap(5 * ETHER)
    assert h.events(receipt, "OutflowCapSet")[0]["args"]["cap"] == 5 * ETHER
    assert fns.availableOutflow().call() == 5 * ETHER
    h.expect_revert(fns.lowerOutflowCap(5 * ETHER + 1), "CapNotLowered", h.owner)
    h.expect_revert(fns.proposeOutflowCap(5 * ETHER), "CapNotRaised", h.owner)
    h.expect_revert(fns.proposeOutflowCap(2**128), "CapTooLarge", h.owner)
    h.expect_revert(fns.proposeOutflowCap(6 * ETHER), "NotOwner", h.guardian)
    h.send(fns.proposeOutflowCap(6 * ETHER), h.owner)
    assert fns.outflowCap().call() == 5 * ETHER
    h.warp(h.delay)
    receipt = h.send(fns.executeChange(OUTFLOW_CAP), h.owner)
    assert h.events(receipt, "OutflowCapSet")[0]["args"]["cap"] == 6 * ETHER
    assert fns.availableOutflow().call() == 6 * ETHER


def test_guardian_change_waits_the_delay(harness: PoolHarness) -> None:
    h = harness
    fns = h.pool.functions
    h.expect_revert(fns.proposeGuardian(h.users[0]), "NotOwner", h.guardian)
    receipt = h.apply_change(fns.proposeGuardian(h.users[0]), GUARDIAN)
    assert h.events(receipt, "GuardianSet")[0]["args"]["guardian"] == h.users[0]
    assert fns.guardian().call() == h.users[0]


def test_ownership_moves_in_two_steps(harness: PoolHarness) -> None:
    h = harness
    fns = h.pool.functions
    new_owner = h.users[0]
    h.expect_revert(fns.transferOwnership(new_owner), "NotOwner", new_owner)
    h.send(fns.transferOwnership(new_owner), h.owner)
    assert fns.owner().call() == h.owner
    assert fns.pendingOwner().call() == new_owner
    h.expect_revert(fns.acceptOwnership(), "NotPendingOwner", h.users[1])
    receipt = h.send(fns.acceptOwnership(), new_owner)
    (event,) = h.events(receipt, "OwnershipTransferred")
    assert dict(event["args"]) == {"previous": h.owner, "next": new_owner}
    assert fns.owner().call() == new_owner
    h.expect_revert(fns.lowerOutflowCap(1), "NotOwner", h.owner)


def test_owner_has_no_function_that_moves_funds(harness: PoolHarness) -> None:
    """The ABI is the whole surface: only batches and claims send BNB out."""
    names = {i["name"] for i in abi_items(harness.pool) if i.get("type") == "function"}
    mutating = {
        i["name"]
        for i in abi_items(harness.pool)
        if i.get("type") == "function" and i["stateMutability"] in ("nonpayable", "payable")
    }
    assert mutating == {
        "register",
        "retopup",
        "executeBatchPayouts",
        "claim",
        "claimTo",
        "proposeSigner",
        "proposeOutflowCap",
        "proposeGuardian",
        "proposeUnpause",
        "executeChange",
        "cancelChange",
        "lowerOutflowCap",
        "pause",
        "transferOwnership",
        "acceptOwnership",
    }
    assert not any(i.get("type") in ("receive", "fallback") for i in abi_items(harness.pool))
    assert "withdraw" not in names and "rescue" not in names


def test_proxy_wallet_is_paid_directly_under_the_stipend(harness: PoolHarness) -> None:
    """A Safe-like proxy (cold SLOAD + cold DELEGATECALL + event) fits in 12,300 gas."""
    h = harness
    impl = deploy_artifact(h.w3, "WalletImplementation", "test/Recipients", sender=h.owner)
    wallet = deploy_artifact(h.w3, "ProxyWallet", "test/Recipients", impl.address, sender=h.owner)
    h.register(h.users[0], 5 * ETHER)
    receipt = h.execute([(wallet.address, ETHER), (h.users[1], ETHER)])
    assert h.events(receipt, "PayoutDeferred") == []
    assert [e["args"]["recipient"] for e in h.events(receipt, "PayoutExecuted")] == [
        wallet.address,
        h.users[1],
    ]
    assert h.w3.eth.get_balance(wallet.address) == ETHER
