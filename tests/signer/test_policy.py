"""Each policy rule refuses with its own name, is audited, and is counted."""

from __future__ import annotations

import time
from typing import Any

import pytest

from signer.audit import read_records
from signer.policy import Policy, RateLimit, Refused
from signer.service import SigningService
from tests.signer.conftest import ETHER, ServiceFactory, batch, registration
from tests.signer.ledger_rows import LedgerRows


async def refusal(
    service: SigningService, primary: str, msg: object, domain: object = None
) -> Refused:
    with pytest.raises(Refused) as info:
        await service.sign(primary, msg, domain)
    return info.value


def audit_events(service: SigningService) -> list[dict[str, Any]]:
    service.audit.flush()
    return list(read_records(service.audit.path))


async def test_signature_is_audited_with_its_digest(
    service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    signed = await service.sign("Registration", msg)
    [record] = audit_events(service)
    assert record["event"] == "signature"
    assert record["digest"] == "0x" + signed.digest.hex()
    assert record["signature"] == "0x" + signed.signature.hex()
    assert record["message"] == msg


@pytest.mark.parametrize(
    ("primary", "msg", "rule", "status"),
    [
        ("Mint", registration(), "unknown-type", 422),
        ("Registration", {"user": "0x00"}, "invalid-message", 422),
        ("Registration", registration(deadline=int(time.time()) - 1), "deadline-expired", 403),
        ("Registration", registration(deadline=int(time.time()) + 7200), "deadline-too-far", 403),
        ("PayoutBatch", batch([]), "batch-empty", 403),
        ("PayoutBatch", batch([ETHER] * 6), "batch-recipient-cap", 403),
        ("PayoutBatch", batch([60 * ETHER, 41 * ETHER]), "batch-total-cap", 403),
    ],
)
async def test_rules_refuse_by_name(
    service: SigningService, primary: str, msg: object, rule: str, status: int
) -> None:
    exc = await refusal(service, primary, msg)
    assert (exc.rule, exc.status) == (rule, status)
    [record] = audit_events(service)
    assert record["event"] == "refusal"
    assert record["rule"] == rule
    assert ("digest" in record) and (record["digest"] is None) == (status == 422)
    metric = service.metrics.registry.get_sample_value(
        "autopool_signer_refusals_total", {"rule": rule}
    )
    assert metric == 1.0


async def test_type_not_allowed(
    service_factory: ServiceFactory, settings_factory: Any, ledger: LedgerRows
) -> None:
    svc = await service_factory(settings_factory(allowed_types="Registration,Retopup"))
    assert (await refusal(svc, "PayoutBatch", batch([ETHER]))).rule == "type-not-allowed"
    await svc.sign("Registration", await ledger.registration())


async def test_domain_mismatch(service: SigningService, ledger: LedgerRows) -> None:
    msg = await ledger.registration()
    assert (await refusal(service, "Registration", msg, {"chainId": 56})).rule == (
        "domain-mismatch"
    )
    other = {"chainId": 31337, "verifyingContract": "0x" + "99" * 20}
    assert (await refusal(service, "Registration", msg, other)).rule == "domain-mismatch"
    ok = {"chainId": 31337, "verifyingContract": service.policy.contract.upper().replace("X", "x")}
    await service.sign("Registration", msg, ok)


async def test_rolling_24h_cap_counts_batches_and_not_identical_resigns(
    service: SigningService, ledger: LedgerRows
) -> None:
    await service.sign("PayoutBatch", await ledger.batch([100 * ETHER]))
    second = await ledger.batch([100 * ETHER])
    first = await service.sign("PayoutBatch", second)
    again = await service.sign("PayoutBatch", second)  # same digest: counted once
    assert again.signature == first.signature
    assert service.policy.rolling_total == 200 * ETHER
    exc = await refusal(service, "PayoutBatch", await ledger.batch([51 * ETHER]))
    assert exc.rule == "rolling-24h-cap"
    await service.sign("PayoutBatch", await ledger.batch([50 * ETHER]))
    assert service.policy.rolling_total == 250 * ETHER


async def test_rolling_window_forgets_after_24_hours(
    service: SigningService, settings_factory: Any, ledger: LedgerRows
) -> None:
    now = [time.time()]
    service.policy = Policy(settings_factory(), clock=lambda: now[0])
    await service.sign("PayoutBatch", await ledger.batch([100 * ETHER]))
    await service.sign("PayoutBatch", await ledger.batch([100 * ETHER]))
    now[0] += 86_401
    later = await ledger.batch([100 * ETHER], deadline=int(now[0]) + 600)
    await service.sign("PayoutBatch", later)
    assert service.policy.rolling_total == 100 * ETHER


async def test_rate_limit_per_type(
    service_factory: ServiceFactory, settings_factory: Any, ledger: LedgerRows
) -> None:
    svc = await service_factory(settings_factory(rate_limit_registration="3/minute"))
    for _ in range(3):
        await svc.sign("Registration", await ledger.registration())
    exc = await refusal(svc, "Registration", await ledger.registration())
    assert (exc.rule, exc.status) == ("rate-limit", 429)
    await svc.sign("Retopup", await ledger.retopup())


def test_gcra_allows_burst_then_refills() -> None:
    limit = RateLimit(2, 1.0)
    t = 100.0
    assert limit.allows(t)
    limit.take(t)
    assert limit.allows(t)
    limit.take(t)
    assert not limit.allows(t)
    assert limit.allows(t + 0.5)


async def test_failed_signing_releases_the_reservation(
    service: SigningService, ledger: LedgerRows
) -> None:
    class Broken:
        address = service.address
        blocking = False

        def sign_digest(self, digest: bytes) -> bytes:
            raise RuntimeError("hsm unplugged")

    service.key = Broken()
    with pytest.raises(RuntimeError):
        await service.sign("PayoutBatch", await ledger.batch([100 * ETHER]))
    assert service.policy.rolling_total == 0
