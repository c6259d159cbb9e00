"""The owner key is bounded: every change that could let more leave the contract waits a public
delay and the guardian can cancel it; the guardian's pause holds; ownership and an unset guardian
behave (docs/contract.md, "Trust model")."""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3, Web3
from web3.exceptions import ContractCustomError

from backend.chain.events import EventDecoder
from devtools.deploy import deploy_autopool
from tests.contracts.conftest import (
    DEFAULT_CAP,
    ETHER,
    GUARDIAN,
    OUTFLOW_CAP,
    SIGNER,
    UNPAUSE,
    PoolHarness,
    address_of,
    error_selector,
    fresh_address,
)

MAX_CAP = 2**128 - 1
HOURS = 3600
ZERO = "0x" + "00" * 20


def _revert_data(fn: Any, sender: str) -> str:
    with pytest.raises(ContractCustomError) as info:
        fn.call({"from": sender})
    return str(info.value.data)


def _mined_in_one_block(h: PoolHarness, calls: list[tuple[Any, str]]) -> list[Any]:
    """Send `calls` (function, sender) with automining off, then mine them in one block."""
    h.rpc("evm_setAutomine", [False])
    try:
        hashes = [fn.transact({"from": sender, "gas": 1_000_000}) for fn, sender in calls]
        h.rpc("evm_mine", [])
    finally:
        h.rpc("evm_setAutomine", [True])
    return [h.w3.eth.wait_for_transaction_receipt(tx) for tx in hashes]


def test_owner_key_drain_in_one_block_fails_until_the_delay_passes(
    harness: PoolHarness, dev_keys: tuple[str, ...]
) -> None:
    """The review's attack: the owner makes its own key the signer, lifts the cap and signs a
    batch paying itself the pool, all in one block. Each change is only proposed; the batch
    signed by the owner's key is refused."""
    h = harness
    fns = h.pool.functions
    h.lower_cap(10 * ETHER)
    for user in h.users[:5]:
        h.register(user, 20 * ETHER)
    owner_key = dev_keys[0]
    drain = h.batch([(h.owner, h.balance())])
    receipts = _mined_in_one_block(
        h,
        [
            (fns.proposeSigner(h.owner), h.owner),
            (fns.executeChange(SIGNER), h.owner),
            (fns.proposeOutflowCap(MAX_CAP), h.owner),
            (fns.executeChange(OUTFLOW_CAP), h.owner),
            (h.batch_fn(drain, h.sign("PayoutBatch", drain, key=owner_key)), h.owner),
        ],
    )
    assert len({r["blockNumber"] for r in receipts}) == 1
    assert [r["status"] for r in receipts] == [1, 0, 1, 0, 0]
    assert h.balance() == 100 * ETHER
    assert fns.signer().call() == address_of(h.signer_key)
    assert fns.outflowCap().call() == 10 * ETHER
    # Why each failed, in the state that block left.
    for fn, error in (
        (fns.executeChange(SIGNER), "ChangeNotReady"),
        (fns.executeChange(OUTFLOW_CAP), "ChangeNotReady"),
    ):
        assert _revert_data(fn, h.owner).startswith(error_selector(h.pool.abi, error))
    h.expect_revert(
        h.batch_fn(drain, h.sign("PayoutBatch", drain, key=owner_key)),
        "UnauthorizedSigner",
        h.owner,
    )
    # Both proposals are public, with the moment they could take effect.
    proposed = [h.events(r, "ChangeProposed") for r in receipts]
    assert [(e["args"]["change"], e["args"]["value"]) for es in proposed for e in es] == [
        (SIGNER, int(h.owner, 16)),
        (OUTFLOW_CAP, MAX_CAP),
    ]
    proposed_at = int(h.w3.eth.get_block(receipts[0]["blockNumber"])["timestamp"])
    assert all(e["args"]["executableAt"] == proposed_at + h.delay for es in proposed for e in es)


