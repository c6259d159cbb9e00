"""What the sender does with each typed refusal, from the nodes' own wording (the full table
of messages is tests/chain/test_errors.py): outcome, retry, bump, or stop."""

from __future__ import annotations

import pytest

from backend.chain import errors as e

# (client, message, type, what the sender does)
CASES = [
    ("geth/BSC", "already known", e.AlreadyKnown, "outcome: sent"),
    ("Anvil", "transaction already imported", e.AlreadyKnown, "outcome: sent"),
    ("Hardhat", "Known transaction: 0xf917", e.AlreadyKnown, "outcome: sent"),
    ("Nethermind", "AlreadyKnown", e.AlreadyKnown, "outcome: sent"),
    (
        "Erigon",
        "INTERNAL_ERROR: existing tx with same hash already known",
        e.AlreadyKnown,
        "outcome: sent",
    ),
    ("geth/BSC", "nonce too low: address 0x1, tx: 5 state: 6", e.NonceTooLow, "receipts decide"),
    ("Anvil", "nonce too low", e.NonceTooLow, "receipts decide"),
    (
        "Nethermind",
        "OldNonce, Current nonce: 6, nonce of rejected tx: 5",
        e.NonceTooLow,
        "receipts decide",
    ),
    (
        "Hardhat",
        "Transaction nonce too low. Expected nonce to be at least 1 but got 0.",
        e.NonceTooLow,
        "receipts decide",
    ),
    ("geth/BSC", "replacement transaction underpriced", e.ReplacementUnderpriced, "bump"),
    ("Erigon", "could not replace existing tx", e.ReplacementUnderpriced, "bump"),
    (
        "Hardhat",
        "Replacement transaction underpriced. A gasPrice/maxFeePerGas of at least 1 is necessary",
        e.ReplacementUnderpriced,
        "bump",
    ),
    ("geth/BSC", "transaction underpriced", e.Underpriced, "bump"),
    ("Nethermind", "FeeTooLowToCompete", e.Underpriced, "bump"),
    (
        "geth/BSC",
        "insufficient funds for gas * price + value: address 0x1 have 0 want 5",
        e.InsufficientFunds,
        "halt",
    ),
    ("Anvil", "Insufficient funds for gas * price + value", e.InsufficientFunds, "halt"),
    ("Hardhat", "Sender doesn't have enough funds to send tx.", e.InsufficientFunds, "halt"),
    (
        "Nethermind",
        "InsufficientFunds, Account balance: 0, cumulative cost: 5",
        e.InsufficientFunds,
        "halt",
    ),
    ("geth", "future transaction tries to replace pending", e.NonceTooHigh, "retry"),
    (
        "geth (Osaka)",
        "transaction gas limit too high (cap: 16777216, tx: 20000000)",
        e.InvalidTransaction,
        "stop",
    ),
    ("geth/BSC", "execution reverted", e.Reverted, "stop"),
    (
        "Hardhat",
        "VM Exception while processing transaction: reverted with custom error",
        e.Reverted,
        "stop",
    ),
]


def sender_action(error: e.ChainError) -> str:
    """The sender's decision for a refused broadcast (backend/payouts/sender.py `broadcast`)."""
    if isinstance(error, e.AlreadyKnown):
        return "outcome: sent"
    if isinstance(error, e.NonceTooLow):
        return "receipts decide"
    if isinstance(error, e.ReplacementUnderpriced | e.Underpriced):
        return "bump"
    if isinstance(error, e.InsufficientFunds):
        return "halt"
    return "retry" if error.retryable else "stop"


@pytest.mark.parametrize(("client", "message", "kind", "action"), CASES)
def test_each_refusal_decides_what_the_sender_does(
    client: str, message: str, kind: type[e.ChainError], action: str
) -> None:
    error = e.classify_message(message)
    assert type(error) is kind, f"{client}: {message!r} -> {type(error).__name__}"
    assert sender_action(error) == action
