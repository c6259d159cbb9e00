"""Decode AutoPool logs into (name, JSON-safe args) using the compiled ABI."""

from __future__ import annotations

from typing import Any

from eth_utils import event_abi_to_log_topic
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.datastructures import AttributeDict
from web3.types import LogReceipt

from backend.chain.artifacts import load_artifact


def _json_safe(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)  # wei and uint256 exceed JSON's safe integers
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class EventDecoder:
    def __init__(self, w3: AsyncWeb3[Any], address: str) -> None:
        abi = load_artifact("AutoPool")["abi"]
        self.contract: AsyncContract = w3.eth.contract(
            address=AsyncWeb3.to_checksum_address(address), abi=abi
        )
        self.by_topic: dict[bytes, str] = {
            event_abi_to_log_topic(item): item["name"]  # type: ignore[arg-type]
            for item in abi
            if item["type"] == "event"
        }

    def decode_raw(self, raw: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """`decode` for a log as the node's JSON has it (hex strings), from `RpcClient`."""
        log = AttributeDict(
            {
                "address": raw["address"],
                "topics": [HexBytes(t) for t in raw["topics"]],
                "data": HexBytes(raw["data"]),
                "blockHash": HexBytes(raw["blockHash"]),
                "blockNumber": int(raw["blockNumber"], 16),
                "transactionHash": HexBytes(raw["transactionHash"]),
                "transactionIndex": int(raw["transactionIndex"], 16),
                "logIndex": int(raw["logIndex"], 16),
            }
        )
        return self.decode(log)  # type: ignore[arg-type]

    def decode(self, log: LogReceipt) -> tuple[str, dict[str, Any]] | None:
        """(event name, args) for a log of the contract; None for an unknown topic."""
        if not log["topics"]:
            return None
        name = self.by_topic.get(bytes(log["topics"][0]))
        if name is None:
            return None
        decoded = getattr(self.contract.events, name)().process_log(log)
        return name, {k: _json_safe(v) for k, v in decoded["args"].items()}
