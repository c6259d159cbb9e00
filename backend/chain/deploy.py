"""Deploy the AutoPool contract from its Hardhat artifact (devnet and tests)."""

from __future__ import annotations

from eth_account import Account
from web3 import Web3
from web3.contract import Contract

from backend.chain.artifacts import load_artifact


def deploy_autopool(
    w3: Web3,
    deployer_key: str,
    *,
    owner: str,
    signer: str,
    guardian: str,
    outflow_cap: int,
) -> Contract:
    """Deploy `AutoPool(owner, signer, guardian, outflowCap)` and return the bound contract.

    `outflow_cap` is the rolling 24-hour outflow limit in wei.
    """
    art = load_artifact("AutoPool")
    acct = Account.from_key(deployer_key)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx = factory.constructor(owner, signer, guardian, outflow_cap).build_transaction(
        {"from": acct.address, "nonce": w3.eth.get_transaction_count(acct.address)}
    )
    signed = acct.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise RuntimeError(f"AutoPool deployment reverted: {tx_hash.hex()}")
    address = receipt["contractAddress"]
    assert address is not None
    return w3.eth.contract(address=address, abi=art["abi"])
