"""Wei amounts cross the API as plain decimal strings: anything else is bad input."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from backend.core.types import WeiStr


class Amount(BaseModel):
    amount: WeiStr


@pytest.mark.parametrize("given", ["0", "1", "10" * 38, 5, 2**256 - 1])
def test_plain_decimal_wei_is_accepted_and_served_as_a_string(given: object) -> None:
    parsed = Amount.model_validate({"amount": given})
    assert parsed.amount == int(str(given))
    assert parsed.model_dump(mode="json") == {"amount": str(int(str(given)))}


@pytest.mark.parametrize(
    "given", ["1_000", " 1", "1 ", "+1", "-1", "0x10", "1e18", "", "1.5", -1, 2**256, True, 1.0]
)
def test_anything_but_plain_decimal_wei_is_refused(given: object) -> None:
    with pytest.raises(ValidationError):
        Amount.model_validate({"amount": given})


def test_the_schema_tells_clients_to_send_a_string() -> None:
    schema = Amount.model_json_schema(mode="validation")["properties"]["amount"]
    assert schema["type"] == "string" and schema["pattern"] == "^[0-9]{1,78}$"
