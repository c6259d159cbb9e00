"""Typed chain errors: each node's own wording of a refusal maps to one type, and a real node
(Anvil) refusing real transactions is classified the same way."""

from __future__ import annotations

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import Web3RPCError

from backend.chain import errors as e

# (client, message as that client words it, the type it means). Sources: geth/BSC
# core/txpool errors; Erigon core/error.go; Nethermind AcceptTxResult; Besu JsonRpcError;
# Anvil and Hardhat read off the nodes themselves (tests below and docs/decisions.md).
MESSAGES = [
    ("geth/BSC", "nonce too low", e.NonceTooLow),
    ("geth/BSC", "nonce too low: address 0xabc, tx: 5 state: 6", e.NonceTooLow),
    ("geth/BSC", "nonce too high", e.NonceTooHigh),
    ("geth/BSC", "replacement transaction underpriced", e.ReplacementUnderpriced),
    ("geth/BSC", "already known", e.AlreadyKnown),
    ("geth (old)", "known transaction: 0x6c3a", e.AlreadyKnown),
    ("geth/BSC", "transaction underpriced", e.Underpriced),
    (
        "geth/BSC",
        "insufficient funds for gas * price + value: address 0x1 have 0 want 5",
        e.InsufficientFunds,
    ),
    ("geth/BSC", "txpool is full", e.PoolFull),
    ("geth/BSC", "tx fee (1.20 ether) exceeds the configured cap (1.00 ether)", e.FeeCapExceeded),
    ("geth/BSC", "intrinsic gas too low", e.InvalidTransaction),
    ("geth/BSC", "exceeds block gas limit", e.InvalidTransaction),
    ("geth/BSC", "gas required exceeds allowance (30000000)", e.OutOfGas),
    ("geth/BSC", "execution reverted", e.Reverted),
    (
        "geth/BSC",
        "max fee per gas less than block base fee: address 0x1, maxFeePerGas: 1",
        e.Underpriced,
    ),
    ("Erigon", "nonce too low", e.NonceTooLow),
    ("Erigon", "replacement transaction underpriced", e.ReplacementUnderpriced),
    ("Erigon", "INTERNAL_ERROR: existing tx with same hash already known", e.AlreadyKnown),
    ("Erigon", "insufficient funds for transfer", e.InsufficientFunds),
    ("Nethermind", "OldNonce, Current nonce: 6, nonce of rejected tx: 5", e.NonceTooLow),
    ("Nethermind", "NonceGap, Future nonce. Expected nonce: 5", e.NonceTooHigh),
    ("Nethermind", "AlreadyKnown", e.AlreadyKnown),
    ("Nethermind", "OwnNonceAlreadyUsed", e.AlreadyKnown),
    (
        "Nethermind",
        "InsufficientFunds, Account balance: 0, cumulative cost: 5",
        e.InsufficientFunds,
    ),
    (
        "Nethermind",
        "FeeTooLow, FeePerGas needs to be higher than 7 to be added to the TxPool.",
        e.Underpriced,
    ),
    ("Nethermind", "FeeTooLowToCompete", e.Underpriced),
    ("Besu", "Nonce too low", e.NonceTooLow),
    ("Besu", "Replacement transaction underpriced", e.ReplacementUnderpriced),
    ("Besu", "Known transaction", e.AlreadyKnown),
    ("Besu", "Upfront cost exceeds account balance", e.InsufficientFunds),
    ("Besu", "Gas price below configured minimum gas price", e.Underpriced),
    ("Anvil", "nonce too low", e.NonceTooLow),
    ("Anvil", "transaction already imported", e.AlreadyKnown),
    ("Anvil", "replacement transaction underpriced", e.ReplacementUnderpriced),
    ("Anvil", "Insufficient funds for gas * price + value", e.InsufficientFunds),
    ("Anvil", "max fee per gas less than block base fee", e.Underpriced),
    ("Anvil", "intrinsic gas too low", e.InvalidTransaction),
    ("Hardhat", "Known transaction: 0xf917", e.AlreadyKnown),
    (
        "Hardhat",
        "Transaction nonce too low. Expected nonce to be at least 1 but got 0.",
        e.NonceTooLow,
    ),
    (
        "Hardhat",
        "Replacement transaction underpriced. A gasPrice/maxFeePerGas of at least 1100000000 is "
        "necessary to replace the existing transaction with nonce 0.",
        e.ReplacementUnderpriced,
    ),
    (
        "Hardhat",
        "Sender doesn't have enough funds to send tx. The max upfront cost is: 21000000000001 "
        "and the sender's balance is: 0.",
        e.InsufficientFunds,
    ),
    ("Hardhat", "Transaction requires at least 21000 gas but got 20000", e.InvalidTransaction),
    ("OpenEthereum", "Transaction nonce is too low. Try incrementing the nonce.", e.NonceTooLow),
    ("provider", "429 Too Many Requests", e.RateLimited),
    ("provider", "daily request count exceeded, request rate limited", e.RateLimited),
]


