"""Calldata for the AutoPool contract, built from its compiled ABI (no node needed)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from backend.chain.artifacts import load_artifact


def registration_tuple(m: dict[str, Any]) -> tuple[Any, ...]:
    return (
        to_checksum_address(m["user"]),
        to_checksum_address(m["referrer"]),
        int(m["slot"]),
        int(m["amount"]),
        bytes.fromhex(str(m["planHash"]).removeprefix("0x")),
        int(m["nonce"]),
        int(m["deadline"]),
    )


def retopup_tuple(m: dict[str, Any]) -> tuple[Any, ...]:
    return (
        to_checksum_address(m["user"]),
        int(m["amount"]),
        bytes.fromhex(str(m["planHash"]).removeprefix("0x")),
        int(m["nonce"]),
        int(m["deadline"]),
    )


def batch_tuple(m: dict[str, Any]) -> tuple[Any, ...]:
    payouts = [(to_checksum_address(p["recipient"]), int(p["amount"])) for p in m["payouts"]]
    return (int(m["batchId"]), payouts, int(m["nonce"]), int(m["deadline"]))


def _sig(signature: str) -> bytes:
    return bytes.fromhex(signature.removeprefix("0x"))


class AutoPoolABI:
    """Encodes calls to the deployed AutoPool at `address`."""

    def __init__(self, address: str) -> None:
        self.address = to_checksum_address(address) if address else ""

    @cached_property
    def contract(self) -> type[Contract]:
        return Web3().eth.contract(abi=load_artifact("AutoPool")["abi"])

    def register_data(self, message: dict[str, Any], signature: str) -> str:
        return str(
            self.contract.encode_abi(
                "register", args=[registration_tuple(message), _sig(signature)]
            )
        )

    def retopup_data(self, message: dict[str, Any], signature: str) -> str:
        return str(
            self.contract.encode_abi("retopup", args=[retopup_tuple(message), _sig(signature)])
        )

    def batch_data(self, message: dict[str, Any], signature: str) -> str:
        return str(
            self.contract.encode_abi(
                "executeBatchPayouts", args=[batch_tuple(message), _sig(signature)]
            )
        )
