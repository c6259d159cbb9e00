"""Configuration guards, the CLI, a KMS-style key through the service, thread-safe keccak."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from coincurve import PrivateKey
from pydantic import ValidationError

from backend.chain.typed_data import _keccak_reference, keccak256
from devtools.processes import REPO_ROOT
from signer.audit import read_records
from signer.keys import AwsKmsKey, LocalKey
from signer.service import SigningService
from signer.settings import SignerSettings
from tests.signer.conftest import DEV_SIGNER_KEY, ServiceFactory
from tests.signer.ledger_rows import LedgerRows


@pytest.mark.parametrize("chain_id", [56, 97, 1, 204])
def test_a_raw_key_is_refused_on_every_chain_but_a_local_devnet(
    settings_factory: Callable[..., SignerSettings], chain_id: int
) -> None:
    with pytest.raises(ValidationError, match=f"refused on chain {chain_id}"):
        settings_factory(chain_id=chain_id)
    for devnet in (31337, 1337):
        assert settings_factory(chain_id=devnet).key_backend == "raw"


def test_keystore_needs_a_password_and_a_token_is_required(
    settings_factory: Callable[..., SignerSettings], tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match="PASSWORD"):
        settings_factory(key_backend="keystore", keystore_path=tmp_path / "k.json")
    with pytest.raises(ValidationError, match="AUTH_TOKEN"):
        settings_factory(auth_token=None)


def test_short_token_and_unknown_types_are_rejected(
    settings_factory: Callable[..., SignerSettings],
) -> None:
    with pytest.raises(ValueError, match="at least 32"):
        settings_factory(auth_token="short").token()
    with pytest.raises(ValidationError, match="unknown payload types"):
        settings_factory(allowed_types="Registration,Mint")
    assert settings_factory(allowed_types="Retopup").allowed_types == ("Retopup",)


def test_bad_configuration_exits_2_without_serving(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "signer"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "AUTOPOOL_SIGNER_CHAIN_ID": "31337"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "configuration error" in out.stderr


def verify_audit(path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOOL_SIGNER_")}
    return subprocess.run(
        [sys.executable, "-m", "signer", "verify-audit", str(path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_verify_audit_cli(service: SigningService, ledger: LedgerRows) -> None:
    msg = await ledger.registration()
    await service.sign("Registration", msg)
    await service.aclose()
    path = service.audit.path
    ok = verify_audit(path)
    assert ok.returncode == 0 and "1 records, hash chain intact" in ok.stdout
    path.write_text(path.read_text().replace(f'"slot":"{msg["slot"]}"', '"slot":"2"'))
    bad = verify_audit(path)
    assert bad.returncode == 1 and "INVALID" in bad.stderr


async def test_a_blocking_kms_key_signs_through_the_service(
    service_factory: ServiceFactory, ledger: LedgerRows
) -> None:
    secret = PrivateKey(bytes.fromhex(DEV_SIGNER_KEY[2:]))
    threads: list[str] = []

    def sign_der(digest: bytes) -> bytes:
        threads.append(threading.current_thread().name)
        return secret.sign(digest, hasher=None)

    kms = AwsKmsKey(sign_der, secret.public_key.format(compressed=False))
    svc = await service_factory(key=kms)
    signed = await svc.sign("Registration", await ledger.registration())
    svc.audit.flush()
    local = LocalKey.from_hex(DEV_SIGNER_KEY)
    assert signed.signature == local.sign_digest(signed.digest)
    assert threads and threads[0] != threading.main_thread().name  # off the event loop
    assert [r["signer"] for r in read_records(svc.audit.path)] == [local.address]


def test_keccak_is_thread_safe() -> None:
    inputs = [bytes([i]) * (i * 7 % 300) for i in range(200)]
    expected = [_keccak_reference(x) for x in inputs]
    failures: list[int] = []

    def work() -> None:
        for _ in range(20):
            for i, x in enumerate(inputs):
                if keccak256(x) != expected[i]:
                    failures.append(i)

    workers = [threading.Thread(target=work) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []
