"""The audit log is append-only and tamper-evident, and one signer owns it."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from signer.audit import AuditError, AuditLog, read_records


def write_log(path: Path, n: int = 3) -> None:
    log = AuditLog(path, fsync="never")
    log.open()
    for i in range(n):
        log.append({"event": "signature", "i": i, "detail": 'quote " and \\ backslash'})
    log.close()


def test_records_chain_and_reopen_continues(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path)
    log = AuditLog(path, fsync="never")
    records = log.open()
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev"] == "0" * 64
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(records))
    log.append({"event": "refusal"})
    log.close()
    assert [r["seq"] for r in read_records(path)] == [1, 2, 3, 4]


def test_edited_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path)
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"i":1', '"i":7')
    path.write_text("".join(lines))
    with pytest.raises(AuditError, match="hash mismatch"):
        list(read_records(path))


def test_removed_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[2])
    with pytest.raises(AuditError, match="chain broken"):
        list(read_records(path))


def test_torn_last_record_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path)
    with path.open("a") as f:
        f.write('{"seq":4,"event":"sig')
    with pytest.raises(AuditError, match="torn"):
        AuditLog(path).open()


def test_second_process_cannot_open_the_same_log(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    first = AuditLog(path)
    first.open()
    try:
        with pytest.raises(AuditError, match="locked"):
            AuditLog(path).open()
    finally:
        first.close()


async def test_durable_writes_and_syncs_buffered_records(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path, fsync="always")
    log.open()
    seqs = [log.append({"event": "signature", "n": n}) for n in range(5)]
    assert path.read_text() == ""  # buffered until someone needs it durable
    await log.durable(seqs[-1])
    lines = path.read_text().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [0, 1, 2, 3, 4]
    await log.aclose()
