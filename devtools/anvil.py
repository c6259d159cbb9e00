"""Start and stop a local Anvil node from `node_modules` (npm package `@foundry-rs/anvil`).

Used by the devnet command and the test fixtures; never by production code paths.
`DEV_PRIVATE_KEYS` are the well-known public Anvil/Hardhat keys: TEST-ONLY.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

import httpx

from devtools.processes import REPO_ROOT, free_port, stop_process

ANVIL_BIN = REPO_ROOT / "node_modules" / ".bin" / "anvil"

# Anvil's and Hardhat's well-known dev accounts (mnemonic "test test ... junk").
# TEST-ONLY: these keys are public; never send real funds to them.
DEV_PRIVATE_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


@dataclass
class AnvilNode:
    """A running Anvil process. `stop()` (or the context manager) ends it."""

    port: int
    chain_id: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> AnvilNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_anvil(
    port: int | None = None,
    chain_id: int = 31337,
    accounts: int = 20,
    balance_ether: int = 100_000,
    block_time: float | None = None,
    timeout: float = 20.0,
) -> AnvilNode:
    """Start Anvil and wait until it answers JSON-RPC."""
    if not ANVIL_BIN.exists():
        raise RuntimeError(f"{ANVIL_BIN} not found: run `npm ci` first")
    port = port or free_port()
    args = [
        str(ANVIL_BIN),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chain-id",
        str(chain_id),
        "--accounts",
        str(accounts),
        "--balance",
        str(balance_ether),
        "--silent",
    ]
    if block_time is not None:
        args += ["--block-time", str(block_time)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return _answering(AnvilNode(port=port, chain_id=chain_id, process=proc), "anvil", timeout)


def start_hardhat_node(
    port: int | None = None, chain_id: int = 31337, block_time: float | None = None
) -> AnvilNode:
    """Start `npx hardhat node` (the same dev accounts as Anvil, 10,000 ETH each; chain id from
    hardhat.config.js) and, with `block_time`, interval mining beside automine."""
    port = port or free_port()
    proc = subprocess.Popen(
        ["npx", "--no-install", "hardhat", "node", "--hostname", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    node = _answering(AnvilNode(port=port, chain_id=chain_id, process=proc), "hardhat node", 60)
    if block_time is not None:
        _rpc(node.rpc_url, "evm_setIntervalMining", [int(block_time * 1000)])
    return node


def _rpc(url: str, method: str, params: list[object]) -> object:
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    r.raise_for_status()
    body = r.json()
    if "error" in body:
        raise RuntimeError(f"{method}: {body['error']}")
    return body["result"]


def _answering(node: AnvilNode, name: str, timeout: float) -> AnvilNode:
    """`node` once it answers JSON-RPC; stopped, with its stderr, if it exits or never does."""
    proc = node.process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"{name} exited early ({proc.returncode}): {err}")
        try:
            r = httpx.post(
                node.rpc_url,
                json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                timeout=1.0,
            )
            if r.status_code == 200:
                return node
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    node.stop()
    raise RuntimeError(f"{name} did not answer on port {node.port} within {timeout}s")
