"""Decode AutoPool logs into (name, JSON-safe args) using the compiled ABI."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic, keccak, to_checksum_address
from web3 import AsyncWeb3
from web3.contract import AsyncContract
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


# Static one-word types read straight off the hex (every event of the contract has only
# these); anything else goes through eth-abi.
_WORD_TYPE = re.compile(r"^(address|bool|bytes32|uint(\d*))$")
_ZERO_PAD = "0" * 24


_UPPER_IF = frozenset("89abcdef")


@lru_cache(maxsize=65_536)
def _checksum(address_hex: str) -> str:
    """EIP-55 form of a 40-digit lowercase hex address: a letter is upper case where the
    keccak of the lowercase address has a nibble >= 8 (cached: a run sees the same sponsors
    again). `eth_utils.to_checksum_address` validates and converts first, twice the cost."""
    digest = keccak(address_hex.encode()).hex()
    return "0x" + "".join(
        c.upper() if d in _UPPER_IF else c for c, d in zip(address_hex, digest, strict=False)
    )


@dataclass(frozen=True)
class _EventSpec:
    name: str
    inputs: tuple[tuple[str, str, bool], ...]  # (name, ABI type, indexed)
    data_types: tuple[str, ...]
    words: tuple[tuple[str, str, bool, int, int], ...] | None = None
    """(name, type, indexed, position, bits) per input when every input is one static word."""


def _word_layout(
    inputs: tuple[tuple[str, str, bool], ...],
) -> tuple[tuple[str, str, bool, int, int], ...] | None:
    layout = []
    data_at, topic_at = 0, 1
    for name, typ, indexed in inputs:
        match = _WORD_TYPE.match(typ)
        if match is None:
            return None
        bits = int(match.group(2) or 256) if typ.startswith("uint") else 0
        kind = "uint" if typ.startswith("uint") else typ
        if indexed:
            layout.append((name, kind, True, topic_at, bits))
            topic_at += 1
        else:
            layout.append((name, kind, False, data_at, bits))
            data_at += 1
    return tuple(layout)


class EventDecoder:
    """Decode the contract's logs. `decode_raw` reads the node's JSON directly with eth-abi
    (about 40x faster than web3's `process_log`, which `decode` keeps for web3 log objects);
    both give the same (name, args), tested on every event the contract emits."""

    def __init__(self, w3: AsyncWeb3[Any], address: str) -> None:
        abi = load_artifact("AutoPool")["abi"]
        self.contract: AsyncContract = w3.eth.contract(
            address=AsyncWeb3.to_checksum_address(address), abi=abi
        )
        self.by_topic: dict[bytes, str] = {}
        self._specs: dict[str, _EventSpec] = {}
        for item in abi:
            if item["type"] != "event":
                continue
            topic = event_abi_to_log_topic(item)  # type: ignore[arg-type]
            self.by_topic[topic] = item["name"]
            inputs = tuple((i["name"], i["type"], bool(i["indexed"])) for i in item["inputs"])
            self._specs["0x" + topic.hex()] = _EventSpec(
                item["name"],
                inputs,
                tuple(t for _, t, indexed in inputs if not indexed),
                _word_layout(inputs),
            )

    def decode_raw(self, raw: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """`decode` for a log as the node's JSON has it (hex strings), from `RpcClient`."""
        topics = raw["topics"]
        if not topics:
            return None
        spec = self._specs.get(topics[0].lower())
        if spec is None:
            return None
        if spec.words is not None:
            fast = self._decode_words(spec, topics, raw["data"])
            if fast is not None:
                return spec.name, fast
        data = iter(abi_decode(spec.data_types, bytes.fromhex(raw["data"][2:])))
        indexed = iter(topics[1:])
        args: dict[str, Any] = {}
        for name, typ, is_indexed in spec.inputs:
            if is_indexed:
                value = abi_decode([typ], bytes.fromhex(next(indexed)[2:]))[0]
            else:
                value = next(data)
            if typ == "address":
                value = to_checksum_address(value)
            args[name] = _json_safe(value)
        return spec.name, args

    @staticmethod
    def _decode_words(spec: _EventSpec, topics: list[str], data_hex: str) -> dict[str, Any] | None:
        """The args of a log whose inputs are all one-word static types, read off the hex;
        None when anything is not canonical (eth-abi then decides, and raises if it must)."""
        assert spec.words is not None
        data = data_hex[2:]
        if len(data) != 64 * len(spec.data_types) or len(topics) != 1 + len(spec.inputs) - len(
            spec.data_types
        ):
            return None
        args: dict[str, Any] = {}
        for name, kind, indexed, at, bits in spec.words:
            word = topics[at][2:] if indexed else data[64 * at : 64 * at + 64]
            if len(word) != 64:
                return None
            if kind == "address":
                if word[:24] != _ZERO_PAD:
                    return None
                args[name] = _checksum(word[24:].lower())
            elif kind == "bytes32":
                args[name] = "0x" + word.lower()
            else:
                value = int(word, 16)
                if kind == "bool":
                    if value > 1:
                        return None
                    args[name] = value == 1
                elif value >> bits:
                    return None
                else:
                    args[name] = str(value)
        return args

    def decode(self, log: LogReceipt) -> tuple[str, dict[str, Any]] | None:
        """(event name, args) for a log of the contract; None for an unknown topic."""
        if not log["topics"]:
            return None
        name = self.by_topic.get(bytes(log["topics"][0]))
        if name is None:
            return None
        decoded = getattr(self.contract.events, name)().process_log(log)
        return name, {k: _json_safe(v) for k, v in decoded["args"].items()}
