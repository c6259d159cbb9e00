"""Plan configuration: a versioned, validated document whose canonical hash goes on-chain.

A plan is a JSON file (``backend/plan/plans/v<N>.json``) loaded into the frozen pydantic model
`PlanConfig`. Every amount is an integer number of wei, written in JSON as a decimal string
(20 BNB is larger than 2^53, which JSON readers in other languages would round); floats are
rejected everywhere. Shares are integer basis points (10,000 = 100%).

The plan hash is ``keccak256(canonical_json(plan))`` where the canonical JSON is the document
with keys sorted, no insignificant whitespace, ASCII only, and every wei amount as a decimal
string — exactly what `PlanConfig.canonical_json` returns, so anyone can recompute it from the
published document.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

from Crypto.Hash import keccak
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

BPS: Final = 10_000
"""Basis points in a whole."""

MATRIX_LAYERS: Final = 3
"""A node's matrix is its descendants in the three layers below it."""

MATRIX_SIZE: Final = 14
"""2 + 4 + 8 descendants make a complete matrix."""

PLANS_DIR: Final = Path(__file__).parent / "plans"
DEFAULT_PLAN_PATH: Final = PLANS_DIR / "v1.json"

WEI_PER_BNB: Final = 10**18


class ReservePolicy(StrEnum):
    """What happens at completion to a reserve too small to fund the next level."""

    RELEASE = "release"
    """The reserve becomes payable."""
    ACCUMULATE = "accumulate"
    """The reserve stays reserved until an admin releases it (audited)."""


def _parse_wei(value: Any) -> int:
    # bool is an int subclass and float would silently lose wei: both are refused.
    if isinstance(value, bool | float):
        raise ValueError("must be an integer number of wei (a decimal string), not a float/bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdecimal():
        return int(value)
    raise ValueError("must be an integer number of wei written as a decimal string")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


Wei = Annotated[int, BeforeValidator(_parse_wei), PlainSerializer(str, return_type=str)]
"""An amount in wei: an int in Python, a decimal string in JSON."""

StrictInt = Annotated[int, BeforeValidator(_parse_int)]


class PlanConfig(BaseModel):
    """One version of the compensation plan (DESIGN §4). Immutable once loaded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: StrictInt = Field(ge=1, description="Plan version; a new version gets a new hash.")
    levels: StrictInt = Field(ge=1, description="Number of levels; the top level is `levels`.")
    level_prices: tuple[Wei, ...] = Field(
        description="Price of level L at index L-1, in wei; level 1's price is the entry price."
    )
    direct_bps: StrictInt = Field(ge=0, lt=BPS, description="Sponsor's DIRECT share of entry.")
    layer_bps: tuple[StrictInt, StrictInt, StrictInt] = Field(
        description="POOL_L1, POOL_L2, POOL_L3 shares of a placement (parent, grandparent, "
        "great-grandparent)."
    )
    company_bps: StrictInt = Field(ge=0, le=BPS, description="Company share of a placement.")
    reserve_slots: StrictInt = Field(
        ge=0,
        le=MATRIX_SIZE,
        description="Income from the last N confirmed placements of a matrix is reserved.",
    )
    reserve_policy: ReservePolicy
    retopup_price: Wei
    level_bps: tuple[StrictInt, ...] = Field(
        description="LEVEL income share of a retopup per sponsor generation, nearest first."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> PlanConfig:
        # Messages name the field: cross-field errors carry no location of their own.
        if len(self.level_prices) != self.levels:
            raise ValueError(
                f"level_prices: {len(self.level_prices)} prices for levels={self.levels}"
            )
        for i, price in enumerate(self.level_prices):
            if price <= 0:
                raise ValueError(f"level_prices[{i}] (level {i + 1}): price must be > 0 wei")
        for i, bps in enumerate(self.layer_bps):
            if bps < 0:
                raise ValueError(f"layer_bps[{i}]: share must be >= 0 bps")
        layered = sum(self.layer_bps) + self.company_bps
        if layered != BPS:
            raise ValueError(
                f"layer_bps + company_bps: shares must sum to {BPS} bps, got {layered}"
            )
        if self.retopup_price <= 0:
            raise ValueError("retopup_price: price must be > 0 wei")
        if not self.level_bps:
            raise ValueError("level_bps: at least one generation is required")
        for i, bps in enumerate(self.level_bps):
            if bps < 0:
                raise ValueError(f"level_bps[{i}] (generation {i + 1}): share must be >= 0 bps")
        if sum(self.level_bps) != BPS:
            raise ValueError(f"level_bps: shares must sum to {BPS} bps, got {sum(self.level_bps)}")
        if self.entry_price - self.entry_price * self.direct_bps // BPS <= 0:
            raise ValueError("direct_bps: leaves nothing for the level-1 placement")
        return self

    # -- derived values -------------------------------------------------------------------

    @property
    def entry_price(self) -> int:
        """What a registration pays: the price of level 1."""
        return self.level_prices[0]

    @property
    def generations(self) -> int:
        """How many sponsor generations share a retopup."""
        return len(self.level_bps)

    def price(self, level: int) -> int:
        """Price of ``level`` (1-based) in wei."""
        if not 1 <= level <= len(self.level_prices):
            raise ValueError(f"level {level} is outside 1..{len(self.level_prices)}")
        return self.level_prices[level - 1]

    def direct_amount(self, amount: int) -> int:
        """The sponsor's DIRECT share of a registration paying ``amount`` (floored)."""
        return amount * self.direct_bps // BPS

    @property
    def constants(self) -> PlanConstants:
        """Precomputed numbers for the engine's hot path (not part of the document).

        Cached on the instance, and tied to it: `model_copy` copies the instance's __dict__,
        so a copy with other values must not reuse the original's numbers.
        """
        cached = self.__dict__.get("_constants")
        if cached is None or cached.source is not self:
            cached = PlanConstants(self)
            self.__dict__["_constants"] = cached
        return cached

    # -- canonical form and hash ----------------------------------------------------------

    def canonical_json(self) -> bytes:
        """The canonical encoding the plan hash is taken over (see module docstring)."""
        doc = self.model_dump(mode="json")
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
            "ascii"
        )

    def plan_hash(self) -> bytes:
        """keccak-256 of the canonical encoding: the 32-byte ``planHash`` signed and on-chain."""
        return keccak.new(digest_bits=256, data=self.canonical_json()).digest()

    def plan_hash_hex(self) -> str:
        """`plan_hash` as a 0x-prefixed hex string."""
        return "0x" + self.plan_hash().hex()


