"""Signer test fixtures: settings, an in-process SigningService, and a real signer subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.chain.anvil import REPO_ROOT, free_port
from backend.chain.wallet import stop_process
from signer.keys import LocalKey
from signer.main import build_service
from signer.service import SigningService
from signer.settings import SignerSettings

# TEST-ONLY: Anvil's public dev key 1 (the backend signer role in tests/fixtures/chain.py).
DEV_SIGNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TOKEN = "test-token-" + "x" * 32
ETHER = 10**18


def make_settings(tmp_path: Path, **overrides: Any) -> SignerSettings:
    values: dict[str, Any] = {
        "key_backend": "raw",
        "raw_key": DEV_SIGNER_KEY,
        "auth_token": TOKEN,
        "chain_id": 31337,
        "contract_address": CONTRACT,
        "audit_log_path": tmp_path / "audit.jsonl",
        "audit_fsync": "always",
        "max_batch_total_wei": 100 * ETHER,
        "max_batch_recipients": 5,
        "rolling_24h_cap_wei": 250 * ETHER,
        "rate_limit_payout_batch": "1000/minute",
    }
    values.update(overrides)
    return SignerSettings(_env_file=None, **values)


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., SignerSettings]:
    return lambda **overrides: make_settings(tmp_path, **overrides)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SigningService]:
    svc = build_service(make_settings(tmp_path), key=LocalKey.from_hex(DEV_SIGNER_KEY))
    try:
        yield svc
    finally:
        svc.audit.close()


def registration(**overrides: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "user": "0x" + "11" * 20,
        "referrer": "0x" + "22" * 20,
        "slot": 1,
        "amount": 20 * ETHER,
        "planHash": "0x" + "ab" * 32,
        "nonce": 1,
        "deadline": int(time.time()) + 600,
    }
    msg.update(overrides)
    return msg


def batch(amounts: list[int], **overrides: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "batchId": 1,
        "payouts": [
            {"recipient": "0x" + f"{i + 1:02x}" * 20, "amount": a} for i, a in enumerate(amounts)
        ],
        "nonce": 1,
        "deadline": int(time.time()) + 600,
    }
    msg.update(overrides)
    return msg


@dataclass
class SignerProcess:
    """A signer started as `python -m signer` with its own environment."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_signer(env: dict[str, str], log_path: Path, timeout: float = 20.0) -> SignerProcess:
    """Start the signer subprocess and wait until GET /health answers."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOOL_SIGNER_")}
    full_env.update(env)
    socket_path = env.get("AUTOPOOL_SIGNER_SOCKET_PATH")
    if socket_path:
        url = f"unix://{socket_path}"
    else:
        port = free_port()
        full_env["AUTOPOOL_SIGNER_PORT"] = str(port)
        url = f"http://127.0.0.1:{port}"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "signer"],
        cwd=REPO_ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    sp = SignerProcess(url, proc, log_path)
    transport = httpx.HTTPTransport(uds=socket_path) if socket_path else None
    base = "http://signer" if socket_path else url
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, transport=transport, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"signer exited ({proc.returncode}):\n{sp.log()}")
            try:
                if client.get("/health").status_code == 200:
                    return sp
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    sp.stop()
    raise RuntimeError(f"signer did not start:\n{sp.log()}")
