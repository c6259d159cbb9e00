"""Published plan versions: the plan in force (from the plan file) and any plan by its hash.

A confirmed registration is settled under the plan whose hash it carries, even if a newer
plan took effect meanwhile (DESIGN §3), so the ledger looks plans up by hash. A published plan
never changes: its document must hash to its hash, checked when it is loaded.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from backend.core.logging import log
from backend.models import PlanVersion
from backend.plan.config import PlanConfig
from backend.plan_versions import repository as repo
from backend.plan_versions.errors import PlanVersionTaken, UnknownPlan

_by_hash: dict[str, PlanConfig] = {}  # documents are immutable, so a process may cache them
# The plan this process last read as in force: a guess, for callers that check it in the same
# statement that uses it (autopool_register_wallet), never the answer itself.
_last_in_force: dict[str, tuple[PlanConfig, str]] = {}


async def publish(session: AsyncSession, plan: PlanConfig) -> str:
    """Record `plan` in plan_versions (idempotent) and return its hash (0x-hex). A different
    document under an already published version number is not published (a published plan
    never changes): it is logged, and the plan in force stays what was published."""
    plan_hash = plan.plan_hash_hex()
    await repo.insert_once(session, plan.version, plan_hash, plan.model_dump(mode="json"))
    if await repo.document_of(session, plan_hash) is None:
        log.warning(
            "configured plan not published: its version is taken by another document",
            version=plan.version,
            plan_hash=plan_hash,
        )
        return plan_hash
    _by_hash[plan_hash] = plan
    return plan_hash


async def by_hash(session: AsyncSession, plan_hash: str) -> PlanConfig:
    """The published plan with `plan_hash` (raises UnknownPlan)."""
    plan_hash = plan_hash.lower()
    plan = _by_hash.get(plan_hash)
    if plan is None:
        doc = await repo.document_of(session, plan_hash)
        if doc is None:
            raise UnknownPlan(f"no published plan has hash {plan_hash}")
        plan = PlanConfig.model_validate(doc)
        if plan.plan_hash_hex() != plan_hash:
            raise UnknownPlan(f"stored plan document does not hash to {plan_hash}")
        _by_hash[plan_hash] = plan
    return plan


async def versions(session: AsyncSession) -> list[PlanVersion]:
    return await repo.all_versions(session)


def in_force_among(rows: list[PlanVersion], confirmed_block: int) -> PlanVersion | None:
    """The plan new payloads carry: the highest version whose effective block (if any) the
    chain has reached."""
    eligible = [
        r for r in rows if r.effective_block is None or r.effective_block <= confirmed_block
    ]
    return max(eligible, key=lambda r: r.version) if eligible else None


async def publish_version(
    session: AsyncSession, plan: PlanConfig, effective_block: int | None, actor: str
) -> PlanVersion:
    """Publish a new plan version (its `version` must follow the latest), effective from
    `effective_block` (or at once). A published plan never changes."""
    latest = await repo.latest_version(session)
    if plan.version <= latest:
        raise PlanVersionTaken(f"plan version {plan.version} is not above the latest ({latest})")
    plan_hash = plan.plan_hash_hex()
    if await repo.document_of(session, plan_hash) is not None:
        raise PlanVersionTaken("this exact plan document is already published")
    row = await repo.insert_version(
        session, plan.version, plan_hash, plan.model_dump(mode="json"), effective_block, actor
    )
    _by_hash[plan_hash] = plan
    return row


async def in_force(session: AsyncSession) -> tuple[PlanConfig, str]:
    """The plan (and its hash) new payloads carry: the highest published version whose
    effective time and block have come."""
    row = await repo.in_force(session)
    if row is None:
        raise UnknownPlan("no plan is in force: publish one (the API does at start)")
    plan = await by_hash(session, row.plan_hash)
    _last_in_force["plan"] = (plan, row.plan_hash)
    return plan, row.plan_hash


def last_in_force() -> tuple[PlanConfig, str] | None:
    """The plan (and hash) `in_force` last returned in this process, if any: possibly out of
    date, so only for a statement that checks it against `plan_in_force()` itself."""
    return _last_in_force.get("plan")
