"""AutoPoolABI encodes calldata itself (selector + eth-abi): byte for byte what web3's
`Contract.encode_abi` gives for the same arguments."""

from __future__ import annotations

import random

from eth_account import Account
from web3 import Web3

from backend.chain.artifacts import load_artifact
from backend.chain.contract import AutoPoolABI, batch_tuple, registration_tuple, retopup_tuple


def _wallet(rng: random.Random) -> str:
    return Account.from_key(rng.randbytes(32)).address.lower()


def _signature(rng: random.Random) -> str:
    return "0x" + rng.randbytes(65).hex()


def test_calldata_equals_web3_encode_abi() -> None:
    web3_contract = Web3().eth.contract(abi=load_artifact("AutoPool")["abi"])
    abi = AutoPoolABI("0x" + "11" * 20)
    rng = random.Random(10)
    for _ in range(25):
        plan_hash = "0x" + rng.randbytes(32).hex()
        registration = {
            "user": _wallet(rng),
            "referrer": _wallet(rng),
            "slot": str(rng.randrange(2**40)),
            "amount": str(rng.randrange(2**100)),
            "planHash": plan_hash,
            "nonce": str(rng.randrange(2**64)),
            "deadline": rng.randrange(2**40),
        }
        retopup = {k: registration[k] for k in ("user", "amount", "planHash", "nonce", "deadline")}
        batch = {
            "batchId": str(rng.randrange(2**64)),
            "payouts": [
                {"recipient": _wallet(rng), "amount": str(rng.randrange(2**90))}
                for _ in range(rng.randrange(0, 12))
            ],
            "nonce": str(rng.randrange(2**64)),
            "deadline": rng.randrange(2**40),
        }
        sig = _signature(rng)
        sig_bytes = bytes.fromhex(sig[2:])
        assert abi.register_data(registration, sig) == web3_contract.encode_abi(
            "register", args=[registration_tuple(registration), sig_bytes]
        )
        assert abi.retopup_data(retopup, sig) == web3_contract.encode_abi(
            "retopup", args=[retopup_tuple(retopup), sig_bytes]
        )
        assert abi.batch_data(batch, sig) == web3_contract.encode_abi(
            "executeBatchPayouts", args=[batch_tuple(batch), sig_bytes]
        )
