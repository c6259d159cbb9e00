"""The signer signs only what the ledger holds (docs/signer.md "Ledger checks"): each forged
payload is refused by the rule it breaks, and the refusal is audited."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import pytest

from backend.plan.config import DEFAULT_PLAN_PATH, load_plan
from signer.audit import read_records
from signer.policy import Refused
from signer.service import SigningService
from tests.signer.conftest import ETHER, ServiceFactory
from tests.signer.ledger_rows import LedgerRows, new_address


async def refused(service: SigningService, primary: str, msg: dict[str, Any]) -> Refused:
    with pytest.raises(Refused) as info:
        await service.sign(primary, msg)
    service.audit.flush()
    last = list(read_records(service.audit.path))[-1]
    assert (last["event"], last["rule"]) == ("refusal", info.value.rule)  # audited by name
    return info.value


# --- Registration ----------------------------------------------------------------------------


async def test_a_reserved_registration_is_signed_and_again_on_a_retry(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    first = await service.sign("Registration", msg)
    retry = await service.sign("Registration", msg)  # the wallet lost the first answer
    assert retry.signature == first.signature


async def test_a_registration_of_amount_zero_is_refused(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    exc = await refused(service, "Registration", msg | {"amount": "0"})
    assert (exc.rule, exc.status) == ("payload-mismatch", 403)
    # Even when the payload row itself says 0 (the API wrote it so): not the plan's price.
    zero = await ledger.registration(amount=0)
    assert (await refused(service, "Registration", zero)).rule == "amount-not-plan-price"


async def test_a_registration_for_a_slot_not_leased_to_the_user_is_refused(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    assert (await refused(service, "Registration", msg | {"slot": "999999"})).rule == (
        "lease-mismatch"
    )
    other = await ledger.registration()  # a slot leased, but to someone else
    exc = await refused(service, "Registration", msg | {"slot": other["slot"]})
    assert exc.rule == "lease-mismatch"
    beyond_bigint = msg | {"slot": str(2**64)}
    assert (await refused(service, "Registration", beyond_bigint)).rule == "lease-mismatch"


async def test_a_registration_whose_lease_lapsed_or_moved_on_is_refused(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    await ledger.conn.execute(
        "UPDATE slot_leases SET status = 'free', user_id = NULL, referrer_id = NULL, "
        "transaction_id = NULL WHERE slot = $1",
        int(msg["slot"]),
    )
    assert (await refused(service, "Registration", msg)).rule == "lease-mismatch"


async def test_a_registration_of_a_user_as_its_own_referrer_is_refused(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    exc = await refused(service, "Registration", msg | {"referrer": msg["user"]})
    assert exc.rule == "referrer-not-eligible"
    # A lease written with the user as its own referrer (by a compromised API) is refused too.
    user = await ledger.participant(status="pending")
    own = await ledger.registration(user=user, referrer=user)
    assert (await refused(service, "Registration", own)).rule == "referrer-not-eligible"


@pytest.mark.parametrize(("status", "frozen"), [("pending", False), ("active", True)])
async def test_a_referrer_that_is_not_an_active_unfrozen_participant_is_refused(
    service: SigningService, ledger: LedgerRows, status: str, frozen: bool
) -> None:
    referrer = await ledger.participant(status=status, frozen=frozen)
    msg = await ledger.registration(referrer=referrer)
    assert (await refused(service, "Registration", msg)).rule == "referrer-not-eligible"


async def test_a_registration_for_another_referrer_than_the_lease_is_refused(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    other = await ledger.participant()
    exc = await refused(service, "Registration", msg | {"referrer": other.wallet})
    assert exc.rule == "referrer-not-eligible"


async def test_a_registration_the_ledger_never_wrote_is_refused(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    unknown = msg | {"nonce": str(int(msg["nonce"]) + 10**9)}
    assert (await refused(service, "Registration", unknown)).rule == "payload-unknown"
    stranger = msg | {"user": new_address()}
    assert (await refused(service, "Registration", stranger)).rule == "payload-mismatch"
    later = msg | {"deadline": msg["deadline"] + 60}
    assert (await refused(service, "Registration", later)).rule == "payload-mismatch"


async def test_a_confirmed_registration_is_not_signed_again(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    await ledger.conn.execute(
        "UPDATE transactions SET status = 'confirmed' WHERE nonce = $1", int(msg["nonce"])
    )
    assert (await refused(service, "Registration", msg)).rule == "payload-not-pending"


async def test_only_the_plan_in_force_is_signed(
    service_factory: ServiceFactory, ledger: LedgerRows
) -> None:
    service = await service_factory()
    msg = await ledger.registration()
    v2 = load_plan(DEFAULT_PLAN_PATH).model_copy(update={"version": 2})
    # Published for later: v1 stays in force until v2's effective time.
    await ledger.publish_plan(v2, effective_in=3600)
    await service.sign("Registration", msg)
    await ledger.conn.execute("UPDATE plan_versions SET effective_from = now() WHERE version = 2")
    exc = await refused(service, "Registration", await ledger.registration())
    assert exc.rule == "plan-not-in-force"


async def test_a_plan_whose_document_was_swapped_is_refused(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    await ledger.conn.execute(
        "UPDATE plan_versions SET document = jsonb_set(document, '{level_prices,0}', '\"0\"')"
    )
    exc = await refused(service, "Registration", msg)
    assert exc.rule == "plan-not-in-force"
    assert "does not hash" in exc.detail


# --- Retopup ---------------------------------------------------------------------------------


async def test_a_retopup_of_an_active_participant_at_the_plan_price_is_signed(
    service: SigningService, ledger: LedgerRows
) -> None:
    await service.sign("Retopup", await ledger.retopup())


@pytest.mark.parametrize(("status", "frozen"), [("pending", False), ("active", True)])
async def test_a_retopup_of_a_user_who_cannot_retop_up_is_refused(
    service: SigningService, ledger: LedgerRows, status: str, frozen: bool
) -> None:
    user = await ledger.participant(status=status, frozen=frozen)
    msg = await ledger.retopup(user=user)
    assert (await refused(service, "Retopup", msg)).rule == "user-not-eligible"


async def test_a_retopup_below_the_plan_price_is_refused(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.retopup(amount=ETHER)
    assert (await refused(service, "Retopup", msg)).rule == "amount-not-plan-price"
    registered = await ledger.registration()  # a registration's nonce is not a retopup
    as_retopup = {k: registered[k] for k in ("user", "amount", "planHash", "nonce", "deadline")}
    assert (await refused(service, "Retopup", as_retopup)).rule == "payload-unknown"


# --- PayoutBatch -----------------------------------------------------------------------------


async def test_a_built_batch_is_signed_and_again_once_signed(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.batch([3 * ETHER, ETHER])
    first = await service.sign("PayoutBatch", msg)
    await ledger.conn.execute(
        "UPDATE payout_batches SET status = 'signed' WHERE id = $1", int(msg["batchId"])
    )
    assert (await service.sign("PayoutBatch", msg)).signature == first.signature


async def test_a_batch_of_six_bnb_to_a_random_address_is_refused(
    service: SigningService, ledger: LedgerRows
) -> None:
    forged = {
        "batchId": "77",
        "payouts": [{"recipient": new_address(), "amount": str(6 * ETHER)}],
        "nonce": "77",
        "deadline": int(time.time()) + 600,
    }
    assert (await refused(service, "PayoutBatch", forged)).rule == "batch-unknown"
    # The id, nonce and deadline of a real batch, another recipient: not its lines.
    real = await ledger.batch([6 * ETHER])
    redirected = real | {"payouts": [{"recipient": new_address(), "amount": str(6 * ETHER)}]}
    assert (await refused(service, "PayoutBatch", redirected)).rule == "batch-mismatch"
    more = real | {"payouts": [{**real["payouts"][0], "amount": str(7 * ETHER)}]}
    assert (await refused(service, "PayoutBatch", more)).rule == "batch-mismatch"
    extra = real | {"payouts": [*real["payouts"], {"recipient": new_address(), "amount": "1"}]}
    assert (await refused(service, "PayoutBatch", extra)).rule == "batch-mismatch"
    assert (await refused(service, "PayoutBatch", real | {"nonce": "1"})).rule == ("batch-mismatch")


@pytest.mark.parametrize("status", ["submitted", "executed", "expired"])
async def test_a_batch_past_signing_is_refused(
    service: SigningService, ledger: LedgerRows, status: str
) -> None:
    msg = await ledger.batch([ETHER], status=status)
    assert (await refused(service, "PayoutBatch", msg)).rule == "batch-unknown"


async def test_a_line_whose_rewards_do_not_sum_to_it_is_refused(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.batch([2 * ETHER])
    # One of its rewards went back to pending: the line now pays more than is batched.
    await ledger.conn.execute(
        "UPDATE payout_lines SET amount = amount + 1 WHERE batch_id = $1", int(msg["batchId"])
    )
    await ledger.conn.execute(
        "UPDATE payout_batches SET total = total + 1 WHERE id = $1", int(msg["batchId"])
    )
    inflated = msg | {"payouts": [{**msg["payouts"][0], "amount": str(2 * ETHER + 1)}]}
    assert (await refused(service, "PayoutBatch", inflated)).rule == "rewards-mismatch"
    await ledger.conn.execute(
        "UPDATE payout_lines SET amount = amount - 1 WHERE batch_id = $1", int(msg["batchId"])
    )
    await ledger.conn.execute(
        "UPDATE payout_batches SET total = total - 1 WHERE id = $1", int(msg["batchId"])
    )


async def test_a_frozen_recipient_is_refused(service: SigningService, ledger: LedgerRows) -> None:
    who = await ledger.participant(frozen=True)
    msg = await ledger.batch([ETHER], recipients=[who])
    assert (await refused(service, "PayoutBatch", msg)).rule == "recipient-unknown"


async def test_a_reward_is_not_signed_out_in_two_live_batches(
    service: SigningService, ledger: LedgerRows
) -> None:
    first = await ledger.batch([ETHER])
    await service.sign("PayoutBatch", first)
    # The same rewards moved under a new batch while the first may still execute.
    second_id = ledger.unique()
    await ledger.conn.execute(
        "INSERT INTO payout_batches (id, status, total, recipient_count, nonce, deadline, "
        "attempts) SELECT $1, 'built', total, recipient_count, $2, deadline, 0 "
        "FROM payout_batches WHERE id = $3",
        second_id,
        second_id,
        int(first["batchId"]),
    )
    await ledger.conn.execute(
        "UPDATE payout_lines SET batch_id = $1 WHERE batch_id = $2",
        second_id,
        int(first["batchId"]),
    )
    await ledger.conn.execute(
        "UPDATE rewards SET batch_id = $1 WHERE batch_id = $2", second_id, int(first["batchId"])
    )
    second = first | {"batchId": str(second_id), "nonce": str(second_id)}
    before = service.policy.rolling_total
    assert (await refused(service, "PayoutBatch", second)).rule == "reward-in-live-batch"
    assert service.policy.rolling_total == before  # nothing counted for the refused batch


# --- failing closed --------------------------------------------------------------------------


async def test_without_an_answer_from_the_ledger_nothing_is_signed(
    service: SigningService, ledger: LedgerRows, database_url: str
) -> None:
    msg = await ledger.registration()
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        # The signer's connections are cut and it may not open new ones.
        await admin.execute(f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE usename = 'autopool_signer' AND datname = $1",
            name,
        )
        exc = await refused(service, "Registration", msg)
        assert (exc.rule, exc.status) == ("ledger-unavailable", 503)
    finally:
        await admin.execute(f'GRANT CONNECT ON DATABASE "{name}" TO PUBLIC')
        await admin.close()
    await service.sign("Registration", msg)  # and signs once the ledger answers again


async def test_a_ledger_check_that_times_out_is_refused(
    service: SigningService, ledger: LedgerRows, database_url: str
) -> None:
    msg = await ledger.registration()
    blocker = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        # An exclusive lock on the payloads: the signer's read waits, then gives up.
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE")
        service.ledger.timeout = 0.3  # type: ignore[attr-defined]
        exc = await refused(service, "Registration", msg)
        assert (exc.rule, exc.status) == ("ledger-unavailable", 503)
        await tx.rollback()
    finally:
        await blocker.close()
    await service.sign("Registration", msg)  # and signs once the ledger answers again
