"""The admin console's state changes: each writes exactly one audit row (actor, action,
target, before, after) in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.admin.errors import InvalidPlan
from backend.audit import service as audit
from backend.auth import service as auth
from backend.core.security import Principal, Role
from backend.core.wiring import Resources
from backend.models import PlanVersion
from backend.plan.config import PlanConfig
from backend.plan_versions import service as plan_versions
from backend.users import service as users


async def effective_block(res: Resources) -> int:
    """Admin decisions take effect from the next block: no event of it is applied yet (the
    listener applies final blocks only), so a replay applies every event as it first was."""
    return int(await res.w3.eth.block_number) + 1


async def set_frozen(
    session: AsyncSession,
    res: Resources,
    admin: Principal,
    user_id: int,
    frozen: bool,
    reason: str | None,
) -> tuple[bool, int]:
    """Freeze or unfreeze; returns (frozen now, effective block)."""
    block = await effective_block(res)
    before, after = await users.set_frozen(
        session, user_id, frozen, block=block, actor=admin.wallet, reason=reason
    )
    await audit.record(
        session,
        actor=admin.wallet,
        action="user.freeze" if frozen else "user.unfreeze",
        target=f"user:{user_id}",
        before={"frozen": before},
        after={"frozen": after},
        block_number=block,
        reason=reason,
    )
    return after, block


async def publish_plan(
    session: AsyncSession, admin: Principal, document: dict[str, Any], block: int | None
) -> PlanVersion:
    """Validate a plan document with the plan engine and publish it as a new version."""
    try:
        plan = PlanConfig.model_validate(document)
    except ValidationError as exc:
        raise InvalidPlan(
            str(exc.errors()[0]["msg"]),
            errors=exc.errors(include_url=False, include_input=False, include_context=False),
        ) from exc
    row = await plan_versions.publish_version(session, plan, block, admin.wallet)
    await audit.record(
        session,
        actor=admin.wallet,
        action="plan.publish",
        target=f"plan:{row.version}",
        before=None,
        after={"version": row.version, "planHash": row.plan_hash},
        block_number=block,
    )
    return row


async def set_role(
    session: AsyncSession, admin: Principal, wallet: str, role: Role, grant: bool
) -> None:
    if grant:
        change = await auth.grant_role(session, wallet, role, admin.wallet)
    else:
        change = await auth.revoke_role(session, wallet, role, admin.wallet)
    await audit.record(
        session,
        actor=admin.wallet,
        action="role.grant" if grant else "role.revoke",
        target=f"wallet:{wallet}",
        before={"role": role, "held": change["before"]},
        after={"role": role, "held": change["after"]},
    )


async def manual_placement(
    session: AsyncSession, res: Resources, admin: Principal, wallet: str, referrer: str, slot: int
) -> users.PendingPayload:
    """Lease the chosen slot for `wallet`'s registration (refused if taken or its parent is
    empty); the caller commits, then has it signed."""
    pending = await users.reserve_registration(session, res, wallet, referrer, slot=slot)
    await audit.record(
        session,
        actor=admin.wallet,
        action="pool.manual_placement",
        target=f"slot:{slot}",
        before=None,
        after={"wallet": wallet, "referrer": referrer, "slot": pending.payload["slot"]},
    )
    return pending
