"""Child processes of the devnet and the integration tests (the signer service), and the
helpers to start and stop them.

TEST/DEV ONLY: `start_signer_process` runs the signer with the raw-key backend.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
SIGNER_DB_ROLE = "autopool_signer"  # migration 0003


def signer_database_url(database_url: str) -> str:
    """The signer's DSN for the database of `database_url` (any role, `postgresql+asyncpg://`
    or `postgresql://`): the same host, port and database, as the signer's own role, which
    local trust authentication lets in without a password (TEST/DEV ONLY)."""
    rest = database_url.split("://", 1)[1]
    host = rest.rsplit("@", 1)[-1]
    return f"postgresql://{SIGNER_DB_ROLE}@{host}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_group(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Stop a process started in a session of its own (`start_new_session=True`) and its
    children: SIGTERM to the leader only, SIGKILL to the whole group if it has not exited within
    `timeout` seconds, and SIGKILL to what is left of the group either way. The leader stops its
    own children: a Dramatiq worker process that receives a second SIGTERM (one from a signal
    to the group, one forwarded by its parent) exits at once, in the middle of its message."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass
class SignerProcess:
    """A signer started as `python -m signer` with its own environment."""

    url: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path
    token: str = field(default="", repr=False)
    address: str = ""

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_signer(
    env: dict[str, str], log_path: Path, timeout: float = 20.0, port: int | None = None
) -> SignerProcess:
    """Start `python -m signer` with `env` (inherited AUTOPOOL_SIGNER_* variables are dropped)
    on `port` of the loopback (default: a free one), or its Unix socket when
    `AUTOPOOL_SIGNER_SOCKET_PATH` is set, and wait until GET /health answers. Its output goes
    to `log_path` (a pipe nobody reads would fill up and block it)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOOL_SIGNER_")}
    full_env.update(env)
    socket_path = env.get("AUTOPOOL_SIGNER_SOCKET_PATH")
    if socket_path:
        url = f"unix://{socket_path}"
    else:
        port = port or free_port()
        full_env["AUTOPOOL_SIGNER_HOST"] = "127.0.0.1"
        full_env["AUTOPOOL_SIGNER_PORT"] = str(port)
        url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "signer"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    signer = SignerProcess(url, proc, log_path)
    transport = httpx.HTTPTransport(uds=socket_path) if socket_path else None
    base = "http://signer" if socket_path else url
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, transport=transport, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"signer exited ({proc.returncode}):\n{signer.log()}")
            try:
                if client.get("/health").status_code == 200:
                    signer.address = client.get("/address").json()["address"]
                    return signer
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    signer.stop()
    raise RuntimeError(f"signer did not start:\n{signer.log()}")


def start_signer_process(
    *,
    raw_key: str,
    chain_id: int,
    contract_address: str,
    audit_log: Path,
    token: str,
    database_url: str,
    extra_env: dict[str, str] | None = None,
    timeout: float = 20.0,
    port: int | None = None,
) -> SignerProcess:
    """The signer with the raw-key backend (TEST/DEV ONLY), its audit log at `audit_log`,
    checking payloads against the (migrated) ledger at `database_url` through its own role."""
    env = {
        "AUTOPOOL_SIGNER_KEY_BACKEND": "raw",
        "AUTOPOOL_SIGNER_RAW_KEY": raw_key,
        "AUTOPOOL_SIGNER_AUTH_TOKEN": token,
        "AUTOPOOL_SIGNER_CHAIN_ID": str(chain_id),
        "AUTOPOOL_SIGNER_CONTRACT_ADDRESS": contract_address,
        "AUTOPOOL_SIGNER_AUDIT_LOG_PATH": str(audit_log),
        "AUTOPOOL_SIGNER_DATABASE_URL": signer_database_url(database_url),
        **(extra_env or {}),
    }
    signer = start_signer(env, audit_log.with_suffix(".stderr.log"), timeout, port)
    signer.token = token
    return signer
