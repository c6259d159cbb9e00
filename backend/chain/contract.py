"""Calldata for the AutoPool contract, built from its compiled ABI (no node needed)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector, get_abi_input_types, to_checksum_address

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
    def _functions(self) -> dict[str, tuple[bytes, list[str]]]:
        """Selector and input types of each function the API encodes. Encoding with them
        directly gives web3's `encode_abi` bytes (tests/chain/test_contract.py) without its
        per-call ABI lookup and argument validation, which cost ~1.5 ms a registration."""
        wanted = {"register", "retopup", "executeBatchPayouts"}
        entries = [
            e
            for e in load_artifact("AutoPool")["abi"]
            if e.get("type") == "function" and e.get("name") in wanted
        ]
        if sorted(e["name"] for e in entries) != sorted(wanted):  # missing or overloaded
            raise RuntimeError(f"AutoPool ABI: expected one each of {sorted(wanted)}")
        return {
            e["name"]: (function_abi_to_4byte_selector(e), list(get_abi_input_types(e)))
            for e in entries
        }

    def _encode(self, name: str, args: tuple[Any, ...]) -> str:
        selector, types = self._functions[name]
        return "0x" + (selector + abi_encode(types, args)).hex()

    def register_data(self, message: dict[str, Any], signature: str) -> str:
        return self._encode("register", (registration_tuple(message), _sig(signature)))

    def retopup_data(self, message: dict[str, Any], signature: str) -> str:
        return self._encode("retopup", (retopup_tuple(message), _sig(signature)))

    def batch_data(self, message: dict[str, Any], signature: str) -> str:
        return self._encode("executeBatchPayouts", (batch_tuple(message), _sig(signature)))
