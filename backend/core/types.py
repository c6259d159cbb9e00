"""Pydantic field types shared by the API schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

from backend.chain.typed_data import parse_address, to_checksum_address


def _checksum(value: str) -> str:
    # The signer's own address rule: a mixed-case address must carry a valid EIP-55 checksum
    # (it claims one: a wrong one is a mistyped address); all-lower and all-upper are accepted.
    return to_checksum_address(parse_address(value, "address"))


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

# A name a filter compares with (a status, a reward type, an event name, an audit actor...):
# letters, digits and a few separators, so no control character ever reaches a query.
NAME_PATTERN = r"^[A-Za-z0-9_.:\-]*$"


def _printable(value: str) -> str:
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value) or "\x7f" in value:
        raise ValueError("control characters are not allowed")
    return value


# Free text a person wrote (a freeze's reason): printable, no NUL or control characters.
Text = Annotated[str, AfterValidator(_printable)]
