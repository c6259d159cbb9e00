"""BNB that arrives without a function call (SELFDESTRUCT, sent before deployment) or comes back
from a recipient's own payout is not a liability: `surplus()` shows it apart, the events still
rebuild the ledger exactly, and only a signed batch can spend it (announced by SurplusDrawn)."""

from __future__ import annotations

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.types import TxParams, Wei

from devtools.deploy import deploy_autopool
from tests.contracts.conftest import (
    DEFAULT_CAP,
    ETHER,
    PoolHarness,
    address_of,
    deploy_artifact,
    deploy_bouncer,
    force_send,
)


def _ledger_from_events(h: PoolHarness) -> int:
    """What the events say the contract holds: Σ inflows + Σ SurplusDrawn − Σ outflows."""
    ev = h.pool.events

    def total(name: str) -> int:
        return sum(e["args"]["amount"] for e in getattr(ev, name)().get_logs(from_block=0))

    inflow = total("RegistrationAccepted") + total("RetopupCompleted") + total("SurplusDrawn")
    return inflow - total("PayoutExecuted") - total("Claimed")


def _reconciles(h: PoolHarness) -> None:
    assert h.balance() == _ledger_from_events(h) + h.pool.functions.surplus().call()


def test_bnb_forced_in_by_selfdestruct_is_surplus(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    force_send(h.w3, h.pool.address, 3 * ETHER, sender=h.users[1])
    assert h.balance() == 23 * ETHER
    assert h.pool.functions.surplus().call() == 3 * ETHER
    _reconciles(h)
    # Ordinary batches do not touch it.
    receipt = h.execute([(h.users[2], 20 * ETHER)])
    assert h.events(receipt, "SurplusDrawn") == []
    assert h.pool.functions.surplus().call() == 3 * ETHER
    _reconciles(h)


def test_bnb_sent_to_the_address_before_deployment_is_surplus(
    w3: Web3, dev_keys: tuple[str, ...], chain_snapshot: None
) -> None:
    deployer = address_of(dev_keys[0])
    # The deployment will be the deployer's next transaction but one (funding comes first).
    future = _create_address(deployer, w3.eth.get_transaction_count(deployer) + 1)
    funding: TxParams = {"from": deployer, "to": future, "value": Wei(2 * ETHER)}
    w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(funding))
    pool = deploy_autopool(
        w3,
        dev_keys[0],
        owner=deployer,
        signer=address_of(dev_keys[1]),
        guardian=address_of(dev_keys[2]),
        outflow_cap=DEFAULT_CAP,
    )
    assert pool.address == future
    assert pool.functions.surplus().call() == 2 * ETHER
    assert pool.functions.totalClaimable().call() == 0


def _create_address(sender: str, nonce: int) -> str:
    """CREATE's address: keccak(rlp([sender, nonce]))[12:]."""

    def rlp_int(n: int) -> bytes:
        if n == 0:
            return b"\x80"
        if n < 0x80:
            return bytes([n])
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([0x80 + len(raw)]) + raw

    body = b"\x94" + bytes.fromhex(sender[2:]) + rlp_int(nonce)
    return to_checksum_address(keccak(bytes([0xC0 + len(body)]) + body)[12:])


def test_a_payout_bounced_back_by_its_recipient_is_surplus(harness: PoolHarness) -> None:
    """The recipient took its payout (PayoutExecuted: the ledger line is paid) and sent it back
    by SELFDESTRUCT within the stipend: the BNB is in the contract but owed to nobody."""
    h = harness
    h.register(h.users[0], 20 * ETHER)
    bouncer = deploy_bouncer(h.w3, sender=h.owner)
    receipt = h.execute([(h.users[1], ETHER), (bouncer, 2 * ETHER)])
    assert [e["args"]["recipient"] for e in h.events(receipt, "PayoutExecuted")] == [
        h.users[1],
        bouncer,
    ]
    assert h.events(receipt, "PayoutDeferred") == []
    assert h.w3.eth.get_balance(bouncer) == 0
    assert h.balance() == 19 * ETHER
    assert h.pool.functions.surplus().call() == 2 * ETHER
    _reconciles(h)


def test_a_claim_bounced_back_by_its_recipient_is_surplus(harness: PoolHarness) -> None:
    h = harness
    h.register(h.users[0], 20 * ETHER)
    rejecting = deploy_artifact(
        h.w3, "RejectingRecipient", "test/Recipients", h.pool.address, sender=h.owner
    )
    h.execute([(rejecting.address, 3 * ETHER)])
    bouncer = deploy_bouncer(h.w3, sender=h.owner)
    receipt = h.send(rejecting.functions.claimFromPoolTo(bouncer), h.users[2])
    assert h.events(receipt, "Claimed")[0]["args"]["amount"] == 3 * ETHER
    assert h.pool.functions.totalClaimable().call() == 0
    assert h.pool.functions.surplus().call() == 3 * ETHER
    _reconciles(h)


def test_a_signed_batch_may_spend_the_surplus_and_says_so_but_never_claimables(
    harness: PoolHarness,
) -> None:
    h = harness
    h.register(h.users[0], 10 * ETHER)
    rejecting = deploy_artifact(
        h.w3, "RejectingRecipient", "test/Recipients", h.pool.address, sender=h.owner
    )
    h.execute([(rejecting.address, 4 * ETHER)])  # 4 BNB owed as claimable
    force_send(h.w3, h.pool.address, 5 * ETHER, sender=h.users[1])
    fns = h.pool.functions
    assert (h.balance(), fns.totalClaimable().call(), fns.surplus().call()) == (
        15 * ETHER,
        4 * ETHER,
        5 * ETHER,
    )
    # 6 BNB of event-backed balance is free; 11 BNB needs 5 of surplus, 11 + 1 wei would need
    # the claimables too.
    h.expect_revert(
        h.batch_fn(h.batch([(h.users[2], 11 * ETHER + 1)])), "InsufficientBalance", h.sender
    )
    batch = h.batch([(h.users[2], 11 * ETHER)])
    receipt = h.send(h.batch_fn(batch), h.sender)
    (drawn,) = h.events(receipt, "SurplusDrawn")
    assert dict(drawn["args"]) == {"batchId": batch["batchId"], "amount": 5 * ETHER}
    assert (h.balance(), fns.totalClaimable().call(), fns.surplus().call()) == (
        4 * ETHER,
        4 * ETHER,
        0,
    )
    _reconciles(h)
    h.send(rejecting.functions.setRejecting(False), h.owner)
    assert h.send(rejecting.functions.claimFromPool(), h.users[3])["status"] == 1
    assert h.balance() == 0
    _reconciles(h)