def test_guardian_cancels_the_owner_drain_sequence(
    harness: PoolHarness, dev_keys: tuple[str, ...]
) -> None:
    h = harness
    fns = h.pool.functions
    h.lower_cap(10 * ETHER)
    h.register(h.users[0], 50 * ETHER)
    h.send(fns.proposeSigner(h.owner), h.owner)
    h.send(fns.proposeOutflowCap(MAX_CAP), h.owner)

    for change in (SIGNER, OUTFLOW_CAP):
        h.expect_revert(fns.cancelChange(change), "NotGuardianOrOwner", h.users[0])
        receipt = h.send(fns.cancelChange(change), h.guardian)
        (cancelled,) = h.events(receipt, "ChangeCancelled")
        assert dict(cancelled["args"]) == {"change": change, "by": h.guardian}
        assert fns.pendingChange(change).call() == [0, 0]
        h.expect_revert(fns.cancelChange(change), "NoPendingChange", h.guardian)

    h.warp(h.delay + 1)
    for change in (SIGNER, OUTFLOW_CAP):
        h.expect_revert(fns.executeChange(change), "NoPendingChange", h.owner)
    drain = h.batch([(h.owner, 50 * ETHER)])
    h.expect_revert(
        h.batch_fn(drain, h.sign("PayoutBatch", drain, key=dev_keys[0])),
        "UnauthorizedSigner",
        h.owner,
    )
    assert h.balance() == 50 * ETHER
    # A cancelled change can only come back as a new proposal, with a new full delay.
    receipt = h.send(fns.proposeSigner(h.owner), h.owner)
    assert h.events(receipt, "ChangeProposed")[0]["args"]["executableAt"] == h.now() + h.delay
    h.expect_revert(fns.executeChange(SIGNER), "ChangeNotReady", h.owner)


def test_an_unchallenged_change_takes_effect_exactly_when_the_delay_has_passed(
    harness: PoolHarness,
) -> None:
    h = harness
    fns = h.pool.functions
    start = h.now() + 100
    h.rpc("evm_setNextBlockTimestamp", [start])
    h.send(fns.proposeOutflowCap(DEFAULT_CAP + 1), h.owner)
    h.rpc("evm_setNextBlockTimestamp", [start + h.delay - 1])
    assert h.send(fns.executeChange(OUTFLOW_CAP), h.owner, gas=200_000)["status"] == 0
    h.rpc("evm_setNextBlockTimestamp", [start + h.delay])
    # An explicit gas limit: estimating would run at the previous block's time.
    receipt = h.send(fns.executeChange(OUTFLOW_CAP), h.owner, gas=200_000)
    assert receipt["status"] == 1
    assert h.events(receipt, "ChangeExecuted")[0]["args"]["value"] == DEFAULT_CAP + 1
    assert fns.outflowCap().call() == DEFAULT_CAP + 1


def test_one_pending_change_of_each_kind_and_the_owner_may_withdraw_its_own(
    harness: PoolHarness,
) -> None:
    h = harness
    fns = h.pool.functions
    h.send(fns.proposeSigner(fresh_address()), h.owner)
    h.expect_revert(fns.proposeSigner(fresh_address()), "ChangeAlreadyPending", h.owner)
    receipt = h.send(fns.cancelChange(SIGNER), h.owner)
    assert h.events(receipt, "ChangeCancelled")[0]["args"]["by"] == h.owner
    h.send(fns.proposeSigner(fresh_address()), h.owner)
    h.expect_revert(fns.proposeUnpause(), "ContractNotPaused", h.owner)


def test_guardian_can_veto_its_own_replacement(harness: PoolHarness) -> None:
    """Otherwise the owner could first replace the guardian and then pass anything: the veto
    covers guardian changes too (the price: a stolen guardian key can block changes; it can
    never move funds)."""
    h = harness
    fns = h.pool.functions
    h.send(fns.proposeGuardian(h.owner), h.owner)
    h.send(fns.cancelChange(GUARDIAN), h.guardian)
    h.warp(h.delay + 1)
    h.expect_revert(fns.executeChange(GUARDIAN), "NoPendingChange", h.owner)
    assert fns.guardian().call() == h.guardian


