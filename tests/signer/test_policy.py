"""Each policy rule refuses with its own name, is audited, and is counted."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from signer.keys import LocalKey
from signer.main import build_service
from signer.policy import Policy, RateLimit, Refused
from signer.service import SigningService
from signer.settings import SignerSettings
from tests.signer.conftest import DEV_SIGNER_KEY, ETHER, batch, registration


def refusal(service: SigningService, primary: str, msg: object, domain: object = None) -> Refused:
    with pytest.raises(Refused) as info:
        service.sign(primary, msg, domain)
    return info.value


def audit_events(service: SigningService) -> list[dict[str, object]]:
    from signer.audit import read_records

    service.audit.flush()
    return list(read_records(service.audit.path))


def test_signature_is_audited_with_its_digest(service: SigningService) -> None:
    signed = service.sign("Registration", registration())
    [record] = audit_events(service)
    assert record["event"] == "signature"
    assert record["digest"] == "0x" + signed.digest.hex()
    assert record["signature"] == "0x" + signed.signature.hex()
    assert record["message"] == registration() | {"deadline": record["message"]["deadline"]}  # type: ignore[index]


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
def test_rules_refuse_by_name(
    service: SigningService, primary: str, msg: object, rule: str, status: int
) -> None:
    exc = refusal(service, primary, msg)
    assert (exc.rule, exc.status) == (rule, status)
    [record] = audit_events(service)
    assert record["event"] == "refusal"
    assert record["rule"] == rule
    assert ("digest" in record) and (record["digest"] is None) == (status == 422)
    metric = service.metrics.registry.get_sample_value(
        "autopool_signer_refusals_total", {"rule": rule}
    )
    assert metric == 1.0


def test_type_not_allowed(settings_factory: Callable[..., SignerSettings]) -> None:
    svc = build_service(settings_factory(allowed_types="Registration,Retopup"))
    try:
        assert refusal(svc, "PayoutBatch", batch([ETHER])).rule == "type-not-allowed"
        svc.sign("Registration", registration())
    finally:
        svc.audit.close()


def test_domain_mismatch(service: SigningService) -> None:
    assert refusal(service, "Registration", registration(), {"chainId": 56}).rule == (
        "domain-mismatch"
    )
    other = {"chainId": 31337, "verifyingContract": "0x" + "99" * 20}
    assert refusal(service, "Registration", registration(), other).rule == "domain-mismatch"
    ok = {"chainId": 31337, "verifyingContract": service.policy.contract.upper().replace("X", "x")}
    service.sign("Registration", registration(), ok)


def test_rolling_24h_cap_counts_batches_and_not_identical_resigns(
    service: SigningService,
) -> None:
    deadline = int(time.time()) + 600  # one deadline: identical batches have one digest

    def b(amount: int, batch_id: int) -> dict[str, object]:
        return batch([amount], batchId=batch_id, deadline=deadline)

    service.sign("PayoutBatch", b(100 * ETHER, 1))
    first = service.sign("PayoutBatch", b(100 * ETHER, 2))
    again = service.sign("PayoutBatch", b(100 * ETHER, 2))  # same digest: counted once
    assert again.signature == first.signature
    assert service.policy.rolling_total == 200 * ETHER
    exc = refusal(service, "PayoutBatch", b(51 * ETHER, 3))
    assert exc.rule == "rolling-24h-cap"
    service.sign("PayoutBatch", b(50 * ETHER, 3))
    assert service.policy.rolling_total == 250 * ETHER


def test_rolling_window_is_rebuilt_from_the_audit_log(
    tmp_path: Path, settings_factory: Callable[..., SignerSettings]
) -> None:
    settings = settings_factory()
    first = build_service(settings)
    first.sign("PayoutBatch", batch([100 * ETHER], batchId=1))
    first.sign("PayoutBatch", batch([100 * ETHER], batchId=2))
    first.audit.close()
    restarted = build_service(settings, key=LocalKey.from_hex(DEV_SIGNER_KEY))
    try:
        assert restarted.policy.rolling_total == 200 * ETHER
        exc = refusal(restarted, "PayoutBatch", batch([51 * ETHER], batchId=3))
        assert exc.rule == "rolling-24h-cap"
    finally:
        restarted.audit.close()


def test_rolling_window_forgets_after_24_hours(
    settings_factory: Callable[..., SignerSettings],
) -> None:
    now = [time.time()]
    policy = Policy(settings_factory(), clock=lambda: now[0])
    svc = build_service(settings_factory())
    svc.policy = policy
    try:
        deadline = int(now[0]) + 600
        svc.sign("PayoutBatch", batch([100 * ETHER], batchId=1, deadline=deadline))
        svc.sign("PayoutBatch", batch([100 * ETHER], batchId=2, deadline=deadline))
        now[0] += 86_401
        deadline = int(now[0]) + 600
        svc.sign("PayoutBatch", batch([100 * ETHER], batchId=3, deadline=deadline))
        assert policy.rolling_total == 100 * ETHER
    finally:
        svc.audit.close()


def test_rate_limit_per_type(settings_factory: Callable[..., SignerSettings]) -> None:
    svc = build_service(settings_factory(rate_limit_registration="3/minute"))
    try:
        for n in range(3):
            svc.sign("Registration", registration(nonce=n))
        exc = refusal(svc, "Registration", registration(nonce=9))
        assert (exc.rule, exc.status) == ("rate-limit", 429)
        svc.sign(
            "Retopup", {k: v for k, v in registration().items() if k not in ("referrer", "slot")}
        )
    finally:
        svc.audit.close()


def test_gcra_allows_burst_then_refills() -> None:
    limit = RateLimit(2, 1.0)
    t = 100.0
    assert limit.allows(t)
    limit.take(t)
    assert limit.allows(t)
    limit.take(t)
    assert not limit.allows(t)
    assert limit.allows(t + 0.5)


def test_failed_signing_releases_the_reservation(service: SigningService) -> None:
    class Broken:
        address = service.address
        blocking = False

        def sign_digest(self, digest: bytes) -> bytes:
            raise RuntimeError("hsm unplugged")

    service.key = Broken()
    with pytest.raises(RuntimeError):
        service.sign("PayoutBatch", batch([100 * ETHER]))
    assert service.policy.rolling_total == 0
