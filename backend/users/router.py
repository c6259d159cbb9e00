"""HTTP routes of the users domain."""

from __future__ import annotations

from fastapi import APIRouter

from backend.core.db import unit_of_work
from backend.core.deps import Ctx
from backend.users import service
from backend.users.schemas import RegisterIn, RegistrationOut

router = APIRouter(prefix="/users", tags=["users"])


@router.post("/register", response_model=RegistrationOut)
async def register(body: RegisterIn, ctx: Ctx) -> RegistrationOut:
    """Lease the lowest free level-1 slot and return the signed registration for the wallet
    to send. Retrying while the lease is live returns the same payload."""
    async with unit_of_work(ctx.sessions) as session:
        return await service.register(ctx, session, body.wallet, body.referrer)
