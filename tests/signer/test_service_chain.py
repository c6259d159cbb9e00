"""The running signer service, end to end on Anvil: its signatures are what the deployed
contract accepts, and the key-rotation procedure of docs/signer.md works."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from backend.chain.signer_client import SignerClient, SignerRefused
from backend.chain.typed_data import Domain, domain_separator
from devtools.deploy import deploy_autopool
from devtools.processes import REPO_ROOT, SignerProcess, signer_database_url, start_signer
from signer.audit import read_records
from tests.signer.conftest import TOKEN
from tests.signer.ledger_rows import LedgerRows

pytestmark = pytest.mark.chain

ETHER = 10**18
PASSWORD = "correct horse battery staple"


def private_file(path: Path, text: str) -> None:
    """A secret file as the signer accepts it: readable and writable by its owner only."""
    path.touch(mode=0o600)
    path.write_text(text)


def fast_keystore(path: Path, key: str) -> None:
    """TEST-ONLY keystore with cheap KDF parameters (production keystores use scrypt)."""
    private_file(path, json.dumps(Account.encrypt(key, PASSWORD, kdf="pbkdf2", iterations=1000)))


def signer_env(
    tmp: Path, keystore: Path, pool: Contract, chain_id: int, database_url: str
) -> dict[str, str]:
    private_file(tmp / "password", PASSWORD + "\n")
    private_file(tmp / "token", TOKEN)
    return {
        "AUTOPOOL_SIGNER_KEY_BACKEND": "keystore",
        "AUTOPOOL_SIGNER_KEYSTORE_PATH": str(keystore),
        "AUTOPOOL_SIGNER_KEYSTORE_PASSWORD_FILE": str(tmp / "password"),
        "AUTOPOOL_SIGNER_AUTH_TOKEN_FILE": str(tmp / "token"),
        "AUTOPOOL_SIGNER_CHAIN_ID": str(chain_id),
        "AUTOPOOL_SIGNER_CONTRACT_ADDRESS": pool.address,
        "AUTOPOOL_SIGNER_AUDIT_LOG_PATH": str(tmp / "audit.jsonl"),
        # The session chain may run ahead of the wall clock (other tests warp time).
        "AUTOPOOL_SIGNER_MAX_DEADLINE_WINDOW_SECONDS": str(30 * 86_400),
        "AUTOPOOL_SIGNER_ROLLING_24H_CAP_WEI": str(1_000 * ETHER),
        "AUTOPOOL_SIGNER_DATABASE_URL": signer_database_url(database_url),
    }


@pytest.fixture
def pool(w3: Web3, dev_keys: tuple[str, ...], chain_snapshot: None) -> Contract:
    return deploy_autopool(
        w3,
        dev_keys[0],
        owner=Account.from_key(dev_keys[0]).address,
        signer=Account.from_key(dev_keys[1]).address,
        guardian=Account.from_key(dev_keys[2]).address,
        outflow_cap=1_000 * ETHER,
    )


@pytest.fixture
def running(
    tmp_path: Path, w3: Web3, pool: Contract, dev_keys: tuple[str, ...], signer_state: str
) -> Iterator[SignerProcess]:
    keystore = tmp_path / "signer.json"
    fast_keystore(keystore, dev_keys[1])
    env = signer_env(tmp_path, keystore, pool, w3.eth.chain_id, signer_state)
    sp = start_signer(env, tmp_path / "signer.log")
    try:
        yield sp
    finally:
        sp.stop()


def chain_now(w3: Web3) -> int:
    return int(w3.eth.get_block("latest")["timestamp"])


async def registration(ledger: LedgerRows, w3: Web3, user: str, referrer: str) -> dict[str, Any]:
    """A registration of `user` under `referrer` as the API reserves it in the ledger."""
    return await ledger.registration(
        user=await ledger.participant(user, status="pending"),
        referrer=await ledger.participant(referrer),
        deadline=chain_now(w3) + 600,
    )


def reg_tuple(m: dict[str, Any]) -> tuple[Any, ...]:
    return (
        m["user"],
        m["referrer"],
        int(m["slot"]),
        int(m["amount"]),
        m["planHash"],
        int(m["nonce"]),
        m["deadline"],
    )


def send(w3: Web3, fn: Any, sender: str, value: int = 0) -> Any:
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender, "value": value}))
    assert receipt["status"] == 1
    return receipt


async def test_service_signatures_are_accepted_by_the_contract(
    w3: Web3, pool: Contract, running: SignerProcess, dev_keys: tuple[str, ...], ledger: LedgerRows
) -> None:
    owner, signer_addr, _, sender, alice, bob = (Account.from_key(k).address for k in dev_keys[:6])
    async with SignerClient(running.url, TOKEN) as client:
        assert await client.address() == signer_addr == pool.functions.signer().call()
        ours = domain_separator(Domain(w3.eth.chain_id, pool.address))
        assert pool.functions.DOMAIN_SEPARATOR().call() == ours

        reg = await registration(ledger, w3, alice, owner)
        sig = await client.sign("Registration", reg)
        assert (
            bytes.fromhex(sig.digest[2:])
            == pool.functions.registrationDigest(reg_tuple(reg)).call()
        )
        receipt = send(
            w3, pool.functions.register(reg_tuple(reg), sig.signature), alice, 20 * ETHER
        )
        assert pool.events.RegistrationAccepted().process_receipt(receipt)[0]["args"]["user"] == (
            alice
        )

        alice_user = await ledger.participant(alice)
        await ledger.activate(alice_user)  # the listener saw her registration
        top = await ledger.retopup(user=alice_user, deadline=chain_now(w3) + 600)
        sig = await client.sign("Retopup", top)
        send(
            w3,
            pool.functions.retopup(
                (alice, int(top["amount"]), top["planHash"], int(top["nonce"]), top["deadline"]),
                sig.signature,
            ),
            alice,
            int(top["amount"]),
        )

        b = await ledger.batch(
            [3 * ETHER, ETHER],
            recipients=[alice_user, await ledger.participant(bob)],
            deadline=chain_now(w3) + 600,
        )
        sig = await client.sign("PayoutBatch", b)
        before = w3.eth.get_balance(bob)
        payouts = [(p["recipient"], int(p["amount"])) for p in b["payouts"]]
        receipt = send(
            w3,
            pool.functions.executeBatchPayouts(
                (int(b["batchId"]), payouts, int(b["nonce"]), b["deadline"]), sig.signature
            ),
            sender,
        )
        assert w3.eth.get_balance(bob) == before + ETHER
        assert len(pool.events.PayoutExecuted().process_receipt(receipt, errors=DISCARD)) == 2

    async with SignerClient(running.url, "wrong-" + TOKEN) as intruder:
        with pytest.raises(SignerRefused) as info:
            await intruder.sign("Registration", reg)
        assert (info.value.status, info.value.rule) == (401, "unauthorized")

    events = [r["event"] for r in read_records(Path(running.log_path).parent / "audit.jsonl")]
    assert events == ["signature"] * 3


async def test_unix_socket_transport(
    tmp_path: Path,
    w3: Web3,
    pool: Contract,
    dev_keys: tuple[str, ...],
    ledger: LedgerRows,
    signer_state: str,
) -> None:
    keystore = tmp_path / "signer.json"
    fast_keystore(keystore, dev_keys[1])
    env = signer_env(tmp_path, keystore, pool, w3.eth.chain_id, signer_state)
    env["AUTOPOOL_SIGNER_SOCKET_PATH"] = str(tmp_path / "signer.sock")
    sp = start_signer(env, tmp_path / "signer.log")
    try:
        async with SignerClient(sp.url, TOKEN) as client:
            owner, alice = (
                Account.from_key(dev_keys[0]).address,
                Account.from_key(dev_keys[4]).address,
            )
            reg = await registration(ledger, w3, alice, owner)
            sig = await client.sign("Registration", reg)
            send(w3, pool.functions.register(reg_tuple(reg), sig.signature), alice, 20 * ETHER)
    finally:
        sp.stop()


async def test_key_rotation_procedure(
    tmp_path: Path,
    w3: Web3,
    pool: Contract,
    running: SignerProcess,
    dev_keys: tuple[str, ...],
    ledger: LedgerRows,
    signer_state: str,
) -> None:
    """docs/signer.md "Key rotation": new key → owner proposes it, waits the public delay,
    executes → switch the service."""
    owner, old_signer = Account.from_key(dev_keys[0]).address, Account.from_key(dev_keys[1]).address
    alice, bob = Account.from_key(dev_keys[4]).address, Account.from_key(dev_keys[5]).address
    async with SignerClient(running.url, TOKEN) as client:
        before = await registration(ledger, w3, alice, owner)
        send(
            w3,
            pool.functions.register(
                reg_tuple(before), (await client.sign("Registration", before)).signature
            ),
            alice,
            20 * ETHER,
        )
        # Signed by the old key but not sent before the rotation:
        stale = await registration(ledger, w3, bob, owner)
        stale_sig = (await client.sign("Registration", stale)).signature

    # 1. New key, in a new encrypted keystore (scrypt), created on the signer host.
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    private_file(new_dir / "password", PASSWORD + "\n")
    out = subprocess.run(  # noqa: ASYNC221  (a one-off CLI call in a test)
        [
            sys.executable,
            "-m",
            "signer",
            "keygen",
            str(new_dir / "signer.json"),
            "--password-file",
            str(new_dir / "password"),
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    new_signer = out.stdout.strip()
    assert Web3.is_checksum_address(new_signer) and new_signer != old_signer

    # 2. The owner (a multisig in production) proposes the new key, waits the public delay
    #    (48 h on mainnet; the guardian may cancel meanwhile) and executes the change.
    send(w3, pool.functions.proposeSigner(new_signer), owner)
    w3.provider.make_request("evm_increaseTime", [pool.functions.changeDelay().call()])
    w3.provider.make_request("evm_mine", [])
    receipt = send(w3, pool.functions.executeChange(0), owner)  # Change.Signer
    [event] = pool.events.SignerRotated().process_receipt(receipt, errors=DISCARD)
    assert (event["args"]["previous"], event["args"]["next"]) == (old_signer, new_signer)
    with pytest.raises(ContractCustomError):
        pool.functions.register(reg_tuple(stale), stale_sig).call(
            {"from": bob, "value": 20 * ETHER}
        )

    # 3. Switch the service: stop the old one, start the new key on the same audit log.
    running.stop()
    env = signer_env(tmp_path, new_dir / "signer.json", pool, w3.eth.chain_id, signer_state)
    new_sp = start_signer(env, tmp_path / "signer-new.log", timeout=30)
    try:
        async with SignerClient(new_sp.url, TOKEN) as client:
            assert await client.address() == new_signer == pool.functions.signer().call()
            resigned = await client.sign("Registration", stale)  # the same payload, new key
            send(w3, pool.functions.register(reg_tuple(stale), resigned.signature), bob, 20 * ETHER)
    finally:
        new_sp.stop()
    signers = [r["signer"] for r in read_records(tmp_path / "audit.jsonl")]
    assert signers == [old_signer, old_signer, new_signer]


async def test_startup_checks_the_domain_against_the_chain(
    tmp_path: Path,
    w3: Web3,
    pool: Contract,
    dev_keys: tuple[str, ...],
    anvil: Any,
    signer_state: str,
) -> None:
    keystore = tmp_path / "signer.json"
    fast_keystore(keystore, dev_keys[1])
    env = signer_env(tmp_path, keystore, pool, w3.eth.chain_id, signer_state)
    env["AUTOPOOL_SIGNER_RPC_URL"] = anvil.rpc_url
    sp = start_signer(env, tmp_path / "ok.log")
    sp.stop()
    # A contract address that is not this deployment: refuse to start.
    env["AUTOPOOL_SIGNER_CONTRACT_ADDRESS"] = Account.from_key(dev_keys[5]).address
    env["AUTOPOOL_SIGNER_AUDIT_LOG_PATH"] = str(tmp_path / "other.jsonl")
    with pytest.raises(RuntimeError, match="signer exited"):
        start_signer(env, tmp_path / "bad.log")
    assert "DOMAIN_SEPARATOR" in (tmp_path / "bad.log").read_text()
