"""The audit log is anchored outside itself (docs/signer.md "Audit anchor"), and the limits
survive restarts: cutting the log's tail, or starting on a fresh log, no longer empties the
rolling window or the rate limits."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from devtools.processes import REPO_ROOT, start_signer
from signer.audit import AuditError, read_records
from signer.keys import LocalKey
from signer.main import build_service
from signer.policy import Refused
from signer.service import SigningService, StartupError
from tests.signer.conftest import DEV_SIGNER_KEY, ETHER, ServiceFactory, owner_dsn, process_env
from tests.signer.ledger_rows import LedgerRows


def cut_tail(path: Path, records: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-records]))


def signer_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOOL_SIGNER_")}
    return subprocess.run(
        [sys.executable, "-m", "signer", *args],
        cwd=REPO_ROOT,
        env=full | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_log_cut_at_its_tail_stops_the_signer_with_the_command_to_investigate(
    tmp_path: Path, ledger: LedgerRows, signer_state: str
) -> None:
    env = process_env(tmp_path, signer_state, max_batch_total_wei=str(100 * ETHER))
    log = tmp_path / "audit.jsonl"
    sp = start_signer(env, tmp_path / "first.log")
    try:
        from backend.chain.signer_client import SignerClient
        from tests.signer.conftest import TOKEN

        async with SignerClient(sp.url, TOKEN) as client:
            await client.sign("PayoutBatch", await ledger.batch([60 * ETHER]))
            await client.sign("PayoutBatch", await ledger.batch([40 * ETHER]))
    finally:
        sp.stop()
    cut_tail(log, 1)
    assert signer_cli("verify-audit", str(log), env={}).returncode == 0  # the chain alone: intact

    with pytest.raises(RuntimeError, match="signer exited") as info:
        start_signer(env, tmp_path / "second.log")
    message = str(info.value)
    assert "ends at record 1 but its anchor in the database is at record 2" in message
    assert f"python -m signer verify-audit {log}" in message

    investigated = signer_cli("verify-audit", env=env)
    assert investigated.returncode == 1
    assert "BEHIND ITS ANCHOR" in investigated.stderr
    assert "head: record 1" in investigated.stdout and "record 2" in investigated.stdout


async def test_a_fresh_log_elsewhere_does_not_start_from_an_empty_window(
    tmp_path: Path, service_factory: ServiceFactory, settings_factory: object, ledger: LedgerRows
) -> None:
    first = await service_factory()
    await first.sign("PayoutBatch", await ledger.batch([100 * ETHER]))
    await first.aclose()
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(StartupError, match="cut from its end"):
        await service_factory(settings_factory(audit_log_path=elsewhere / "audit.jsonl"))  # type: ignore[operator]


async def test_after_an_accepted_gap_the_limits_still_hold(
    tmp_path: Path, service_factory: ServiceFactory, settings_factory: object, ledger: LedgerRows
) -> None:
    """A host crash lost the log's tail (or the log was rotated): the operator inspects it,
    bridges the log to its anchor, and the signer starts again, with its 24-hour window and
    rate limits as they were (they live in the database, not in the file)."""
    settings = settings_factory(rate_limit_payout_batch="3/hour")  # type: ignore[operator]
    first = await service_factory(settings)
    await first.sign("PayoutBatch", await ledger.batch([100 * ETHER]))
    await first.sign("PayoutBatch", await ledger.batch([100 * ETHER]))
    await first.aclose()
    settings.audit_log.rename(tmp_path / "archived.jsonl")  # rotated away: a new, empty file

    env = process_env(tmp_path, settings.dsn(), rate_limit_payout_batch="3/hour")
    gap = signer_cli("accept-audit-gap", "--reason", "rotated to archived.jsonl", env=env)
    assert gap.returncode == 0, gap.stderr
    [bridge] = list(read_records(settings.audit_log))
    assert (bridge["event"], bridge["seq"], bridge["reason"]) == (
        "bridge",
        3,
        "rotated to archived.jsonl",
    )
    assert signer_cli("verify-audit", env=env).returncode == 0

    restarted = await service_factory(settings)
    assert restarted.policy.rolling_total == 200 * ETHER
    with pytest.raises(Refused) as info:
        await restarted.sign("PayoutBatch", await ledger.batch([51 * ETHER]))
    assert info.value.rule == "rolling-24h-cap"
    await restarted.sign("PayoutBatch", await ledger.batch([50 * ETHER]))  # the third of 3/hour
    with pytest.raises(Refused) as info:
        await restarted.sign("PayoutBatch", await ledger.batch([ETHER]))
    assert info.value.rule == "rate-limit"


async def test_rate_limits_survive_a_restart(
    service_factory: ServiceFactory, settings_factory: object, ledger: LedgerRows
) -> None:
    settings = settings_factory(rate_limit_registration="3/minute")  # type: ignore[operator]
    first = await service_factory(settings)
    for _ in range(3):
        await first.sign("Registration", await ledger.registration())
    await first.audit.durable(first.audit.seq)
    await first.aclose()
    restarted = await service_factory(settings)
    with pytest.raises(Refused) as info:
        await restarted.sign("Registration", await ledger.registration())
    assert (info.value.rule, info.value.status) == ("rate-limit", 429)


async def test_a_signature_is_anchored_before_it_is_handed_out(
    service: SigningService, ledger: LedgerRows, database_url: str
) -> None:
    signed = await service.sign("PayoutBatch", await ledger.batch([ETHER]))
    await service.handed_out(signed)
    conn = await asyncpg.connect(owner_dsn(database_url))
    try:
        anchor = await conn.fetchrow("SELECT seq, hash FROM signer.audit_anchors")
        outflow = await conn.fetchrow("SELECT digest, amount FROM signer.outflows")
    finally:
        await conn.close()
    head = list(read_records(service.audit.path))[-1]
    assert (anchor["seq"], anchor["hash"]) == (signed.seq, head["hash"])
    assert (outflow["digest"], int(outflow["amount"])) == ("0x" + signed.digest.hex(), ETHER)


async def test_two_signers_on_one_deployment_cannot_both_sign(
    tmp_path: Path, service_factory: ServiceFactory, settings_factory: object, ledger: LedgerRows
) -> None:
    """Two logs for one contract would each count only their own signatures against the caps:
    the second one's anchor would go back, so it stops signing."""
    first = await service_factory()
    other = build_service(
        settings_factory(audit_log_path=tmp_path / "other" / "audit.jsonl"),  # type: ignore[operator]
        key=LocalKey.from_hex(DEV_SIGNER_KEY),
    )
    await other.start()  # both logs are empty: nothing to tell them apart yet
    try:
        signed = await first.sign("Registration", await ledger.registration())
        await first.audit.durable(signed.seq)
        late = await other.sign("Registration", await ledger.registration())
        await first.sign("Registration", await ledger.registration())
        await first.audit.durable(first.audit.seq)
        with pytest.raises(AuditError):
            await other.audit.durable(late.seq)
        with pytest.raises(Refused) as info:
            await other.sign("Registration", await ledger.registration())
        assert (info.value.rule, info.value.status) == ("signer-halted", 503)
    finally:
        await other.aclose()


async def test_a_registration_reply_does_not_wait_for_the_anchor_but_it_follows(
    service: SigningService, ledger: LedgerRows
) -> None:
    signed = await service.sign("Registration", await ledger.registration())
    await service.handed_out(signed)  # written; its anchor write has started
    for _ in range(100):
        if service.audit.anchored >= signed.seq:
            break
        await asyncio.sleep(0.01)
    assert service.audit.anchored == signed.seq
