"""Pydantic field types shared by the API schemas."""

from __future__ import annotations

from typing import Annotated

from eth_utils import is_address, is_checksum_address, to_checksum_address
from pydantic import AfterValidator, BeforeValidator, PlainSerializer


def _checksum(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("0x") or not is_address(value):
        raise ValueError("not a 0x-prefixed 20-byte hex address")
    body = value[2:]
    # Mixed case means the sender claims an EIP-55 checksum: a wrong one is a mistyped address.
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise ValueError("the address's EIP-55 checksum is wrong (mistyped address?)")
    return str(to_checksum_address(value))


def _wei(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("wei amounts are integers or decimal strings")
    amount = int(value)  # str must be a plain decimal integer
    if amount < 0:
        raise ValueError("wei amounts are not negative")
    return amount


Wallet = Annotated[str, AfterValidator(_checksum)]
# Wei travels as a decimal string in JSON: 2^256 does not fit a JavaScript number.
WeiStr = Annotated[int, BeforeValidator(_wei), PlainSerializer(str, return_type=str)]
