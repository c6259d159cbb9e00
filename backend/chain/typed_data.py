"""EIP-712 typed data shared by the backend, the signer and the contract tests.

These definitions are the single source of truth for what the signer signs and what
`contracts/AutoPool.sol` verifies; the type strings below must match the contract's
`*_TYPEHASH` constants byte for byte (a test compares them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOMAIN_NAME = "AutoPool"
DOMAIN_VERSION = "1"

REGISTRATION_TYPE = (
    "Registration(address user,address referrer,uint256 slot,uint256 amount,"
    "bytes32 planHash,uint256 nonce,uint256 deadline)"
)
RETOPUP_TYPE = "Retopup(address user,uint256 amount,bytes32 planHash,uint256 nonce,uint256 deadline)"
PAYOUT_TYPE = "Payout(address recipient,uint256 amount)"
PAYOUT_BATCH_TYPE = (
    "PayoutBatch(uint256 batchId,Payout[] payouts,uint256 nonce,uint256 deadline)" + PAYOUT_TYPE
)

EIP712_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

TYPES: dict[str, list[dict[str, str]]] = {
    "Registration": [
        {"name": "user", "type": "address"},
        {"name": "referrer", "type": "address"},
        {"name": "slot", "type": "uint256"},
        {"name": "amount", "type": "uint256"},
        {"name": "planHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "Retopup": [
        {"name": "user", "type": "address"},
        {"name": "amount", "type": "uint256"},
        {"name": "planHash", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "Payout": [
        {"name": "recipient", "type": "address"},
        {"name": "amount", "type": "uint256"},
    ],
    "PayoutBatch": [
        {"name": "batchId", "type": "uint256"},
        {"name": "payouts", "type": "Payout[]"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}

PRIMARY_TYPES = ("Registration", "Retopup", "PayoutBatch")


@dataclass(frozen=True, slots=True)
class Domain:
    chain_id: int
    verifying_contract: str
    name: str = DOMAIN_NAME
    version: str = DOMAIN_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


def _types_for(primary_type: str) -> dict[str, list[dict[str, str]]]:
    types = {"EIP712Domain": EIP712_DOMAIN_FIELDS, primary_type: TYPES[primary_type]}
    if primary_type == "PayoutBatch":
        types["Payout"] = TYPES["Payout"]
    return types


def full_message(domain: Domain, primary_type: str, message: dict[str, Any]) -> dict[str, Any]:
    """The complete EIP-712 document, as eth-account's `encode_typed_data(full_message=...)`
    and wallets (`eth_signTypedData_v4`) take it."""
    if primary_type not in PRIMARY_TYPES:
        raise ValueError(f"unknown primary type {primary_type!r}")
    return {
        "types": _types_for(primary_type),
        "primaryType": primary_type,
        "domain": domain.as_dict(),
        "message": message,
    }
