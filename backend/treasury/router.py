"""HTTP routes of the treasury domain."""

from __future__ import annotations

from fastapi import APIRouter

from backend.audit import service as audit
from backend.core.db import after_commit
from backend.core.deps import Admin, ResourcesDep, Session
from backend.models import TreasuryTransfer
from backend.treasury import service
from backend.treasury.schemas import TransferIn, TransferOut, TreasurySummary

router = APIRouter(tags=["treasury"])


@router.get("/treasury/summary", response_model=TreasurySummary)
async def treasury_summary(session: Session, res: ResourcesDep) -> TreasurySummary:
    """Contract balance beside confirmed inflows − outflows and the ledger's liabilities,
    with any difference in wei."""
    return await service.summary(session, res.w3, res.settings.contract_address)


def _transfer_out(transfer: TreasuryTransfer, required: int) -> TransferOut:
    return TransferOut(
        id=transfer.id,
        amount=int(transfer.amount),
        reason=transfer.reason,
        status=transfer.status,
        proposedBy=transfer.proposed_by,
        approvals=list(transfer.approvals),
        required=required,
    )


@router.post("/treasury/transfer", response_model=TransferOut, status_code=202)
async def treasury_transfer(
    body: TransferIn, session: Session, res: ResourcesDep, admin: Admin
) -> TransferOut:
    """Propose (`amount`, `reason`) or approve (`transferId`) a transfer of the company's
    pending rewards. Only the configured approvers (admins) may act; at
    `treasury_required_approvals` approvals the settlement worker pays the company out in its
    own batch. Audited; 403 `not-a-treasury-approver`, 409 `transfer-already-approved`,
    `transfer-wrong-state`, `insufficient-company-balance`, 404 `transfer-not-found`."""
    settings = res.settings
    required = settings.treasury_required_approvals
    if body.transferId is None:
        assert body.amount is not None and body.reason is not None
        transfer = await service.propose_transfer(
            session, settings, admin.wallet, int(body.amount), body.reason
        )
        action, before, payee = "treasury.transfer.propose", None, None
    else:
        transfer, payee = await service.approve_transfer(
            session, settings, admin.wallet, body.transferId
        )
        action, before = "treasury.transfer.approve", {"approvals": len(transfer.approvals) - 1}
    await audit.record(
        session,
        actor=admin.wallet,
        action=action,
        target=f"transfer:{transfer.id}",
        before=before,
        after={
            "status": transfer.status,
            "amount": str(transfer.amount),
            "approvals": list(transfer.approvals),
        },
    )
    if payee is not None:
        url, transfer_id = settings.redis_url, transfer.id
        after_commit(session, lambda: service.enqueue_company_payout(url, payee, transfer_id))
    return _transfer_out(transfer, required)