@pytest.mark.parametrize(("client", "message", "kind"), MESSAGES)
def test_each_clients_wording_maps_to_one_type(
    client: str, message: str, kind: type[e.ChainError]
) -> None:
    error = e.classify_message(message)
    assert type(error) is kind, f"{client}: {message!r} -> {type(error).__name__}"
    assert error.message == message


def test_what_retries_and_what_stops() -> None:
    assert e.ReplacementUnderpriced.retryable and e.RpcTimeout.retryable
    assert e.Underpriced.retryable and e.PoolFull.retryable and e.RpcUnavailable.retryable
    assert not e.InsufficientFunds.retryable and not e.InvalidTransaction.retryable
    assert not e.Reverted.retryable and not e.UnknownChainError.retryable


def test_a_message_no_rule_knows_is_unknown_and_not_retried() -> None:
    error = e.classify_message("the node is having a bad day")
    assert isinstance(error, e.UnknownChainError) and not error.retryable


def test_timeouts_and_unreachable_nodes_are_retryable() -> None:
    assert isinstance(e.classify(TimeoutError()), e.RpcTimeout)
    assert isinstance(e.classify(ConnectionError("refused")), e.RpcUnavailable)


def _send(w3: Web3, raw: bytes) -> e.ChainError:
    with pytest.raises(Web3RPCError) as info:
        w3.eth.send_raw_transaction(raw)
    return e.classify(info.value)


def test_anvil_refusals_are_classified_from_the_real_node(
    w3: Web3, dev_keys: tuple[str, ...], chain_snapshot: None
) -> None:
    acct = Account.from_key(dev_keys[6])
    base = {"to": acct.address, "value": 1, "gas": 21_000, "chainId": w3.eth.chain_id}
    price = int(w3.eth.gas_price) * 2
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        nonce = w3.eth.get_transaction_count(acct.address)
        first = acct.sign_transaction({**base, "nonce": nonce, "gasPrice": price}).raw_transaction
        w3.eth.send_raw_transaction(first)
        assert isinstance(_send(w3, first), e.AlreadyKnown)
        cheaper = acct.sign_transaction({**base, "nonce": nonce, "gasPrice": price, "value": 2})
        assert isinstance(_send(w3, cheaper.raw_transaction), e.ReplacementUnderpriced)
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        stale = acct.sign_transaction({**base, "nonce": nonce, "gasPrice": price * 2, "value": 3})
        assert isinstance(_send(w3, stale.raw_transaction), e.NonceTooLow)
        poor = Account.create()
        broke = poor.sign_transaction({**base, "nonce": 0, "gasPrice": price})
        assert isinstance(_send(w3, broke.raw_transaction), e.InsufficientFunds)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


def test_a_custom_error_of_the_contract_is_decoded(
    w3: Web3, dev_keys: tuple[str, ...], chain_snapshot: None
) -> None:
    from devtools.deploy import deploy_autopool

    owner = Account.from_key(dev_keys[0]).address
    pool = deploy_autopool(
        w3, dev_keys[0], owner=owner, signer=owner, guardian=owner, outflow_cap=10**18
    )
    with pytest.raises(Exception) as info:
        pool.functions.claim().call({"from": owner})
    error = e.classify(info.value)
    assert isinstance(error, e.Reverted)
    assert error.error == "NothingToClaim"
