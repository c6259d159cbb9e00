"""Credit the contract's surplus to the company: BNB the contract holds beyond what its events
account for (forced by SELFDESTRUCT, sent before deployment, returned by a recipient during its
payout) becomes one pending company reward line with its reason, in the listener's range
transaction where it first appears (docs/settlement.md "Surplus")."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.logging import log
from backend.plan_versions import service as plan_versions
from backend.rewards import service as rewards
from backend.treasury import service as treasury
from backend.users import service as users


async def credit_new(session: AsyncSession, surplus: int, first_block: int, block: int) -> int:
    """Credit what of `surplus` (the contract's `surplus()` at `block`) is not credited yet:
    Σ credits − Σ `SurplusDrawn` is the part already in the ledger. Returns the wei credited.
    `first_block`..`block` is the range being settled, named in the credit's reason."""
    uncredited = surplus - await treasury.surplus_outstanding(session, block)
    if uncredited <= 0:
        # Below zero the contract lost BNB the ledger owes: the reconciliation reports that
        # deficit; nothing is credited or taken back here.
        return 0
    company = await users.company_root(session)
    if company is None:
        # Not seeded (a bare database): reported by the reconciliation as not credited.
        log.error("surplus not credited: no company root participant", wei=str(uncredited))
        return 0
    reason = (
        f"{uncredited} wei held by the contract beyond what its events account for, first "
        f"seen in blocks {first_block}-{block} (forced by SELFDESTRUCT, sent before "
        "deployment, or returned by a recipient)"
    )
    batches = await treasury.batches_executed_between(session, first_block - 1, block)
    if batches:
        reason += "; payout batches executed in those blocks: " + ", ".join(map(str, batches))
    credit_id = await treasury.add_surplus_credit(session, uncredited, block, surplus, reason)
    _, plan_hash = await plan_versions.in_force(session)
    await rewards.credit_surplus(session, credit_id, company, uncredited, plan_hash)
    log.warning("contract surplus credited to the company", credit=credit_id, wei=str(uncredited))
    return uncredited
