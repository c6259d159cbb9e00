"""Gas benchmark of the AutoPool contract on a local Anvil (issues 3 and the owner-delay issue).

    python benchmarks/bench_gas.py            # full run (~2 min): table + max batch under 2^24
    python benchmarks/bench_gas.py --quick    # skip the max-batch search

Targets: <= 12,700 gas per recipient in a 200-recipient batch in the worst case (the first
batch), events included; `register` <= 60,000 with a cold nonce word.

Everything is measured in one run on one fresh Anvil, from transaction receipts (`gasUsed` is
the total transaction gas: 21,000 base + calldata + execution, events included):

1. Deployment, and `register` and `retopup`, each with a cold nonce word (never written: the
   0 -> nonzero SSTORE) and with a warm one (the word already holds other used nonces).
2. `executeBatchPayouts` with 1, 10, 50 and 200 recipients that are existing, funded EOAs
   (each recipient distinct and cold, as in production). Two figures per size: the first batch
   on a fresh contract (its batch-id and nonce bitmap words were never written: the worst case;
   the outflow ring is filled nonzero at deployment, so no batch pays a 0 -> nonzero write
   there) and a steady-state batch (the contract has run batches before). Beside each, the same
   payouts sent as one plain transfer each (EOA -> EOA), measured in the same run.
3. The duplicate-recipient filter: the first 200-recipient batch over 12 random recipient sets
   (two recipients sharing their low 16 bits cost a comparison pass), and over 200 recipients
   chosen to share them all (an attacker grinding wallet addresses: the filter's worst case).
4. The worst case per recipient: 50 recipients that burn all the gas they are given (deferred).
5. The largest steady-state batch whose `eth_estimateGas` fits BSC's per-transaction gas cap
   of 2^24 = 16,777,216, found by bisection and then executed with gas limit exactly 2^24.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from backend.chain.artifacts import load_artifact
from backend.chain.typed_data import Domain, full_message
from devtools.anvil import DEV_PRIVATE_KEYS, start_anvil
from devtools.deploy import deploy_autopool
from devtools.processes import REPO_ROOT

ETHER = 10**18
GAS_CAP = 2**24
PLAN_HASH = b"\x11" * 32


class Bench:
    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.owner = Account.from_key(DEV_PRIVATE_KEYS[0]).address
        self.signer_key = DEV_PRIVATE_KEYS[1]
        self.sender = Account.from_key(DEV_PRIVATE_KEYS[3]).address
        self.payer = Account.from_key(DEV_PRIVATE_KEYS[4]).address
        self.transferer = Account.from_key(DEV_PRIVATE_KEYS[5]).address
        self.nonce = 0
        self.batch_id = 0
        for account in (self.payer, self.transferer):
            self.rpc("anvil_setBalance", [account, hex(10**9 * ETHER)])

    def rpc(self, method: str, params: list[Any]) -> Any:
        return self.w3.provider.make_request(method, params)  # type: ignore[arg-type]

    def deploy(self) -> Contract:
        pool = deploy_autopool(
            self.w3,
            DEV_PRIVATE_KEYS[0],
            owner=self.owner,
            signer=Account.from_key(self.signer_key).address,
            guardian=Account.from_key(DEV_PRIVATE_KEYS[2]).address,
            outflow_cap=2**128 - 1,
            delay_seconds=48 * 3600,
        )
        return pool

    def last_gas_used(self) -> int:
        """gasUsed of the latest transaction (Anvil mines one per block)."""
        block = self.w3.eth.get_block("latest")
        return int(self.w3.eth.get_transaction_receipt(block["transactions"][-1])["gasUsed"])

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def sign(self, pool: Contract, primary: str, msg: dict[str, Any]) -> bytes:
        domain = Domain(chain_id=self.w3.eth.chain_id, verifying_contract=pool.address)
        doc = full_message(domain, primary, msg)
        return bytes(Account.sign_typed_data(self.signer_key, full_message=doc).signature)

    def receipt(self, fn: Any, sender: str, value: int = 0, gas: int | None = None) -> Any:
        tx: dict[str, Any] = {"from": sender, "value": value}
        if gas is not None:
            tx["gas"] = gas
        receipt = self.w3.eth.wait_for_transaction_receipt(fn.transact(tx))
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction reverted: {receipt['transactionHash'].hex()}")
        return receipt

    def register(self, pool: Contract, amount: int, nonce: int) -> int:
        msg = {
            "user": self.payer,
            "referrer": self.owner,
            "slot": 1,
            "amount": amount,
            "planHash": PLAN_HASH,
            "nonce": nonce,
            "deadline": self.now() + 3600,
        }
        args = tuple(msg.values())
        fn = pool.functions.register(args, self.sign(pool, "Registration", msg))
        return int(self.receipt(fn, self.payer, amount)["gasUsed"])

    def retopup(self, pool: Contract, amount: int, nonce: int) -> int:
        msg = {
            "user": self.payer,
            "amount": amount,
            "planHash": PLAN_HASH,
            "nonce": nonce,
            "deadline": self.now() + 3600,
        }
        fn = pool.functions.retopup(tuple(msg.values()), self.sign(pool, "Retopup", msg))
        return int(self.receipt(fn, self.payer, amount)["gasUsed"])

    def batch_fn(self, pool: Contract, recipients: list[ChecksumAddress]) -> Any:
        self.nonce += 1
        self.batch_id += 1
        msg = {
            "batchId": self.batch_id,
            "payouts": [{"recipient": r, "amount": 10**15 + i} for i, r in enumerate(recipients)],
            "nonce": 10**6 + self.nonce,  # the batch nonces share one warm word
            "deadline": self.now() + 3600,
        }
        args = (
            msg["batchId"],
            [(r, 10**15 + i) for i, r in enumerate(recipients)],
            msg["nonce"],
            msg["deadline"],
        )
        return pool.functions.executeBatchPayouts(args, self.sign(pool, "PayoutBatch", msg))

    def funded_eoas(self, n: int, tail: bytes = b"") -> list[ChecksumAddress]:
        """`n` fresh funded EOAs; with `tail`, all ending in those bytes."""
        out = [to_checksum_address(secrets.token_bytes(20 - len(tail)) + tail) for _ in range(n)]
        for a in out:
            self.rpc("anvil_setBalance", [a, hex(ETHER)])
        return out

    def plain_transfers(self, n: int) -> int:
        total = 0
        for r in self.funded_eoas(n):
            tx = {"from": self.transferer, "to": r, "value": 10**15}
            receipt = self.w3.eth.wait_for_transaction_receipt(
                self.w3.eth.send_transaction(tx)  # type: ignore[arg-type]
            )
            total += int(receipt["gasUsed"])
        return total


def fund(bench: Bench, pool: Contract) -> None:
    bench.register(pool, 10**6 * ETHER, nonce=1)


def run(quick: bool) -> None:
    subprocess.run(
        ["npx", "--no-install", "hardhat", "compile", "--quiet"],
        cwd=REPO_ROOT,
        check=True,
    )
    started = time.perf_counter()
    with start_anvil(accounts=10) as node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url, request_kwargs={"timeout": 120}))
        bench = Bench(w3)
        info = bench.rpc("anvil_nodeInfo", [])["result"]
        print(f"Anvil {info.get('hardFork', '?')} hard fork, chain id {w3.eth.chain_id}")
        print("gasUsed = total transaction gas (21,000 base + calldata + execution, events in)\n")

        # 1. deployment and inflows
        pool = bench.deploy()
        print(f"Deployment: {bench.last_gas_used():,} gas\n")
        reg_cold = bench.register(pool, 20 * ETHER, nonce=5 * 256)
        reg_warm = bench.register(pool, 20 * ETHER, nonce=5 * 256 + 1)
        top_cold = bench.retopup(pool, 40 * ETHER, nonce=6 * 256)
        top_warm = bench.retopup(pool, 40 * ETHER, nonce=6 * 256 + 1)
        print("| call | cold nonce word | warm nonce word | target |")
        print("|---|---:|---:|---:|")
        print(f"| register | {reg_cold:,} | {reg_warm:,} | <= 60,000 |")
        print(f"| retopup | {top_cold:,} | {top_warm:,} | <= 70,000 |")
        print()

        # 2. batches beside plain transfers
        rows = []
        steady_pool = bench.deploy()
        fund(bench, steady_pool)
        bench.receipt(bench.batch_fn(steady_pool, bench.funded_eoas(3)), bench.sender)  # warm-up
        for n in (1, 10, 50, 200):
            fresh = bench.deploy()
            fund(bench, fresh)
            first = int(
                bench.receipt(bench.batch_fn(fresh, bench.funded_eoas(n)), bench.sender)["gasUsed"]
            )
            steady = int(
                bench.receipt(bench.batch_fn(steady_pool, bench.funded_eoas(n)), bench.sender)[
                    "gasUsed"
                ]
            )
            plain = bench.plain_transfers(n)
            rows.append((n, first, steady, plain))
        print(
            "| recipients | first batch gas | per recipient | steady batch gas | per recipient "
            "| plain transfers gas | per transfer | steady / plain |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n, first, steady, plain in rows:
            print(
                f"| {n} | {first:,} | {first / n:,.0f} | {steady:,} | {steady / n:,.0f} "
                f"| {plain:,} | {plain / n:,.0f} | {steady / plain:.2f} |"
            )
        print()

        # 3. the duplicate filter: random sets, then a set that collides in it everywhere
        spread = []
        for _ in range(12):
            fresh = bench.deploy()
            fund(bench, fresh)
            used = bench.receipt(bench.batch_fn(fresh, bench.funded_eoas(200)), bench.sender)
            spread.append(int(used["gasUsed"]) / 200)
        print(
            "First 200-recipient batch over 12 random recipient sets, per recipient: "
            f"min {min(spread):,.0f}, median {statistics.median(spread):,.0f}, "
            f"max {max(spread):,.0f} (target <= 12,700)"
        )
        fresh = bench.deploy()
        fund(bench, fresh)
        colliding = bench.funded_eoas(200, tail=secrets.token_bytes(2))
        used = bench.receipt(bench.batch_fn(fresh, colliding), bench.sender)
        print(
            "First 200-recipient batch, all recipients sharing their low 16 bits: "
            f"{int(used['gasUsed']):,} gas, {int(used['gasUsed']) / 200:,.0f} per recipient\n"
        )

        # 4. worst case: every recipient burns its whole stipend and is deferred
        burner_art = load_artifact("GasBurner", "test/Recipients")
        factory = w3.eth.contract(abi=burner_art["abi"], bytecode=burner_art["bytecode"])
        burners = []
        for _ in range(50):
            r = w3.eth.wait_for_transaction_receipt(
                factory.constructor().transact({"from": bench.owner})
            )
            address = r["contractAddress"]
            assert address is not None
            burners.append(to_checksum_address(address))
        hostile = int(bench.receipt(bench.batch_fn(steady_pool, burners), bench.sender)["gasUsed"])
        print(
            f"Worst case, 50 recipients that burn all their gas (all deferred): {hostile:,} gas, "
            f"{hostile / 50:,.0f} per recipient\n"
        )

        if not quick:
            # 5. the largest steady-state batch under 2^24
            per = (rows[-1][2] - rows[-2][2]) / 150
            base = rows[-1][2] - 200 * per
            guess = int((GAS_CAP - base) / per)
            pool_size = guess + 60
            recipients = bench.funded_eoas(pool_size)

            def estimate(k: int) -> int | None:
                fn = bench.batch_fn(steady_pool, recipients[:k])
                try:
                    return int(fn.estimate_gas({"from": bench.sender}))
                except Exception:
                    return None

            lo, hi = guess - 50, pool_size  # invariant: lo fits, hi does not
            est_lo = estimate(lo)
            assert est_lo is not None and est_lo <= GAS_CAP, (lo, est_lo)
            est_hi = estimate(hi)
            assert est_hi is None or est_hi > GAS_CAP, (hi, est_hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                est = estimate(mid)
                if est is not None and est <= GAS_CAP:
                    lo = mid
                else:
                    hi = mid
            receipt = bench.receipt(
                bench.batch_fn(steady_pool, recipients[:lo]), bench.sender, gas=GAS_CAP
            )
            used = int(receipt["gasUsed"])
            print(
                f"Largest batch under the 2^24 = {GAS_CAP:,} per-transaction gas cap: {lo} "
                f"recipients (executed with gas limit 2^24: gasUsed {used:,}, "
                f"{used / lo:,.0f} per recipient; {lo + 1} recipients need more than 2^24)"
            )
            print(
                f"Linear fit from 50 -> 200: {per:,.0f} gas per extra recipient, {base:,.0f} fixed"
            )
    print(f"\n({time.perf_counter() - started:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the max-batch search")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
