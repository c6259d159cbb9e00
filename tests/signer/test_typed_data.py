"""The fast digest path agrees with eth-account's generic EIP-712 encoder."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.chain.typed_data import (
    PAYOUT_BATCH_TYPEHASH,
    REGISTRATION_TYPEHASH,
    Domain,
    DomainHasher,
    TypedDataError,
    _keccak_reference,
    encode_message,
    full_message,
    keccak256,
    parse_address,
    to_checksum_address,
)

DOMAIN = Domain(chain_id=31337, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
HASHER = DomainHasher(DOMAIN)

uint256 = st.integers(min_value=0, max_value=2**256 - 1)
address = st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b))
bytes32 = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())

registrations = st.fixed_dictionaries(
    {
        "user": address,
        "referrer": address,
        "slot": uint256,
        "amount": uint256,
        "planHash": bytes32,
        "nonce": uint256,
        "deadline": uint256,
    }
)
retopups = st.fixed_dictionaries(
    {"user": address, "amount": uint256, "planHash": bytes32, "nonce": uint256, "deadline": uint256}
)
batches = st.fixed_dictionaries(
    {
        "batchId": uint256,
        "payouts": st.lists(
            st.fixed_dictionaries({"recipient": address, "amount": uint256}), max_size=8
        ),
        "nonce": uint256,
        "deadline": uint256,
    }
)


def reference_digest(primary_type: str, message: dict[str, Any]) -> bytes:
    signable = encode_typed_data(full_message=full_message(DOMAIN, primary_type, message))
    return keccak256(b"\x19" + signable.version + signable.header + signable.body)


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        registrations.map(lambda m: ("Registration", m)),
        retopups.map(lambda m: ("Retopup", m)),
        batches.map(lambda m: ("PayoutBatch", m)),
    )
)
def test_digest_matches_eth_account(case: tuple[str, dict[str, Any]]) -> None:
    primary_type, message = case
    assert HASHER.digest(primary_type, message) == reference_digest(primary_type, message)


def test_direct_keccak_matches_pycryptodome() -> None:
    for n in (0, 1, 31, 32, 135, 136, 137, 1000):
        data = bytes(range(256)) * 4
        assert keccak256(data[:n]) == _keccak_reference(data[:n])


def test_known_typehashes() -> None:
    assert (
        keccak256(
            b"Registration(address user,address referrer,uint256 slot,uint256 amount,"
            b"bytes32 planHash,uint256 nonce,uint256 deadline)"
        )
        == REGISTRATION_TYPEHASH
    )
    assert (
        keccak256(
            b"PayoutBatch(uint256 batchId,Payout[] payouts,uint256 nonce,uint256 deadline)"
            b"Payout(address recipient,uint256 amount)"
        )
        == PAYOUT_BATCH_TYPEHASH
    )


def test_decimal_strings_hash_like_ints() -> None:
    m = {
        "user": "0x" + "11" * 20,
        "amount": 10**19,
        "planHash": "0x" + "ab" * 32,
        "nonce": 7,
        "deadline": 1_900_000_000,
    }
    as_strings = {**m, "amount": str(10**19), "nonce": "7", "deadline": "1900000000"}
    assert HASHER.digest("Retopup", m) == HASHER.digest("Retopup", as_strings)


def test_payout_batch_total_and_count() -> None:
    enc = encode_message(
        "PayoutBatch",
        {
            "batchId": 3,
            "payouts": [
                {"recipient": "0x" + "22" * 20, "amount": 5},
                {"recipient": "0x" + "33" * 20, "amount": "6"},
            ],
            "nonce": 1,
            "deadline": 2,
        },
    )
    assert (enc.amount, enc.recipients, enc.batch_id) == (11, 2, 3)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"amount": -1}, "amount"),
        ({"amount": 2**256}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "1_000"}, "amount"),
        ({"amount": "0x10"}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"user": "0x" + "11" * 19}, "user"),
        ({"user": "0x5fbDB2315678afecb367f032d93F642f64180aa3"}, "user"),  # bad checksum
        ({"planHash": "0x" + "ab" * 31}, "planHash"),
    ],
)
def test_malformed_fields_are_rejected(value: dict[str, Any], field: str) -> None:
    m = {
        "user": "0x" + "11" * 20,
        "amount": 1,
        "planHash": "0x" + "ab" * 32,
        "nonce": 7,
        "deadline": 9,
        **value,
    }
    with pytest.raises(TypedDataError) as err:
        encode_message("Retopup", m)
    assert err.value.field == field


def test_unknown_and_missing_fields_are_rejected() -> None:
    m = {"user": "0x" + "11" * 20, "amount": 1, "planHash": "0x" + "ab" * 32, "nonce": 7}
    with pytest.raises(TypedDataError):
        encode_message("Retopup", m)
    with pytest.raises(TypedDataError):
        encode_message("Retopup", {**m, "deadline": 1, "extra": 1})
    with pytest.raises(TypedDataError):
        encode_message("Mint", m)


def test_checksummed_address_round_trip() -> None:
    acct = Account.create()
    assert to_checksum_address(parse_address(acct.address, "a")) == acct.address
