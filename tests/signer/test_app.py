"""The HTTP surface: bearer auth, problem+json refusals, health, address, metrics."""

from __future__ import annotations

from asyncio import sleep as asyncio_sleep
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from backend.chain.signer_client import SignerClient, SignerRefused, SignerUnavailable
from backend.chain.typed_data import Domain, full_message
from devtools.processes import free_port, start_signer
from signer.app import create_app
from signer.audit import read_records
from signer.service import SigningService
from tests.signer.conftest import (
    CONTRACT,
    DEV_SIGNER_KEY,
    ETHER,
    TOKEN,
    batch,
    process_env,
    registration,
)
from tests.signer.ledger_rows import LedgerRows


@pytest.fixture
async def http(service: SigningService) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(service, TOKEN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://signer"
    ) as client:
        yield client


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
async def test_sign_without_valid_token_is_401_and_signs_nothing(
    http: httpx.AsyncClient, service: SigningService, headers: dict[str, str]
) -> None:
    r = await http.post(
        "/sign", json={"primaryType": "Registration", "message": registration()}, headers=headers
    )
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["type"] == "https://autopool.dev/problems/signer/unauthorized"
    assert service.audit.seq == 0
    assert (
        service.metrics.registry.get_sample_value(
            "autopool_signer_signatures_total", {"type": "Registration"}
        )
        == 0
    )


async def test_sign_returns_the_eth_account_signature(
    http: httpx.AsyncClient, service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()  # uint256 as decimal strings are accepted
    r = await http.post("/sign", json={"primaryType": "Registration", "message": msg}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    as_ints = msg | {k: int(msg[k]) for k in ("slot", "amount", "nonce")}
    expected = Account.sign_typed_data(
        DEV_SIGNER_KEY,
        full_message=full_message(Domain(31337, CONTRACT), "Registration", as_ints),
    )
    assert body["signature"] == "0x" + bytes(expected.signature).hex()
    assert body["digest"] == "0x" + bytes(expected.message_hash).hex()
    assert body["signer"] == Account.from_key(DEV_SIGNER_KEY).address
    assert service.audit.path.read_text().count("\n") == 1  # written before the reply


async def test_refusal_is_problem_json_naming_the_rule(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/sign", json={"primaryType": "PayoutBatch", "message": batch([ETHER] * 6)}, headers=AUTH
    )
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"] == "https://autopool.dev/problems/signer/batch-recipient-cap"
    assert problem["rule"] == "batch-recipient-cap"
    assert problem["status"] == 403
    assert "6 recipients" in problem["detail"]


async def test_malformed_body_is_422(http: httpx.AsyncClient) -> None:
    r = await http.post("/sign", content=b"not json", headers=AUTH)
    assert (r.status_code, r.json()["rule"]) == (422, "invalid-json")
    r = await http.post(
        "/sign",
        json={"primaryType": "Registration", "message": registration(slot=-1)},
        headers=AUTH,
    )
    assert (r.status_code, r.json()["rule"]) == (422, "invalid-message")
    assert "slot" in r.json()["detail"]


async def test_oversized_or_deeply_nested_bodies_are_refused(http: httpx.AsyncClient) -> None:
    r = await http.post("/sign", content=b"[" * 300_000, headers=AUTH)
    assert (r.status_code, r.json()["rule"]) == (413, "body-too-large")
    r = await http.post("/sign", content=b"[" * 100_000, headers=AUTH)
    assert (r.status_code, r.json()["rule"]) == (422, "invalid-json")


async def test_health_address_and_metrics(
    http: httpx.AsyncClient, service: SigningService, ledger: LedgerRows
) -> None:
    msg = await ledger.registration()
    await http.post("/sign", json={"primaryType": "Registration", "message": msg}, headers=AUTH)
    await http.post(
        "/sign",
        json={"primaryType": "Registration", "message": registration(deadline=1)},
        headers=AUTH,
    )
    health = (await http.get("/health")).json()
    assert health["status"] == "ok"
    assert health["address"] == service.address
    assert health["chainId"] == 31337
    assert health["auditSeq"] == 2
    assert 0 <= health["anchoredSeq"] <= 2
    assert (await http.get("/address")).json() == {"address": service.address}
    text = (await http.get("/metrics")).text
    assert 'autopool_signer_signatures_total{type="Registration"} 1.0' in text
    assert 'autopool_signer_refusals_total{rule="deadline-expired"} 1.0' in text
    assert 'autopool_signer_sign_seconds_count{type="Registration"} 1.0' in text


async def test_client_against_the_running_service(
    tmp_path: Path, ledger: LedgerRows, signer_state: str
) -> None:
    env = process_env(tmp_path, signer_state, max_batch_total_wei=str(100 * ETHER))
    sp = start_signer(env, tmp_path / "signer.log")
    try:
        async with SignerClient(sp.url, TOKEN) as client:
            sig = await client.sign("Registration", await ledger.registration())
            assert sig.signer == await client.address()
            with pytest.raises(SignerRefused) as info:
                await client.sign("PayoutBatch", batch([60 * ETHER, 41 * ETHER]))
            assert (info.value.rule, info.value.status) == ("batch-total-cap", 403)
        async with SignerClient(sp.url, "nope") as intruder:
            with pytest.raises(SignerRefused) as info:
                await intruder.sign("Registration", registration())
            assert (info.value.rule, info.value.status) == ("unauthorized", 401)
    finally:
        sp.stop()
    assert "WARNING: key_backend=raw" in sp.log()  # the loud development-key warning
    events = [r["event"] for r in read_records(tmp_path / "audit.jsonl")]
    assert events == ["signature", "refusal"]


async def test_client_reports_an_unreachable_signer() -> None:
    async with SignerClient(f"http://127.0.0.1:{free_port()}", TOKEN, timeout=1) as client:
        with pytest.raises(SignerUnavailable):
            await client.sign("Registration", registration())


def test_client_can_be_reused_across_event_loops(tmp_path: Path, signer_state: str) -> None:
    """Workers that call asyncio.run per task may keep one SignerClient."""
    import asyncio

    sp = start_signer(process_env(tmp_path, signer_state), tmp_path / "signer.log")
    try:
        client = SignerClient(sp.url, TOKEN)
        first = asyncio.run(client.address())
        second = asyncio.run(client.address())
        asyncio.run(client.aclose())
        assert first == second
    finally:
        sp.stop()


async def test_a_stalled_log_reader_does_not_block_signing(
    tmp_path: Path, ledger: LedgerRows, signer_state: str
) -> None:
    """Every signature is also a stderr log line; a parent that never reads the pipe (64 KiB)
    must not stop the signer."""
    import os
    import subprocess
    import sys
    import time as _time

    from devtools.processes import REPO_ROOT

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOOL_SIGNER_")}
    env.update(
        process_env(tmp_path, signer_state, port=str(port), rate_limit_registration="10000/second")
    )
    payloads = [await ledger.registration() for _ in range(400)]
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before the test's awaits)
        [sys.executable, "-m", "signer"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # never read
    )
    try:
        async with SignerClient(f"http://127.0.0.1:{port}", TOKEN, timeout=5) as client:
            for _ in range(100):
                try:
                    await client.address()
                    break
                except SignerUnavailable:
                    await asyncio_sleep(0.1)
            started = _time.monotonic()
            for payload in payloads:  # ~250 KB of log lines
                await client.sign("Registration", payload)
            assert _time.monotonic() - started < 30
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert sum(1 for _ in read_records(tmp_path / "audit.jsonl")) == 400
