"""Contract test fixtures: a fresh AutoPool per test (inside the per-test chain snapshot) and a
`PoolHarness` that signs payloads with the backend's own EIP-712 definitions and sends them.

Roles follow tests/fixtures/chain.py: dev key 0 owner/deployer, 1 backend signer, 2 guardian,
3 settlement sender, 4.. participants.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from eth_account import Account
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.types import TxParams, TxReceipt, Wei

from backend.chain.artifacts import load_artifact
from backend.chain.typed_data import Domain, full_message
from devtools.deploy import deploy_autopool

ETHER = 10**18
DEFAULT_CAP = 10_000 * ETHER
# `AutoPool.Change`: the admin changes that wait the public delay.
SIGNER, OUTFLOW_CAP, GUARDIAN, UNPAUSE = range(4)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# TEST-ONLY key that is not the backend signer (an attacker's key).
OTHER_KEY = "0x" + "11" * 32
PLAN_HASH = keccak(text="plan-v1")


def error_selector(abi: Any, name: str) -> str:
    for item in abi:
        if item.get("type") == "error" and item["name"] == name:
            sig = f"{name}({','.join(i['type'] for i in item['inputs'])})"
            return "0x" + keccak(text=sig)[:4].hex()
    raise KeyError(name)


def deploy_artifact(w3: Web3, name: str, source: str, *args: Any, sender: str) -> Contract:
    art = load_artifact(name, source)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor(*args).transact({"from": sender})
    )
    assert receipt["status"] == 1
    return cast(Contract, w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"]))


@dataclass
class PoolHarness:
    """One deployed AutoPool plus the keys and helpers to drive it."""

    w3: Web3
    pool: Contract
    owner: ChecksumAddress
    signer_key: str
    guardian: ChecksumAddress
    sender: ChecksumAddress  # settlement sender (any account may submit a batch)
    users: list[ChecksumAddress]
    _nonce: int = field(default=0)
    _batch_id: int = field(default=0)

    # -- plumbing
    @property
    def domain(self) -> Domain:
        return Domain(chain_id=self.w3.eth.chain_id, verifying_contract=self.pool.address)

    def next_nonce(self) -> int:
        self._nonce += 1
        return self._nonce

    def next_batch_id(self) -> int:
        self._batch_id += 1
        return self._batch_id

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def sign(
        self,
        primary: str,
        message: dict[str, Any],
        key: str | None = None,
        domain: Domain | None = None,
    ) -> bytes:
        doc = full_message(domain or self.domain, primary, message)
        return bytes(Account.sign_typed_data(key or self.signer_key, full_message=doc).signature)

    def send(self, fn: Any, sender: str, value: int = 0, gas: int | None = None) -> TxReceipt:
        tx: dict[str, Any] = {"from": sender, "value": value}
        if gas is not None:
            tx["gas"] = gas
        receipt = self.w3.eth.wait_for_transaction_receipt(fn.transact(tx))
        return receipt

    def expect_revert(
        self, fn: Any, error: str, sender: str, value: int = 0, *, mined: bool = True
    ) -> str:
        """Assert that `fn` reverts with custom error `error` (by selector); returns the data.
        With `mined`, the same call is also sent as a transaction and must fail on chain."""
        with pytest.raises(ContractCustomError) as info:
            fn.call({"from": sender, "value": value})
        data = str(info.value.data)
        expected = error_selector(self.pool.abi, error)
        assert data.startswith(expected), f"expected {error} ({expected}), got {data}"
        if mined:
            receipt = self.send(fn, sender, value, gas=3_000_000)
            assert receipt["status"] == 0
        return data

    def balance(self) -> int:
        return int(self.w3.eth.get_balance(self.pool.address))

    def rpc(self, method: str, params: list[Any]) -> Any:
        return self.w3.provider.make_request(method, params)  # type: ignore[arg-type]

    def warp(self, seconds: int) -> None:
        """Move the chain clock forward and mine a block."""
        self.rpc("evm_increaseTime", [seconds])
        self.rpc("evm_mine", [])

    @property
    def delay(self) -> int:
        return int(self.pool.functions.changeDelay().call())

    def apply_change(self, propose: Any, change: int) -> TxReceipt:
        """Propose as owner, wait the public delay, execute: how every delayed change is made."""
        assert self.send(propose, self.owner)["status"] == 1
        self.warp(self.delay)
        receipt = self.send(self.pool.functions.executeChange(change), self.owner)
        assert receipt["status"] == 1
        return receipt

    def rotate_signer(self, new_key: str) -> TxReceipt:
        return self.apply_change(self.pool.functions.proposeSigner(address_of(new_key)), SIGNER)

    def unpause(self) -> TxReceipt:
        return self.apply_change(self.pool.functions.proposeUnpause(), UNPAUSE)

    def lower_cap(self, cap: int) -> TxReceipt:
        receipt = self.send(self.pool.functions.lowerOutflowCap(cap), self.owner)
        assert receipt["status"] == 1
        return receipt

    # -- payloads
    def registration(
        self,
        user: str,
        amount: int = 20 * ETHER,
        *,
        referrer: str | None = None,
        slot: int = 1,
        nonce: int | None = None,
        deadline: int | None = None,
    ) -> dict[str, Any]:
        return {
            "user": user,
            "referrer": referrer or self.owner,
            "slot": slot,
            "amount": amount,
            "planHash": PLAN_HASH,
            "nonce": self.next_nonce() if nonce is None else nonce,
            "deadline": self.now() + 3600 if deadline is None else deadline,
        }

    def retopup_payload(
        self,
        user: str,
        amount: int = 40 * ETHER,
        *,
        nonce: int | None = None,
        deadline: int | None = None,
    ) -> dict[str, Any]:
        return {
            "user": user,
            "amount": amount,
            "planHash": PLAN_HASH,
            "nonce": self.next_nonce() if nonce is None else nonce,
            "deadline": self.now() + 3600 if deadline is None else deadline,
        }

    def batch(
        self,
        payouts: Sequence[tuple[str, int]],
        *,
        batch_id: int | None = None,
        nonce: int | None = None,
        deadline: int | None = None,
    ) -> dict[str, Any]:
        return {
            "batchId": self.next_batch_id() if batch_id is None else batch_id,
            "payouts": [{"recipient": r, "amount": a} for r, a in payouts],
            "nonce": self.next_nonce() if nonce is None else nonce,
            "deadline": self.now() + 3600 if deadline is None else deadline,
        }

    @staticmethod
    def as_tuple(primary: str, msg: dict[str, Any]) -> tuple[Any, ...]:
        if primary == "Registration":
            keys = ("user", "referrer", "slot", "amount", "planHash", "nonce", "deadline")
            return tuple(msg[k] for k in keys)
        if primary == "Retopup":
            return tuple(msg[k] for k in ("user", "amount", "planHash", "nonce", "deadline"))
        payouts = [(p["recipient"], p["amount"]) for p in msg["payouts"]]
        return (msg["batchId"], payouts, msg["nonce"], msg["deadline"])

    # -- calls
    def register_fn(self, msg: dict[str, Any], sig: bytes | None = None) -> Any:
        sig = self.sign("Registration", msg) if sig is None else sig
        return self.pool.functions.register(self.as_tuple("Registration", msg), sig)

    def retopup_fn(self, msg: dict[str, Any], sig: bytes | None = None) -> Any:
        sig = self.sign("Retopup", msg) if sig is None else sig
        return self.pool.functions.retopup(self.as_tuple("Retopup", msg), sig)

    def batch_fn(self, msg: dict[str, Any], sig: bytes | None = None) -> Any:
        sig = self.sign("PayoutBatch", msg) if sig is None else sig
        return self.pool.functions.executeBatchPayouts(self.as_tuple("PayoutBatch", msg), sig)

    def register(self, user: str, amount: int = 20 * ETHER, **kw: Any) -> TxReceipt:
        msg = self.registration(user, amount, **kw)
        receipt = self.send(self.register_fn(msg), user, amount)
        assert receipt["status"] == 1
        return receipt

    def retopup(self, user: str, amount: int = 40 * ETHER, **kw: Any) -> TxReceipt:
        msg = self.retopup_payload(user, amount, **kw)
        receipt = self.send(self.retopup_fn(msg), user, amount)
        assert receipt["status"] == 1
        return receipt

    def execute(self, payouts: Sequence[tuple[str, int]], **kw: Any) -> TxReceipt:
        receipt = self.send(self.batch_fn(self.batch(payouts, **kw)), self.sender)
        assert receipt["status"] == 1
        return receipt

    def gas_of(self, fn: Any, sender: str) -> int:
        """gasUsed of `fn` sent now, with the chain then put back as it was."""
        snap = self.rpc("evm_snapshot", [])["result"]
        try:
            receipt = self.send(fn, sender)
            assert receipt["status"] == 1
            return int(receipt["gasUsed"])
        finally:
            self.rpc("evm_revert", [snap])

    def events(self, receipt: TxReceipt, name: str) -> list[Any]:
        from web3.logs import DISCARD

        return list(getattr(self.pool.events, name)().process_receipt(receipt, errors=DISCARD))


def deploy_code(w3: Web3, init_code: bytes, *, sender: str, value: int = 0) -> ChecksumAddress:
    """Run raw init code as a contract creation; returns the created address."""
    tx: TxParams = {"from": sender, "data": init_code, "value": Wei(value), "gas": 200_000}
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx))
    assert receipt["status"] == 1 and receipt["contractAddress"] is not None
    return to_checksum_address(receipt["contractAddress"])


def force_send(w3: Web3, target: str, amount: int, *, sender: str) -> None:
    """Send BNB to `target` by SELFDESTRUCT from a constructor: no code runs at the target, so
    nothing there can refuse it. Init code: PUSH20 target, SELFDESTRUCT."""
    deploy_code(w3, b"\x73" + bytes.fromhex(target[2:]) + b"\xff", sender=sender, value=amount)


def deploy_bouncer(w3: Web3, *, sender: str) -> ChecksumAddress:
    """A recipient whose code is CALLER SELFDESTRUCT: every payout goes straight back to the
    payer (EIP-6780: the balance moves, the contract stays), within the 2,300-gas stipend."""
    runtime = bytes.fromhex("33ff")
    # PUSH2 len, DUP1, PUSH1 10, RETURNDATASIZE, CODECOPY, RETURNDATASIZE, RETURN, runtime
    return deploy_code(w3, bytes.fromhex("61000280600a3d393df3") + runtime, sender=sender)


def delegate(w3: Web3, authority_key: str, target: str, *, sponsor_key: str) -> None:
    """EIP-7702: make the EOA of `authority_key` run `target`'s code (the zero address clears
    the delegation), by a type-4 transaction that `sponsor_key` pays for."""
    authority = Account.from_key(authority_key)
    auth = Account.sign_authorization(
        {
            "chainId": w3.eth.chain_id,
            "address": target,
            "nonce": w3.eth.get_transaction_count(authority.address),
        },
        authority_key,
    )
    sponsor = Account.from_key(sponsor_key)
    fee = w3.eth.gas_price * 2
    tx = {
        "type": 4,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(sponsor.address),
        "to": sponsor.address,
        "value": 0,
        "data": b"",
        "gas": 100_000,
        "maxFeePerGas": fee,
        "maxPriorityFeePerGas": fee,
        "authorizationList": [auth],
    }
    signed = Account.sign_transaction(tx, sponsor_key)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(signed.raw_transaction)
    )
    assert receipt["status"] == 1
    code = bytes(w3.eth.get_code(authority.address))
    expected = b"" if int(target, 16) == 0 else b"\xef\x01\x00" + bytes.fromhex(target[2:])
    assert code == expected, code.hex()


def high_s(sig: bytes) -> bytes:
    """The malleated twin of a low-s signature: (r, n - s, v ^ 1) recovers the same key."""
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


def address_of(key: str) -> ChecksumAddress:
    return to_checksum_address(Account.from_key(key).address)


def abi_items(contract: Contract) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], contract.abi)


def fresh_address() -> ChecksumAddress:
    return to_checksum_address("0x" + secrets.token_hex(20))


@pytest.fixture
def harness(w3: Web3, dev_keys: tuple[str, ...], chain_snapshot: None) -> Iterator[PoolHarness]:
    owner = address_of(dev_keys[0])
    signer = address_of(dev_keys[1])
    guardian = address_of(dev_keys[2])
    sender = address_of(dev_keys[3])
    pool = deploy_autopool(
        w3, dev_keys[0], owner=owner, signer=signer, guardian=guardian, outflow_cap=DEFAULT_CAP
    )
    users = [address_of(k) for k in dev_keys[4:]]
    yield PoolHarness(w3, pool, owner, dev_keys[1], guardian, sender, users)
