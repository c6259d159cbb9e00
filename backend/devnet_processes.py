"""Child processes of the local devnet and the integration tests: the signer service.

TEST/DEV ONLY: the signer runs with the raw-key backend and a well-known Anvil key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backend.chain.anvil import REPO_ROOT, free_port
from backend.chain.wallet import stop_process


@dataclass
class SignerProcess:
    url: str
    token: str
    address: str
    process: subprocess.Popen[bytes] = field(repr=False)

    def stop(self) -> None:
        stop_process(self.process)


def start_signer_process(
    *,
    raw_key: str,
    chain_id: int,
    contract_address: str,
    audit_log: Path,
    token: str,
    extra_env: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> SignerProcess:
    """Start `python -m signer` on a free loopback port and wait for /health."""
    port = free_port()
    env = {
        **os.environ,
        "AUTOPOOL_SIGNER_KEY_BACKEND": "raw",
        "AUTOPOOL_SIGNER_RAW_KEY": raw_key,
        "AUTOPOOL_SIGNER_AUTH_TOKEN": token,
        "AUTOPOOL_SIGNER_CHAIN_ID": str(chain_id),
        "AUTOPOOL_SIGNER_CONTRACT_ADDRESS": contract_address,
        "AUTOPOOL_SIGNER_AUDIT_LOG_PATH": str(audit_log),
        "AUTOPOOL_SIGNER_HOST": "127.0.0.1",
        "AUTOPOOL_SIGNER_PORT": str(port),
        **(extra_env or {}),
    }
    # stderr goes to a file beside the audit log: a pipe nobody reads would fill up.
    log_path = audit_log.with_suffix(".stderr.log")
    log_file = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "signer"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    log_file.close()  # the child holds its own descriptor
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = log_path.read_text(errors="replace")
            raise RuntimeError(f"signer exited early ({proc.returncode}): {err[-2000:]}")
        try:
            r = httpx.get(f"{url}/address", timeout=1.0)
            if r.status_code == 200:
                return SignerProcess(url, token, r.json()["address"], proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("signer did not start")
