"""Typed chain errors: what a node's refusal or an RPC failure means, decided in one place.

Nodes do not agree on their messages (geth and BSC, Erigon, Nethermind, Besu, Anvil and Hardhat
each word them differently), so `classify` reads a table of the real messages and returns one
of the types below. Callers decide by type, never by matching strings: the settlement worker
retries what is `retryable`, treats `AlreadyKnown` as "sent" and `NonceTooLow` as "was it ours,
mined?", and stops sending on `InsufficientFunds`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar

from eth_abi.abi import decode
from eth_utils import function_abi_to_4byte_selector

from backend.chain.artifacts import load_artifact


class ChainError(Exception):
    """A node refused a request, or the request did not reach a node."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.data = data


class NonceTooLow(ChainError):
    """The account nonce is used already: by our own earlier attempt (then it is mined, an
    outcome) or by another program (then it must be reported, never skipped)."""


class NonceTooHigh(ChainError):
    """A gap: an earlier nonce of the account is not known to the node."""

    retryable = True


class ReplacementUnderpriced(ChainError):
    """A transaction with this nonce is pending and ours does not pay enough more to replace
    it: bump by at least the node's minimum (10% on geth; use 12.5%)."""

    retryable = True


class AlreadyKnown(ChainError):
    """The node has this very transaction already: it was sent (an outcome, not a failure)."""


class Underpriced(ChainError):
    """The fee is below the node's minimum or the block's base fee: raise it."""

    retryable = True


class InsufficientFunds(ChainError):
    """The sender cannot pay for gas (and value): alert, and stop sending from it."""


class PoolFull(ChainError):
    """The node's pool is full or rate-limits the sender: retry later."""

    retryable = True


class FeeCapExceeded(ChainError):
    """The transaction fee exceeds the node's configured cap."""


class InvalidTransaction(ChainError):
    """The node will never accept this transaction (bad signature, gas limit out of bounds,
    oversized data, ...), whatever the nonce or the fee."""


