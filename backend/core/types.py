"""Pydantic field types shared by the API schemas."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

from backend.chain.typed_data import parse_address, to_checksum_address


def _checksum(value: str) -> str:
    # The signer's own address rule: a mixed-case address must carry a valid EIP-55 checksum
    # (it claims one: a wrong one is a mistyped address); all-lower and all-upper are accepted.
    return to_checksum_address(parse_address(value, "address"))


_DECIMAL = re.compile(r"[0-9]{1,78}")


def _wei(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("wei amounts are integers or decimal strings")
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        # int() would also take " 1", "+1" and "1_000": a wei string is plain digits only.
        raise ValueError("a wei string is a plain decimal integer (digits only)")
    amount = int(value)
    if amount < 0:
        raise ValueError("wei amounts are not negative")
    if amount >= 2**256:
        raise ValueError("wei amounts are below 2^256")
    return amount


Wallet = Annotated[str, AfterValidator(_checksum)]
# Wei travels as a decimal string in JSON: 2^256 does not fit a JavaScript number.
# Clients send it as a string too (the schema says so); an integer is still accepted.
WeiStr = Annotated[
    int,
    BeforeValidator(_wei),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": "^[0-9]{1,78}$", "description": "wei, decimal digits"},
        mode="validation",
    ),
]

# A name a filter compares with (a status, a reward type, an event name, an audit actor...):
# letters, digits and a few separators, so no control character ever reaches a query.
NAME_PATTERN = r"^[A-Za-z0-9_.:\-]*$"


def _printable(value: str) -> str:
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value) or "\x7f" in value:
        raise ValueError("control characters are not allowed")
    return value


# Free text a person wrote (a freeze's reason): printable, no NUL or control characters.
Text = Annotated[str, AfterValidator(_printable)]