def test_guardian_pause_holds_while_a_change_matures(
    harness: PoolHarness, dev_keys: tuple[str, ...]
) -> None:
    """The guardian pauses instead of cancelling, late in the delay. The owner may still
    execute the matured rotation, but lifting the pause needs a new proposal and a full delay,
    which the guardian cancels; meanwhile nothing the new key signs executes."""
    h = harness
    fns = h.pool.functions
    h.register(h.users[0], 30 * ETHER)
    h.send(fns.proposeSigner(h.owner), h.owner)
    h.warp(h.delay - 5)
    h.send(fns.pause(), h.guardian)
    h.warp(10)
    h.send(fns.executeChange(SIGNER), h.owner)  # allowed while paused
    assert fns.signer().call() == h.owner
    drain = h.batch([(h.owner, 30 * ETHER)])
    drain_sig = h.sign("PayoutBatch", drain, key=dev_keys[0])
    h.expect_revert(h.batch_fn(drain, drain_sig), "ContractPaused", h.owner)

    for _ in range(2):
        receipt = h.send(fns.proposeUnpause(), h.owner)
        (proposed,) = h.events(receipt, "ChangeProposed")
        assert proposed["args"]["change"] == UNPAUSE
        assert proposed["args"]["executableAt"] == h.now() + h.delay
        h.expect_revert(fns.executeChange(UNPAUSE), "ChangeNotReady", h.owner)
        h.warp(h.delay // 2)
        h.send(fns.cancelChange(UNPAUSE), h.guardian)
        h.warp(h.delay)
        h.expect_revert(fns.executeChange(UNPAUSE), "NoPendingChange", h.owner)
        assert fns.paused().call()
        h.expect_revert(h.batch_fn(drain, drain_sig), "ContractPaused", h.owner)
    assert h.balance() == 30 * ETHER


def test_a_leaked_signer_is_replaced_while_paused(harness: PoolHarness) -> None:
    """The intended use: pause at once, announce the new signer and the unpause together,
    execute both after the delay; the leaked key's batches never run in between."""
    h = harness
    fns = h.pool.functions
    h.register(h.users[0], 30 * ETHER)
    leaked = h.batch([(h.users[5], 10 * ETHER)])
    leaked_sig = h.sign("PayoutBatch", leaked)
    h.send(fns.pause(), h.guardian)
    new_key = "0x" + "44" * 32
    h.send(fns.proposeSigner(address_of(new_key)), h.owner)
    h.send(fns.proposeUnpause(), h.owner)
    h.warp(h.delay)
    h.expect_revert(h.batch_fn(leaked, leaked_sig), "ContractPaused", h.users[5])
    h.send(fns.executeChange(SIGNER), h.owner)
    h.send(fns.executeChange(UNPAUSE), h.owner)
    assert not fns.paused().call()
    h.expect_revert(h.batch_fn(leaked, leaked_sig), "UnauthorizedSigner", h.users[5])
    fresh = h.batch([(h.users[1], ETHER)])
    assert h.send(h.batch_fn(fresh, h.sign("PayoutBatch", fresh, key=new_key)), h.sender)["status"]


def test_rotating_back_to_an_old_signer_does_not_revive_its_payloads(
    w3: Web3, dev_keys: tuple[str, ...], chain_snapshot: None
) -> None:
    """With the mainnet delay (48 h) and the signer's deadline window (1 h): by the time a
    rotation back to key A can execute, every payload A signed before is past its deadline.
    (Payloads A signed and that executed stay spent: nonces and batch ids are never reset.)"""
    owner, signer_a = address_of(dev_keys[0]), dev_keys[1]
    pool = deploy_autopool(
        w3,
        dev_keys[0],
        owner=owner,
        signer=address_of(signer_a),
        guardian=address_of(dev_keys[2]),
        outflow_cap=DEFAULT_CAP,
        delay_seconds=48 * HOURS,
    )
    users = [address_of(k) for k in dev_keys[4:]]
    h = PoolHarness(w3, pool, owner, signer_a, address_of(dev_keys[2]), users[5], users)
    h.register(users[0], 50 * ETHER)
    old_reg = h.registration(users[1], ETHER, deadline=h.now() + HOURS)
    old_reg_sig = h.sign("Registration", old_reg)
    old_batch = h.batch([(users[2], 10 * ETHER)], deadline=h.now() + HOURS)
    old_batch_sig = h.sign("PayoutBatch", old_batch)
    spent = h.batch([(users[3], ETHER)])
    spent_sig = h.sign("PayoutBatch", spent)
    h.send(h.batch_fn(spent, spent_sig), h.sender)

    key_b = "0x" + "55" * 32
    h.rotate_signer(key_b)  # proposal + 48 h
    h.apply_change(pool.functions.proposeSigner(address_of(signer_a)), SIGNER)  # + 48 h
    assert pool.functions.signer().call() == address_of(signer_a)
    assert h.now() >= old_batch["deadline"] + 95 * HOURS  # two full delays since signing

    h.expect_revert(h.register_fn(old_reg, old_reg_sig), "DeadlineExpired", users[1], ETHER)
    h.expect_revert(h.batch_fn(old_batch, old_batch_sig), "DeadlineExpired", h.sender)
    h.expect_revert(h.batch_fn(spent, spent_sig), "BatchAlreadyExecuted", h.sender)
    h.register(users[1], ETHER)  # what A signs now is valid again, as it should be


def test_ownership_transfer_can_be_cancelled(harness: PoolHarness) -> None:
    h = harness
    fns = h.pool.functions
    candidate, other = h.users[0], h.users[1]
    h.send(fns.transferOwnership(candidate), h.owner)
    receipt = h.send(fns.transferOwnership(ZERO), h.owner)
    (started,) = h.events(receipt, "OwnershipTransferStarted")
    assert dict(started["args"]) == {"previous": h.owner, "next": ZERO}
    assert fns.pendingOwner().call() == ZERO
    h.expect_revert(fns.acceptOwnership(), "NotPendingOwner", candidate)
    # Replacing the candidate cancels the first one too.
    h.send(fns.transferOwnership(candidate), h.owner)
    h.send(fns.transferOwnership(other), h.owner)
    h.expect_revert(fns.acceptOwnership(), "NotPendingOwner", candidate)
    assert fns.owner().call() == h.owner
    # Pending changes belong to the contract, not to an owner: the new owner inherits the
    # duty to execute or withdraw them, and the guardian's veto still applies.
    h.send(fns.proposeOutflowCap(DEFAULT_CAP + 1), h.owner)
    h.send(fns.acceptOwnership(), other)
    h.warp(h.delay)
    h.expect_revert(fns.executeChange(OUTFLOW_CAP), "NotOwner", h.owner)
    h.send(fns.cancelChange(OUTFLOW_CAP), h.guardian)
    h.expect_revert(fns.executeChange(OUTFLOW_CAP), "NoPendingChange", other)


def test_an_unset_guardian_is_nobody(
    w3: Web3, dev_keys: tuple[str, ...], chain_snapshot: None
) -> None:
    """With no guardian, pausing and cancelling are the owner's alone: no address (not even a
    call simulated from the zero address) acts as guardian, and changes still wait the delay."""
    owner = address_of(dev_keys[0])
    pool = deploy_autopool(
        w3,
        dev_keys[0],
        owner=owner,
        signer=address_of(dev_keys[1]),
        guardian=ZERO,
        outflow_cap=DEFAULT_CAP,
    )
    users = [address_of(k) for k in dev_keys[4:]]
    h = PoolHarness(w3, pool, owner, dev_keys[1], to_checksum_address(ZERO), users[5], users)
    fns = pool.functions
    assert fns.guardian().call() == ZERO
    for sender in (users[0], ZERO):
        assert _revert_data(fns.pause(), sender).startswith(
            error_selector(pool.abi, "NotGuardianOrOwner")
        )
    h.send(fns.proposeSigner(users[0]), owner)
    for sender in (users[0], ZERO):
        assert _revert_data(fns.cancelChange(SIGNER), sender).startswith(
            error_selector(pool.abi, "NotGuardianOrOwner")
        )
    h.expect_revert(fns.executeChange(SIGNER), "ChangeNotReady", owner)
    h.send(fns.cancelChange(SIGNER), owner)
    assert h.send(fns.pause(), owner)["status"] == 1
    # Setting a guardian is itself a delayed change.
    h.apply_change(fns.proposeGuardian(users[1]), GUARDIAN)
    assert h.send(fns.proposeSigner(users[0]), owner)["status"] == 1
    assert h.send(fns.cancelChange(SIGNER), users[1])["status"] == 1


def test_unsetting_the_guardian_is_delayed_and_vetoable(harness: PoolHarness) -> None:
    h = harness
    fns = h.pool.functions
    h.send(fns.proposeGuardian(ZERO), h.owner)
    h.expect_revert(fns.executeChange(GUARDIAN), "ChangeNotReady", h.owner)
    h.send(fns.cancelChange(GUARDIAN), h.guardian)
    receipt = h.apply_change(fns.proposeGuardian(ZERO), GUARDIAN)
    assert h.events(receipt, "GuardianSet")[0]["args"]["guardian"] == ZERO
    h.expect_revert(fns.pause(), "NotGuardianOrOwner", h.guardian)


def test_change_delay_is_at_least_48_hours_on_bsc_mainnet_and_at_most_30_days(
    w3: Web3, dev_keys: tuple[str, ...], chain_snapshot: None
) -> None:
    def deploy(delay: int) -> Any:
        return deploy_autopool(
            w3,
            dev_keys[0],
            owner=address_of(dev_keys[0]),
            signer=address_of(dev_keys[1]),
            guardian=address_of(dev_keys[2]),
            outflow_cap=DEFAULT_CAP,
            delay_seconds=delay,
        )

    def refused(delay: int) -> str:
        with pytest.raises(ContractCustomError) as info:
            deploy(delay)
        return str(info.value.data)

    selector = error_selector(deploy(60).abi, "InvalidChangeDelay")
    assert refused(30 * 24 * HOURS + 1) == selector + f"{30 * 24 * HOURS + 1:064x}"
    assert deploy(30 * 24 * HOURS).functions.changeDelay().call() == 30 * 24 * HOURS
    local = w3.eth.chain_id
    w3.provider.make_request("anvil_setChainId", [56])  # type: ignore[arg-type]
    try:
        assert refused(60) == selector + f"{60:064x}"
        assert refused(48 * HOURS - 1).startswith(selector)
        assert deploy(48 * HOURS).functions.changeDelay().call() == 48 * HOURS
    finally:
        w3.provider.make_request("anvil_setChainId", [local])  # type: ignore[arg-type]


def test_every_admin_step_is_an_event_the_listener_decodes(harness: PoolHarness) -> None:
    """The listener stores every AutoPool event it can decode (listener/sync.py); each step of
    a delayed change, a cancellation and a surplus draw must be among them."""
    h = harness
    fns = h.pool.functions
    receipts = [
        h.send(fns.proposeSigner(h.users[0]), h.owner),
        h.send(fns.cancelChange(SIGNER), h.guardian),
        h.send(fns.pause(), h.guardian),
        h.send(fns.proposeUnpause(), h.owner),
    ]
    h.warp(h.delay)
    receipts.append(h.send(fns.executeChange(UNPAUSE), h.owner))
    receipts.append(h.lower_cap(DEFAULT_CAP - 1))
    url = h.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    decoder = EventDecoder(AsyncWeb3(AsyncHTTPProvider(url)), h.pool.address)
    decoded = [decoder.decode(log) for r in receipts for log in r["logs"]]
    names = [d[0] for d in decoded if d is not None]
    assert names == [
        "ChangeProposed",
        "ChangeCancelled",
        "Paused",
        "ChangeProposed",
        "Unpaused",
        "ChangeExecuted",
        "OutflowCapSet",
    ]
    assert decoded[0] is not None and decoded[0][1] == {
        "change": str(SIGNER),
        "value": str(int(h.users[0], 16)),
        "executableAt": decoded[0][1]["executableAt"],
    }
    abi_events = {i["name"] for i in h.pool.abi if i.get("type") == "event"}
    assert (
        {"ChangeProposed", "ChangeCancelled", "ChangeExecuted", "SurplusDrawn"}
        <= set(decoder.by_topic.values())
        == abi_events
    )
