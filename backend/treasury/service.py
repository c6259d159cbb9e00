"""Reconciliation: contract balance == Σ confirmed inflows − Σ confirmed outflows, and ==
the ledger's liabilities (DESIGN §4). Every figure comes from the chain or the ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession
from web3 import AsyncWeb3

from backend.chain.artifacts import load_artifact
from backend.core.logging import log
from backend.core.settings import Settings
from backend.models import ReconciliationReport, SurplusCredit, TransferStatus, TreasuryTransfer
from backend.monitoring import service as monitoring
from backend.rewards import service as rewards
from backend.treasury import repository as repo
from backend.treasury.errors import (
    AlreadyApproved,
    InsufficientCompanyBalance,
    NotAnApprover,
    TransferNotFound,
    TransferWrongState,
)
from backend.treasury.schemas import Liabilities, TreasurySummary


async def summary(session: AsyncSession, w3: AsyncWeb3[Any], contract: str) -> TreasurySummary:
    block, _ = await monitoring.confirmed_block(session)
    block = max(block, 0)
    owed = await rewards.liabilities(session)
    total = sum(owed.values())
    inflows = await repo.event_sum(session, repo.INFLOW_EVENTS)
    outflows = await repo.event_sum(session, repo.OUTFLOW_EVENTS)
    drawn = await repo.event_sum(session, ("SurplusDrawn",))
    # The balance at the block the ledger has reached, so both sides describe the same moment.
    balance = int(await w3.eth.get_balance(AsyncWeb3.to_checksum_address(contract), block))
    surplus = await contract_surplus(w3, contract, block)
    uncredited = max(surplus - await repo.surplus_outstanding(session, block), 0)
    # The contract's own identity: balance = Σ inflows + Σ SurplusDrawn − Σ outflows + surplus.
    chain_diff = balance - surplus - (inflows + drawn - outflows)
    # Anomalies (final events the ledger did not expect) moved BNB outside the liabilities.
    anomaly_in, anomaly_out = await monitoring.anomaly_flows(session)
    ledger_diff = balance - uncredited - total - anomaly_in + anomaly_out
    return TreasurySummary(
        block=block,
        contract_balance=balance,
        inflows=inflows,
        outflows=outflows,
        liabilities=Liabilities(**owed, total=total),
        surplus=surplus,
        surplus_uncredited=uncredited,
        chain_difference=chain_diff,
        ledger_difference=ledger_diff,
        balanced=chain_diff == 0 and ledger_diff == 0,
    )


RECONCILIATION_DIFFERENCE = Gauge(
    "autopool_reconciliation_difference_wei",
    "Contract balance − surplus − ledger liabilities at the last reconciliation (0 when sound)",
)
RECONCILIATION_MISMATCHES = Gauge(
    "autopool_reconciliation_recipient_mismatches",
    "Recipients whose on-chain payouts differ from their settled rewards",
)


async def contract_surplus(w3: AsyncWeb3[Any], contract: str, block: int) -> int:
    """The contract's own view of BNB held beyond what its events account for (0 at a block
    before its deployment, e.g. while the listener has read nothing yet)."""
    if not await w3.eth.get_code(AsyncWeb3.to_checksum_address(contract), block):
        return 0
    autopool = w3.eth.contract(
        address=AsyncWeb3.to_checksum_address(contract), abi=load_artifact("AutoPool")["abi"]
    )
    return int(await autopool.functions.surplus().call(block_identifier=block))


async def reconcile(
    session: AsyncSession, w3: AsyncWeb3[Any], contract: str
) -> ReconciliationReport:
    """The reconciliation job (DESIGN §4): at the listener's last confirmed block, the
    contract's balance against the ledger's liabilities by bucket, the contract's surplus
    (BNB no event accounts for: forced, pre-funded, bounced) reported apart from a deficit, and
    each recipient's on-chain payouts against its settled rewards. Stored; a difference raises
    an alert (metric and error log). The surplus the listener credited to the company is
    reported as `surplus_credited` (docs/settlement.md "Surplus")."""
    block, _ = await monitoring.confirmed_block(session)
    block = max(block, 0)
    address = AsyncWeb3.to_checksum_address(contract)
    balance = int(await w3.eth.get_balance(address, block))
    surplus = await contract_surplus(w3, contract, block)
    # Credited surplus (the listener credits it to the company in the range it appears) is in
    # the liabilities until a batch draws it (`SurplusDrawn`); the contract's `surplus()` still
    # counts it. What remains is not credited yet. Less than nothing means the contract lost
    # BNB the ledger still owes: it must show as a deficit, never net to zero.
    credited = await repo.surplus_outstanding(session, block)
    uncredited = surplus - credited
    anomaly_in, anomaly_out = await monitoring.anomaly_flows(session)
    on_chain = await repo.paid_on_chain_by_recipient(session)
    settled = await repo.settled_by_recipient(session)
    mismatches = [
        {"recipient": r, "onChain": str(on_chain.get(r, 0)), "settled": str(settled.get(r, 0))}
        for r in sorted(set(on_chain) | set(settled))
        if on_chain.get(r, 0) != settled.get(r, 0)
    ]
    owed = await rewards.liabilities(session)
    # A surplus explains balance beyond the liabilities; it can never hide a deficit, because
    # it is subtracted first: what remains must equal the liabilities exactly.
    difference = balance - max(uncredited, 0) - sum(owed.values()) - anomaly_in + anomaly_out
    ok = difference == 0 and not mismatches
    report = ReconciliationReport(
        block_number=block,
        contract_balance=balance,
        liabilities=sum(owed.values()),
        buckets={k: str(v) for k, v in owed.items()},
        surplus=surplus,
        deficit=max(0, -difference),
        difference=difference,
        recipient_mismatches=mismatches,
        surplus_credited=credited,
        ok=ok,
    )
    repo.add_report(session, report)
    await session.flush()
    RECONCILIATION_DIFFERENCE.set(difference)
    RECONCILIATION_MISMATCHES.set(len(mismatches))
    if not report.ok:
        log.error(
            "reconciliation difference",
            block=block,
            difference=str(difference),
            surplus=str(surplus),
            uncredited_surplus=str(uncredited),
            mismatches=len(mismatches),
        )
    elif uncredited > 0:
        log.warning("contract surplus not credited yet", block=block, surplus=str(surplus))
    return report


async def surplus_outstanding(session: AsyncSession, block: int) -> int:
    """Surplus credited to the company and not yet drawn by a batch, at `block`."""
    return await repo.surplus_outstanding(session, block)


async def batches_executed_between(session: AsyncSession, after: int, upto: int) -> list[int]:
    return await repo.batches_executed_between(session, after, upto)


async def add_surplus_credit(
    session: AsyncSession, amount: int, block: int, contract_surplus: int, reason: str
) -> int:
    """Record a surplus credit; returns its id (its reward line is the ledger's to write)."""
    credit = SurplusCredit(
        amount=amount, block_number=block, contract_surplus=contract_surplus, reason=reason
    )
    repo.add_surplus_credit(session, credit)
    await session.flush()
    return credit.id


# ----------------------------------------------------------------------- transfers (M of N)


def _approver(settings: Settings, wallet: str) -> str:
    approvers = {a.lower() for a in settings.treasury_approvers}
    if wallet.lower() not in approvers:
        raise NotAnApprover(f"{wallet} is not one of the configured treasury approvers")
    return AsyncWeb3.to_checksum_address(wallet)


async def _company(session: AsyncSession, settings: Settings) -> int:
    company = await repo.user_id_of(session, settings.company_wallet)
    if company is None:
        raise InsufficientCompanyBalance("the company root is not seeded")
    return company


async def propose_transfer(
    session: AsyncSession, settings: Settings, proposer: str, amount: int, reason: str
) -> TreasuryTransfer:
    """A transfer of `amount` of the company's pending rewards, approved by its proposer. It
    executes (as a company payout) once `treasury_required_approvals` approvers agreed."""
    wallet = _approver(settings, proposer)
    company = await _company(session, settings)
    balance = await rewards.balance(session, company)
    pending = int(balance.pending) if balance else 0
    if amount > pending:
        raise InsufficientCompanyBalance(
            f"the company has {pending} wei pending", pending=str(pending)
        )
    transfer = TreasuryTransfer(
        amount=amount,
        reason=reason,
        status=TransferStatus.PROPOSED,
        proposed_by=wallet,
        approvals=[wallet],
    )
    repo.add_transfer(session, transfer)
    await session.flush()
    return transfer


async def approve_transfer(
    session: AsyncSession, settings: Settings, approver: str, transfer_id: int
) -> tuple[TreasuryTransfer, int | None]:
    """Add an approval. Returns the transfer and, when this approval reached the threshold,
    the company's user id to pay out (the caller hands it to the settlement worker)."""
    wallet = _approver(settings, approver)
    transfer = await repo.transfer_for_update(session, transfer_id)
    if transfer is None:
        raise TransferNotFound(f"no treasury transfer {transfer_id}")
    if transfer.status != TransferStatus.PROPOSED:
        raise TransferWrongState(f"transfer {transfer_id} is {transfer.status}")
    if wallet in transfer.approvals:
        raise AlreadyApproved(f"{wallet} approved transfer {transfer_id} already")
    transfer.approvals = [*transfer.approvals, wallet]
    transfer.updated_at = datetime.now(UTC)
    if len(transfer.approvals) < settings.treasury_required_approvals:
        return transfer, None
    transfer.status = TransferStatus.APPROVED
    return transfer, await _company(session, settings)


def enqueue_company_payout(redis_url: str, company_id: int, transfer_id: int) -> None:
    """Nudge the settlement worker's `build_batches` for the company (queue `settlement`; the
    payouts domain's actor, named here because treasury may not import payouts)."""
    broker = RedisBroker(url=redis_url)  # type: ignore[no-untyped-call]
    try:
        broker.enqueue(
            dramatiq.Message(
                queue_name="settlement",
                actor_name="build_batches",
                args=(f"treasury:{transfer_id}", company_id),
                kwargs={},
                options={},
            )
        )
    finally:
        broker.close()
