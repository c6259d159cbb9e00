"""What a wallet-connected dapp does against the API, for the devnet, the tests and the
benchmarks: Sign-In with Ethereum, then authenticated calls.

TEST/DEV ONLY: it signs with local keys.
"""

from __future__ import annotations

from typing import Any

import httpx
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount


def _signed(acct: LocalAccount, nonce: dict[str, Any]) -> dict[str, str]:
    signature = acct.sign_message(encode_defunct(text=nonce["message"])).signature
    return {"wallet": acct.address, "signature": "0x" + signature.hex(), "nonce": nonce["nonce"]}


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


async def sign_in(api: httpx.AsyncClient, acct: LocalAccount) -> dict[str, Any]:
    """GET /auth/nonce, sign the message with the wallet's key, POST /auth/wallet: the tokens."""
    r = await api.get("/auth/nonce", params={"wallet": acct.address})
    r.raise_for_status()
    r = await api.post("/auth/wallet", json=_signed(acct, r.json()))
    r.raise_for_status()
    tokens: dict[str, Any] = r.json()
    return tokens


def sign_in_sync(api: httpx.Client, acct: LocalAccount) -> dict[str, Any]:
    r = api.get("/auth/nonce", params={"wallet": acct.address})
    r.raise_for_status()
    r = api.post("/auth/wallet", json=_signed(acct, r.json()))
    r.raise_for_status()
    tokens: dict[str, Any] = r.json()
    return tokens


async def register(
    api: httpx.AsyncClient, acct: LocalAccount, referrer: str, tokens: dict[str, Any] | None = None
) -> httpx.Response:
    """POST /users/register as `acct` (signed in first unless `tokens` are given)."""
    tokens = tokens or await sign_in(api, acct)
    return await api.post("/users/register", json={"referrer": referrer}, headers=bearer(tokens))
