"""Fee policy and batch sizing by gas: pure arithmetic, no I/O (docs/settlement.md).

BSC prices by a legacy gas price (zero base fee), so a replacement is the same transaction
with a gas price at least 12.5% higher: geth-based nodes ask for +10%, others for more.
"""

from __future__ import annotations

from dataclasses import dataclass

# The contract refuses to start a line with less gas left than this (AutoPool.sol,
# `_MIN_GAS_PER_PAYOUT`): the last line needs it on top of what the lines before it used.
MIN_GAS_PER_PAYOUT = 47_058
BSC_TX_GAS_CAP = 2**24


@dataclass(frozen=True)
class GasModel:
    """What a batch costs, line by line, before it is signed (when it cannot be estimated)."""

    ceiling: int
    base: int
    line: int
    new_account: int
    hostile_line: int
    hostile_reserve_bps: int

    def __post_init__(self) -> None:
        if not 0 < self.ceiling < BSC_TX_GAS_CAP:
            raise ValueError(f"gas ceiling {self.ceiling} must be below 2^24")

    def hostile_room(self, lines: int) -> int:
        """Room for recipients that turn hostile after signing: a share of the lines (at least
        one when there are lines) may each burn a whole stipend, and the last line must still
        find the contract's minimum left."""
        if lines == 0:
            return 0
        hostile = max(1, -(-lines * self.hostile_reserve_bps // 10_000))
        return hostile * self.hostile_line + MIN_GAS_PER_PAYOUT

    def budget(self, new_accounts: list[bool]) -> int:
        """The gas limit a batch with these lines (True: an empty account) is given."""
        lines = sum(self.line + (self.new_account if new else 0) for new in new_accounts)
        return self.base + lines + self.hostile_room(len(new_accounts))

    def fitting(self, new_accounts: list[bool]) -> int:
        """How many of the lines, in order, fit under the ceiling (0 if not even one)."""
        total = self.base
        for count, new in enumerate(new_accounts, start=1):
            total += self.line + (self.new_account if new else 0)
            if total + self.hostile_room(count) > self.ceiling:
                return count - 1
        return len(new_accounts)

    def gas_limit(self, estimate: int, lines: int) -> int:
        """The limit for a signed batch whose execution the node estimated at `estimate` now:
        the estimate plus the hostile room, never above the ceiling."""
        return min(self.ceiling, estimate + self.hostile_room(lines))


@dataclass(frozen=True)
class FeePolicy:
    bump_bps: int
    max_gas_price: int
    min_gas_price: int = 0

    def __post_init__(self) -> None:
        if self.bump_bps < 1_250:
            raise ValueError("a replacement must pay at least 12.5% more")

    def initial(self, node_price: int) -> int:
        """The first attempt's gas price: the node's suggestion, within the configured bounds."""
        return min(self.max_gas_price, max(self.min_gas_price, node_price, 1))

    def bumped(self, previous: int, node_price: int) -> int | None:
        """The replacement's gas price (≥ previous × (1 + bump), rounded up, and at least the
        node's current price), or None when the cap leaves no room for a valid replacement."""
        wanted = max(-(-previous * (10_000 + self.bump_bps) // 10_000), node_price)
        if wanted > self.max_gas_price:
            return None
        return wanted