class Reverted(ChainError):
    """Execution reverted. `error` names the contract's custom error when it is one of the
    AutoPool's (e.g. `BatchAlreadyExecuted`), `args` its decoded arguments."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        data: Any = None,
        error: str | None = None,
        args: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(message, code=code, data=data)
        self.error = error
        self.error_args = args


class OutOfGas(ChainError):
    """The call needs more gas than it was given (or than the block allows)."""


class RpcTimeout(ChainError):
    """No answer in time: the request may or may not have reached the node."""

    retryable = True


class RpcUnavailable(ChainError):
    """The node could not be reached, or answered with a server error."""

    retryable = True


class RateLimited(ChainError):
    """The provider throttles us."""

    retryable = True


class UnknownChainError(ChainError):
    """A refusal no rule of the table recognizes: treated as not retryable, and logged."""


# (error type, pattern). Order matters: the first match wins; specific before general.
_RULES: tuple[tuple[type[ChainError], re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE))
    for kind, pattern in (
        # already known — geth/BSC/Erigon "already known", older geth "known transaction: 0x..",
        # Anvil "transaction already imported", Hardhat "Known transaction: 0x..", Nethermind
        # "AlreadyKnown" / "OwnNonceAlreadyUsed", Besu "Known transaction"
        (AlreadyKnown, r"already known|known transaction|already imported|AlreadyKnown"),
        (AlreadyKnown, r"OwnNonceAlreadyUsed"),
        # nonce too low — geth/BSC/Erigon/Anvil "nonce too low", Hardhat "Transaction nonce too
        # low. Expected nonce to be at least 1 but got 0.", Nethermind "OldNonce", Besu "Nonce
        # too low", OpenEthereum "Transaction nonce is too low"
        (NonceTooLow, r"nonce too low|nonce is too low|OldNonce"),
        # geth's ErrFutureReplacePending: a gapped nonce may not replace a pending one
        (NonceTooHigh, r"nonce too high|NonceGap|future transaction tries to replace pending"),
        # replacement underpriced — geth/BSC/Erigon/Anvil "replacement transaction
        # underpriced", Hardhat "Replacement transaction underpriced. A gasPrice/maxFeePerGas
        # of at least N is necessary ...", OpenEthereum "... There is another transaction with
        # same nonce in the queue"
        (
            ReplacementUnderpriced,
            r"replacement transaction underpriced|another transaction "
            r"with same nonce|could not replace existing tx",
        ),
        # insufficient funds — geth/BSC/Erigon "insufficient funds for gas * price + value",
        # Anvil "Insufficient funds for gas * price + value", Hardhat "Sender doesn't have
        # enough funds to send tx", Nethermind "InsufficientFunds", Besu "Upfront cost exceeds
        # account balance"
        (
            InsufficientFunds,
            r"insufficient funds|insufficient balance|doesn't have enough "
            r"funds|InsufficientFunds|upfront cost exceeds account balance",
        ),
        # fee too low — geth "transaction underpriced", geth/Anvil "max fee per gas less than
        # block base fee", Nethermind "FeeTooLow" / "FeeTooLowToCompete", Besu "Gas price below
        # configured minimum gas price"
        (
            Underpriced,
            r"transaction underpriced|less than block base fee|FeeTooLow|gas price "
            r"below configured minimum|gas price too low",
        ),
        (FeeCapExceeded, r"exceeds the configured cap|fee cap exceeded"),
        (PoolFull, r"txpool is full|too many transactions in the queue|queue full"),
        # gas — estimate: geth "gas required exceeds allowance (N)", Hardhat "Transaction ran
        # out of gas"; send: geth/Anvil "intrinsic gas too low", Hardhat "Transaction requires
        # at least 21000 gas but got 20000", "exceeds block gas limit"
        (OutOfGas, r"gas required exceeds allowance|out of gas"),
        (
            InvalidTransaction,
            r"intrinsic gas too low|requires at least \d+ gas|exceeds block "
            r"gas limit|transaction gas limit too high|exceeds max transaction gas limit|"
            r"invalid sender|invalid signature|oversized data|negative value|gas uint64 "
            r"overflow|SenderIsContract|GasLimitExceeded",
        ),
        (RateLimited, r"rate limit|too many requests|exceeded .*(capacity|quota)|429"),
        (Reverted, r"execution reverted|reverted|VM Exception while processing transaction"),
    )
)


def _message_of(exc: BaseException) -> tuple[str, int | None, Any]:
    """(message, JSON-RPC code, data) from a web3, aiohttp or plain exception."""
    rpc = getattr(exc, "rpc_response", None)
    if isinstance(rpc, Mapping) and isinstance(rpc.get("error"), Mapping):
        error = rpc["error"]
        return str(error.get("message", "")), error.get("code"), error.get("data")
    if exc.args and isinstance(exc.args[0], Mapping):  # web3 raises ValueError({...}) at times
        error = exc.args[0]
        return str(error.get("message", "")), error.get("code"), error.get("data")
    data = getattr(exc, "data", None)
    message = getattr(exc, "message", None)
    return str(message if isinstance(message, str) else exc), None, data


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or type(exc).__name__ in (
        "ServerTimeoutError",
        "ReadTimeout",
        "ConnectTimeout",
        "Timeout",
        "TimeExhausted",
    )


def _is_unreachable(exc: BaseException) -> bool:
    names = {t.__name__ for t in type(exc).__mro__}
    return bool(
        names
        & {
            "ClientConnectionError",
            "ClientConnectorError",
            "ServerDisconnectedError",
            "ConnectionError",
            "ClientResponseError",
        }
    )


def classify_message(message: str, *, code: int | None = None, data: Any = None) -> ChainError:
    """The typed error for a node's error message."""
    for kind, pattern in _RULES:
        if pattern.search(message):
            if kind is Reverted:
                return reverted(message, code=code, data=data)
            return kind(message, code=code, data=data)
    return UnknownChainError(message, code=code, data=data)


def classify(exc: BaseException) -> ChainError:
    """The typed error for an exception raised by a chain call."""
    if isinstance(exc, ChainError):
        return exc
    if _is_timeout(exc):
        return RpcTimeout(str(exc) or type(exc).__name__)
    if _is_unreachable(exc):
        return RpcUnavailable(str(exc) or type(exc).__name__)
    message, code, data = _message_of(exc)
    if type(exc).__name__ in ("ContractLogicError", "ContractCustomError", "ContractPanicError"):
        return reverted(message, code=code, data=data)
    return classify_message(message, code=code, data=data)


@cache
def _custom_errors() -> dict[bytes, tuple[str, list[str]]]:
    errors: dict[bytes, tuple[str, list[str]]] = {}
    for item in load_artifact("AutoPool")["abi"]:
        if item["type"] == "error":
            selector = function_abi_to_4byte_selector(item)
            errors[selector] = (item["name"], [i["type"] for i in item.get("inputs", [])])
    return errors


def _revert_bytes(data: Any) -> bytes | None:
    if isinstance(data, Mapping):
        data = data.get("data")
    if isinstance(data, bytes):
        return data
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


def reverted(message: str, *, code: int | None = None, data: Any = None) -> Reverted:
    """A `Reverted`, with the AutoPool custom error decoded when its data carries one."""
    raw = _revert_bytes(data)
    if raw is not None and len(raw) >= 4:
        known = _custom_errors().get(raw[:4])
        if known is not None:
            name, types = known
            try:
                args = tuple(decode(types, raw[4:])) if types else ()
            except Exception:
                args = ()
            return Reverted(message, code=code, data=data, error=name, args=args)
    return Reverted(message, code=code, data=data)
