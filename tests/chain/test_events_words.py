"""The raw decoder reads one-word static args straight off the hex; for every value it must
give what eth-abi gives, and refuse (through eth-abi) what eth-abi refuses."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from eth_abi.exceptions import DecodingError
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from web3 import AsyncWeb3

from backend.chain.events import EventDecoder

DECODER = EventDecoder(AsyncWeb3(), "0x" + "11" * 20)
REGISTRATION = (
    "0x"
    + keccak(text="RegistrationAccepted(address,address,uint256,uint256,bytes32,uint256)").hex()
)
words = st.integers(min_value=0, max_value=2**256 - 1)
addresses = st.integers(min_value=0, max_value=2**160 - 1)


def word(value: int) -> str:
    return f"{value:064x}"


def log(user: int, referrer: int, slot: int, amount: int, plan: int, nonce: int) -> dict[str, Any]:
    return {
        "topics": [REGISTRATION, "0x" + word(user), "0x" + word(referrer), "0x" + word(slot)],
        "data": "0x" + word(amount) + word(plan) + word(nonce),
    }


def by_eth_abi(raw: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    spec = DECODER._specs[REGISTRATION]
    slow = EventDecoder.__new__(EventDecoder)
    slow._specs = {REGISTRATION: dataclasses.replace(spec, words=None)}
    return slow.decode_raw(raw)


@settings(max_examples=300, deadline=None)
@given(addresses, addresses, words, words, words, words)
def test_words_read_off_the_hex_equal_eth_abi(
    user: int, referrer: int, slot: int, amount: int, plan: int, nonce: int
) -> None:
    raw = log(user, referrer, slot, amount, plan, nonce)
    assert DECODER._specs[REGISTRATION].words is not None  # the fast path is the one tested
    assert DECODER.decode_raw(raw) == by_eth_abi(raw)


def test_an_address_with_dirty_padding_is_refused_as_eth_abi_refuses_it() -> None:
    raw = log(2**160 + 5, 7, 1, 2, 3, 4)
    with pytest.raises(DecodingError):
        by_eth_abi(raw)
    with pytest.raises(DecodingError):
        DECODER.decode_raw(raw)


def test_a_log_with_missing_data_is_refused() -> None:
    raw = log(5, 7, 1, 2, 3, 4)
    raw["data"] = raw["data"][:-64]
    with pytest.raises(DecodingError):
        DECODER.decode_raw(raw)