class PlanConstants:
    """Per-plan numbers the engine needs on every placement, computed once.

    `split(amount)` memoises the floored shares of a placement amount: placements repeat a few
    amounts (one per level), so the divisions are done once per amount, not per event.
    """

    __slots__ = (
        "_retopup_splits",
        "_splits",
        "company_bps",
        "direct_bps",
        "layer_bps",
        "level_bps",
        "level_prices",
        "levels",
        "reserve_from",
        "reserve_policy",
        "source",
    )

    def __init__(self, plan: PlanConfig) -> None:
        self.source = plan
        self.layer_bps = plan.layer_bps
        self.company_bps = plan.company_bps
        self.direct_bps = plan.direct_bps
        self.level_bps = plan.level_bps
        self.level_prices = plan.level_prices
        self.levels = plan.levels
        self.reserve_policy = plan.reserve_policy
        # A line is reserved when the earner's matrix count after the placement exceeds this.
        self.reserve_from = MATRIX_SIZE - plan.reserve_slots
        self._splits: dict[int, tuple[int, int, int, int, int]] = {}
        self._retopup_splits: dict[int, tuple[tuple[int, ...], int]] = {}

    def split(self, amount: int) -> tuple[int, int, int, int, int]:
        """(POOL_L1, POOL_L2, POOL_L3, company, dust) of a placement of ``amount`` wei: each
        share floored, the dust what flooring left; they sum to ``amount``."""
        got = self._splits.get(amount)
        if got is None:
            b1, b2, b3 = self.layer_bps
            s1 = amount * b1 // BPS
            s2 = amount * b2 // BPS
            s3 = amount * b3 // BPS
            company = amount * self.company_bps // BPS
            got = (s1, s2, s3, company, amount - s1 - s2 - s3 - company)
            if len(self._splits) < 1024:  # amounts are per level; never grows unbounded
                self._splits[amount] = got
        return got

    def retopup_split(self, amount: int) -> tuple[tuple[int, ...], int]:
        """(LEVEL share per generation, dust) of a retopup of ``amount`` wei, floored."""
        got = self._retopup_splits.get(amount)
        if got is None:
            shares = tuple(amount * bps // BPS for bps in self.level_bps)
            got = (shares, amount - sum(shares))
            if len(self._retopup_splits) < 1024:
                self._retopup_splits[amount] = got
        return got


def parse_plan(document: str | bytes) -> PlanConfig:
    """Validate a plan document (JSON text). Raises pydantic's ValidationError naming the field."""
    return PlanConfig.model_validate_json(document)


def load_plan(path: str | Path = DEFAULT_PLAN_PATH) -> PlanConfig:
    """Read and validate the plan file at ``path`` (default: plan v1)."""
    return parse_plan(Path(path).read_bytes())


def bnb(amount: int) -> int:
    """Whole BNB to wei (for tests and docs; the plan itself is always in wei)."""
    return amount * WEI_PER_BNB
