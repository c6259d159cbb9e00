"""Plan v1 matches DESIGN §4; validation names the offending field; the hash is canonical."""

from __future__ import annotations

import json
from typing import Any

import pytest
from Crypto.Hash import keccak
from eth_utils.crypto import keccak as eth_keccak
from pydantic import ValidationError

from backend.plan.config import (
    DEFAULT_PLAN_PATH,
    PlanConfig,
    ReservePolicy,
    bnb,
    load_plan,
    parse_plan,
)

from .conftest import V1


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DEFAULT_PLAN_PATH.read_text())
    doc.update(changes)
    return doc


def _error(**changes: Any) -> str:
    with pytest.raises(ValidationError) as info:
        parse_plan(json.dumps(_doc(**changes)))
    return str(info.value)


def test_v1_has_the_design_defaults() -> None:
    plan = load_plan()
    assert plan.version == 1
    assert plan.levels == 10
    assert plan.entry_price == bnb(20)
    assert [plan.price(level) for level in range(1, 11)] == [
        bnb(20 * 2 ** (level - 1)) for level in range(1, 11)
    ]
    assert plan.direct_bps == 1000
    assert plan.layer_bps == (5000, 2500, 1500)
    assert plan.company_bps == 1000
    assert plan.reserve_slots == 4
    assert plan.reserve_policy is ReservePolicy.RELEASE
    assert plan.retopup_price == bnb(40)
    assert plan.level_bps == (3000, 1500, 1000, 500, 500, 500, 500, 500, 1000, 1000)
    assert plan.generations == 10


def test_amounts_are_ints_and_wei_strings_in_json() -> None:
    raw = json.loads(DEFAULT_PLAN_PATH.read_text())
    assert raw["level_prices"][0] == "20000000000000000000"
    assert all(isinstance(p, int) for p in V1.level_prices)
    assert isinstance(V1.retopup_price, int)


def test_plan_hash_is_keccak_of_the_canonical_json() -> None:
    canonical = V1.canonical_json()
    assert (
        canonical
        == json.dumps(json.loads(canonical), sort_keys=True, separators=(",", ":")).encode()
    )
    assert b" " not in canonical
    digest = V1.plan_hash()
    assert len(digest) == 32
    assert digest == keccak.new(digest_bits=256, data=canonical).digest()
    assert digest == eth_keccak(canonical)
    assert V1.plan_hash_hex() == "0x" + digest.hex()


def test_plan_hash_does_not_depend_on_formatting_or_key_order() -> None:
    doc = _doc()
    reordered = json.dumps(dict(reversed(list(doc.items()))), indent=7)
    assert parse_plan(reordered).plan_hash() == V1.plan_hash()
    assert parse_plan(V1.canonical_json()) == V1


@pytest.mark.parametrize(
    "changes",
    [
        {"version": 2},
        {"direct_bps": 999},
        {"reserve_slots": 5},
        {"reserve_policy": "accumulate"},
        {"retopup_price": str(bnb(40) + 1)},
        {"layer_bps": [5000, 2500, 1000], "company_bps": 1500},
        {"level_bps": [3000, 1500, 1000, 500, 500, 500, 500, 500, 500, 1500]},
    ],
)
def test_every_field_changes_the_hash(changes: dict[str, Any]) -> None:
    assert parse_plan(json.dumps(_doc(**changes))).plan_hash() != V1.plan_hash()


def test_price_rejects_levels_outside_the_plan() -> None:
    with pytest.raises(ValueError, match="level 11"):
        V1.price(11)
    with pytest.raises(ValueError, match="level 0"):
        V1.price(0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"company_bps": 900}, "layer_bps + company_bps"),
        ({"layer_bps": [5000, 2500, 2500]}, "layer_bps + company_bps"),
        ({"layer_bps": [5000, 4000, -1000]}, "layer_bps"),
        ({"level_bps": [3000, 1500, 1000, 500, 500, 500, 500, 500, 1000, 999]}, "level_bps"),
        ({"level_bps": []}, "level_bps"),
        ({"level_bps": [10001, -1]}, "level_bps[1]"),
        ({"level_prices": ["0", *_doc()["level_prices"][1:]]}, "level_prices[0]"),
        ({"level_prices": [*_doc()["level_prices"][:9], "-5"]}, "level_prices"),
        ({"level_prices": _doc()["level_prices"][:9]}, "level_prices"),
        ({"levels": 0}, "levels"),
        ({"retopup_price": "0"}, "retopup_price"),
        ({"retopup_price": 4e19}, "retopup_price"),
        ({"retopup_price": "40.5"}, "retopup_price"),
        ({"retopup_price": True}, "retopup_price"),
        ({"direct_bps": 10000}, "direct_bps"),
        ({"direct_bps": -1}, "direct_bps"),
        ({"direct_bps": 1000.0}, "direct_bps"),
        ({"reserve_slots": 15}, "reserve_slots"),
        ({"reserve_slots": -1}, "reserve_slots"),
        ({"reserve_policy": "burn"}, "reserve_policy"),
        ({"version": 0}, "version"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_validation_rejects_inconsistencies_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    assert field in _error(**changes)


def test_a_missing_field_is_named() -> None:
    doc = _doc()
    del doc["retopup_price"]
    with pytest.raises(ValidationError, match="retopup_price"):
        parse_plan(json.dumps(doc))


def test_plan_is_immutable() -> None:
    with pytest.raises(ValidationError):
        V1.direct_bps = 0  # type: ignore[misc]


def test_constants_split_placements_exactly() -> None:
    amount = bnb(18)
    assert V1.constants.split(amount) == (
        bnb(9),
        bnb(18) // 4,
        bnb(18) * 15 // 100,
        bnb(18) // 10,
        0,
    )
    s1, s2, s3, company, dust = V1.constants.split(10**18 + 7)
    assert s1 + s2 + s3 + company + dust == 10**18 + 7
    assert dust > 0


def test_model_round_trips_through_json() -> None:
    again = PlanConfig.model_validate_json(V1.model_dump_json())
    assert again == V1
    assert again.plan_hash() == V1.plan_hash()


def test_a_copy_with_other_values_does_not_reuse_the_originals_constants() -> None:
    assert V1.constants.reserve_from == 10
    copy = V1.model_copy(update={"reserve_slots": 13})
    assert copy.constants.reserve_from == 1
    assert V1.constants.reserve_from == 10
