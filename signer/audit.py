"""Append-only, hash-chained audit log of every signature and every refusal.

Format: JSON lines. Each record is a JSON object whose last member is `"hash"`, the SHA-256 (hex)
of the record's own bytes without that member (the text up to `,"hash"` plus `}`); every record
also carries `"prev"`, the previous record's hash (64 zeros for the first). Editing, removing or
reordering any record breaks the chain, which the signer verifies in full before it starts.

Durability (`audit_fsync`):
- Records are buffered in memory and written with one `write(2)` per burst on an `O_APPEND`
  descriptor; the HTTP reply that carries a signature is sent only after its record is written
  (a crash before that loses a signature nobody received). Every record is also mirrored, as
  is, to the structured log stream (stderr, written every `audit_fsync_interval_ms` from a
  worker thread, so a stalled log reader cannot block signing): one serialization serves both.
- `interval` (default): a background task runs `fdatasync` every `audit_fsync_interval_ms`
  (20 ms) when something is unsynced; a host crash (not a process crash) can lose the records
  of that last window. Why this is the default: see docs/signer.md "Audit log".
- `always`: in addition, the reply waits until an `fdatasync` covering the record has
  returned. Requests handled in the same event-loop iteration share one `fdatasync` (group
  commit). Use it where the disk syncs fast; reply latency then includes the disk's.
- `never`: leave it to the OS (tests, benchmarks).

One process owns the file: an exclusive `flock` is taken at open, so two signers cannot share a
log (and so each other's rolling caps).

Anchor: a hash chain shows an edited record, but not records cut from the end. So the head of
the chain (sequence number and hash) is also recorded outside the file, in PostgreSQL
(signer/state.py), with every burst: a reply that carries a signature waits until the record's
burst is anchored, and the signer refuses to start when the log is behind its anchor
(`check_anchor`). Records are numbered 1, 2, 3, ... without gaps; the only exception is a
`bridge` record (`accept-audit-gap`: after a host crash lost the unsynced tail, or when a log is
rotated), which names the anchor it continues from (`bridgeSeq`, `bridgeHash`) and takes the
next number after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

GENESIS = "0" * 64
_HASH_MEMBER = ',"hash":"'
_TAIL = len(_HASH_MEMBER) + 64 + 2  # ,"hash":"<64 hex>"}
_FLUSH_BYTES = 64 * 1024
_MIRROR_MAX_PENDING = 4 * 1024 * 1024


BRIDGE_EVENT = "bridge"
VERIFY_COMMAND = "python -m signer verify-audit"


class AuditError(Exception):
    """The audit log is unusable: locked by another process, torn, its chain is broken, or it
    is behind its anchor."""


class AnchorError(AuditError):
    """The anchor could not be written (database unreachable), or another signer moved it."""


def _split(line: str) -> tuple[str, str]:
    """(body as hashed, hash) of one stored line."""
    if (
        len(line) <= _TAIL
        or not line.endswith('"}')
        or line[-_TAIL:][: len(_HASH_MEMBER)] != (_HASH_MEMBER)
    ):
        raise AuditError("record without a trailing hash member")
    return line[:-_TAIL] + "}", line[-_TAIL + len(_HASH_MEMBER) : -2]


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record of the log, after checking each record's hash, the chain and the numbering."""
    if not path.exists():
        return
    prev, seq = GENESIS, 0
    with path.open("r", encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith("\n"):
                raise AuditError(
                    f"{path}:{number}: torn last record (crash during a write?); inspect it "
                    f"with `{VERIFY_COMMAND} {path}`, then move the log aside and start the "
                    "signer with a new one (`python -m signer accept-audit-gap`)"
                )
            body, digest = _split(line.rstrip("\n"))
            if hashlib.sha256(body.encode()).hexdigest() != digest:
                raise AuditError(f"{path}:{number}: record hash mismatch (edited record)")
            record: dict[str, Any] = json.loads(body)
            if record.get("prev") != prev:
                raise AuditError(f"{path}:{number}: chain broken (record removed or reordered)")
            expected = seq + 1
            if record.get("event") == BRIDGE_EVENT:
                bridged = record.get("bridgeSeq")
                if not isinstance(bridged, int) or bridged < seq:
                    raise AuditError(f"{path}:{number}: a bridge record cannot go back")
                expected = bridged + 1
            if record.get("seq") != expected:
                raise AuditError(
                    f"{path}:{number}: record number {record.get('seq')}, expected {expected}"
                )
            prev, seq = digest, expected
            record["hash"] = digest
            yield record


def check_anchor(
    path: Path, records: list[dict[str, Any]], anchor_seq: int, anchor_hash: str
) -> None:
    """Raise unless the log reaches its anchor: it holds the anchored record (same number, same
    hash), or a bridge record that continues from it."""
    if anchor_seq == 0:
        return
    head_seq = int(records[-1]["seq"]) if records else 0
    for r in reversed(records):
        if r["seq"] == anchor_seq and r["hash"] == anchor_hash:
            return
        if r.get("bridgeSeq") == anchor_seq and r.get("bridgeHash") == anchor_hash:
            return
        if r["seq"] < anchor_seq:
            break
    if head_seq < anchor_seq:
        problem = (
            f"the audit log {path} ends at record {head_seq} but its anchor in the database "
            f"is at record {anchor_seq} (hash {anchor_hash}): {anchor_seq - head_seq} records "
            "were cut from its end, or this is not the log this signer wrote"
        )
    else:
        problem = (
            f"the audit log {path} does not hold the anchored record {anchor_seq} (hash "
            f"{anchor_hash}): the log was replaced or rewritten"
        )
    raise AuditError(
        f"{problem}. Refusing to start. Investigate with `{VERIFY_COMMAND} {path}` (same "
        "environment as the signer: it compares the log with its anchor); docs/signer.md "
        '"Audit anchor" says what to do next'
    )


class AuditLog:
    """The open log. `append` is synchronous and cheap; `durable` awaits the fsync policy."""

    def __init__(
        self,
        path: Path,
        fsync: Literal["always", "interval", "never"] = "interval",
        interval_ms: int = 20,
        mirror: BinaryIO | None = None,
        anchor: Callable[[int, str], Awaitable[None]] | None = None,
    ) -> None:
        self.path = path
        self.fsync = fsync
        self.interval = interval_ms / 1000
        self._fd = -1
        self._prev = GENESIS
        self.seq = 0  # last record written
        self._synced = 0
        self._synced_hash = GENESIS
        self._written = 0
        self._written_hash = GENESIS
        # Records the head of the chain outside the file (signer/state.py); None: not anchored.
        self.anchor = anchor
        self.anchored = 0
        self._anchoring: asyncio.Future[None] | None = None
        self._background: asyncio.Future[None] | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._broken: OSError | None = None
        # e.g. stderr: every record is also a structured log line. Written by the ticker from a
        # worker thread, so a log consumer that stops reading can never block signing; past
        # _MIRROR_MAX_PENDING unwritten bytes, lines are dropped (and counted), not queued.
        self.mirror = mirror
        self._mirror_pending: list[bytes] = []
        self._mirror_pending_bytes = 0
        self.mirror_dropped = 0
        self._pending: asyncio.Future[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    def open(self) -> list[dict[str, Any]]:
        """Lock the file, verify it and return its records (for rebuilding the policy state)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise AuditError(f"{self.path} is locked by another signer process") from exc
        try:
            records = list(read_records(self.path))
        except AuditError:
            os.close(fd)
            raise
        self._fd = fd
        if records:
            self._prev = self._written_hash = self._synced_hash = records[-1]["hash"]
            self.seq = self._synced = self._written = int(records[-1]["seq"])
        return records

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record appended."""
        return self.seq, self._prev

    def bridge(self, anchor_seq: int, anchor_hash: str, fields: str) -> int:
        """Append a bridge record that continues the numbering from an anchor this log does
        not reach (records lost in a host crash, or a rotated log). See `accept-audit-gap`."""
        if anchor_seq < self.seq:
            raise AuditError(f"the log is past record {anchor_seq} already: nothing to bridge")
        log_seq = self.seq
        self.seq = anchor_seq
        return self.append_fields(
            f'"event":"{BRIDGE_EVENT}","bridgeSeq":{anchor_seq},"bridgeHash":"{anchor_hash}",'
            f'"logSeq":{log_seq},{fields}'
        )

    def append(self, record: dict[str, Any]) -> int:
        """Buffer one record; return its sequence number. See `append_fields`."""
        return self.append_fields(json.dumps(record, separators=(",", ":"), default=str)[1:-1])

    def append_fields(self, fields: str) -> int:
        """Buffer one record given as the inside of a JSON object (`"a":1,"b":"x"`); the log
        adds `seq`, `prev` and `hash`. Return the record's sequence number.

        Records are buffered in memory and reach the file with `flush()` (one `write(2)` per
        burst), which `durable()` calls: the service never hands out a signature before its
        record is written.
        """
        if self._broken is not None:
            raise AuditError(f"audit log unusable since an earlier failure: {self._broken}")
        seq = self.seq + 1
        body = f'{{"seq":{seq},{fields},"prev":"{self._prev}"}}'
        digest = hashlib.sha256(body.encode()).hexdigest()
        line = f'{body[:-1]}{_HASH_MEMBER}{digest}"}}\n'.encode()
        self._buffer.append(line)
        self._buffered += len(line)
        self.seq = seq
        self._prev = digest
        if self._buffered >= _FLUSH_BYTES:
            self.flush()
        return seq

    def flush(self) -> None:
        """Write buffered records to the file (and mirror them to the log stream)."""
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            # Part of a record may be on disk: the chain cannot continue, so stop signing.
            self._broken = exc
            raise AuditError(f"cannot write to {self.path}: {exc}") from exc
        self._written, self._written_hash = self.seq, self._prev
        if self.mirror is not None:
            if self._mirror_pending_bytes + len(data) <= _MIRROR_MAX_PENDING:
                self._mirror_pending.append(data)
                self._mirror_pending_bytes += len(data)
            else:
                self.mirror_dropped += data.count(b"\n")

    async def durable(self, seq: int, *, anchored: bool = True) -> None:
        """Return once record `seq` is as durable as the fsync policy promises.

        `always`: group commit without threads. The first waiter schedules one sync for the end
        of the current event-loop iteration; every request handled in that iteration appends
        its record first, so one `fdatasync` covers them all. The sync runs on the loop thread:
        on the machines measured here a hop to a worker thread costs more CPU (~0.8 ms) than
        the sync itself (~0.3 ms), and a signer whose disk stalls must stop handing out
        signatures anyway.
        """
        if self.fsync != "always":
            if self._written < seq:
                self.flush()
        elif self._synced < seq:
            if self._pending is None:
                loop = asyncio.get_running_loop()
                self._pending = loop.create_future()
                loop.call_soon(self._group_sync)
            await asyncio.shield(self._pending)
        if self.anchor is not None:
            if anchored:
                await self.anchored_to(seq)
            else:
                self._anchor_soon()

    def _anchor_soon(self) -> None:
        """Start anchoring the head now, without waiting for it (failures are retried by the
        ticker and reported to the next reply that waits)."""
        if self._background is None or self._background.done():
            self._background = asyncio.ensure_future(self._anchor_to_head())

    async def _anchor_to_head(self) -> None:
        with contextlib.suppress(Exception):
            while self.anchored < self._anchor_head()[0]:
                await self.anchored_to(self._anchor_head()[0])

    def _anchor_head(self) -> tuple[int, str]:
        # With `always`, only what is synced: the anchor never runs ahead of the disk.
        if self.fsync == "always":
            return self._synced, self._synced_hash
        return self._written, self._written_hash

    async def anchored_to(self, seq: int) -> None:
        """Return once the anchor covers record `seq` (which must be written, or synced with
        `always`). Group commit: one anchor write at a time covers every record written before
        it started; requests arriving meanwhile share the next one."""
        while self.anchored < seq:
            if self._anchor_head()[0] < seq:
                raise AuditError(f"record {seq} is not written yet")
            if self._anchoring is None:
                self._anchoring = asyncio.ensure_future(self._anchor_once())
            await asyncio.shield(self._anchoring)

    async def _anchor_once(self) -> None:
        try:
            seq, digest = self._anchor_head()
            if seq > self.anchored and self.anchor is not None:
                await self.anchor(seq, digest)
                self.anchored = max(self.anchored, seq)
        finally:
            self._anchoring = None

    def _group_sync(self) -> None:
        pending, self._pending = self._pending, None
        try:
            self._sync_now()
        except Exception as exc:
            if pending is not None:
                pending.set_exception(exc)
            return
        if pending is not None:
            pending.set_result(None)

    def _sync_now(self) -> None:
        self.flush()
        target, target_hash = self._written, self._written_hash
        os.fdatasync(self._fd)
        self._mark_synced(target, target_hash)

    def _mark_synced(self, seq: int, digest: str) -> None:
        if seq > self._synced:
            self._synced, self._synced_hash = seq, digest

    async def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick())

    def _take_mirror(self) -> bytes:
        data = b"".join(self._mirror_pending)
        self._mirror_pending.clear()
        self._mirror_pending_bytes = 0
        return data

    def _write_mirror(self, data: bytes) -> None:
        if self.mirror is None or not data:
            return
        with contextlib.suppress(OSError, ValueError):  # best effort: the file is the record
            fd = self.mirror.fileno()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self._mirror_pending:
                await asyncio.to_thread(self._write_mirror, self._take_mirror())
            if self.fsync == "interval" and self._synced < self.seq:
                self.flush()
                target, target_hash = self._written, self._written_hash
                # Off the loop thread: a slow disk must not delay replies in this mode.
                await asyncio.to_thread(os.fdatasync, self._fd)
                self._mark_synced(target, target_hash)
            if self.anchor is not None and self.fsync != "always":
                self.flush()  # refusals are not awaited by their replies: anchor them here
            head = self._anchor_head()[0]
            if self.anchor is not None and self.anchored < head:
                # A failure is reported to the next reply that waits for the anchor.
                with contextlib.suppress(Exception):
                    await self.anchored_to(head)

    async def aclose(self) -> None:
        if self._background is not None:
            with contextlib.suppress(Exception):
                await self._background
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._fd >= 0 and self.anchor is not None and self._broken is None:
            # A clean stop leaves the anchor at the head (best effort: a log ahead of its
            # anchor is accepted at the next start).
            with contextlib.suppress(Exception):
                self._sync_now()
                await self.anchored_to(self._anchor_head()[0])
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            # A last best-effort attempt that cannot hang shutdown on a stalled log reader.
            writer = threading.Thread(
                target=self._write_mirror, args=(self._take_mirror(),), daemon=True
            )
            writer.start()
            writer.join(timeout=1.0)
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)  # releases the flock
            self._fd = -1
