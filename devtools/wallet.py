"""What a participant's wallet does, for the devnet and the tests: send the `tx` the API
returned, signed with the wallet's own key."""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt


def send_as_wallet(w3: Web3, acct: LocalAccount, tx: dict[str, Any]) -> TxReceipt:
    """Sign and send the `{to, data, value, chainId}` the API returned, as a wallet would."""
    full: dict[str, Any] = {
        "from": acct.address,
        "to": Web3.to_checksum_address(tx["to"]),
        "data": tx["data"],
        "value": int(tx["value"]),
        "chainId": int(tx["chainId"]),
        "nonce": w3.eth.get_transaction_count(acct.address),
        "gasPrice": w3.eth.gas_price,
    }
    full["gas"] = w3.eth.estimate_gas(full)  # type: ignore[arg-type]
    signed = acct.sign_transaction(full)
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
