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
    delay_seconds: int = 60,
) -> Contract:
    """Deploy `AutoPool(owner, signer, guardian, outflowCap, changeDelay)` and return the bound
    contract.

    `outflow_cap` is the rolling 24-hour outflow limit in wei (at most 2**128 - 1).
    `delay_seconds` is the public delay between proposing and executing an admin change that
    could let more leave the contract (signer rotation, cap raise, guardian change, unpause).
    The default of 60 s suits the devnet and tests; the contract refuses less than 48 hours on
    BSC mainnet (chain id 56) and more than 30 days anywhere.
    """
    art = load_artifact("AutoPool")
    acct = Account.from_key(deployer_key)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx = factory.constructor(owner, signer, guardian, outflow_cap, delay_seconds).build_transaction(
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
