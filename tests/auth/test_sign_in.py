"""Sign-In with Ethereum (EIP-4361): a nonce is single use and short lived, every field the
library leaves to its caller is checked, contract wallets sign through EIP-1271, and a
refresh token reused after rotation ends the whole session."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from siwe import SiweMessage
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from web3 import Web3

from backend.core.db import unit_of_work
from backend.core.errors import PROBLEM_BASE
from backend.core.security import Principal, Role
from backend.core.settings import Settings
from devtools.dapp import bearer, sign_in
from tests.contracts.conftest import deploy_artifact


async def nonce_for(api: httpx.AsyncClient, wallet: str) -> dict[str, Any]:
    r = await api.get("/auth/nonce", params={"wallet": wallet})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def signed(acct: LocalAccount, message: str) -> str:
    return "0x" + acct.sign_message(encode_defunct(text=message)).signature.hex()


async def post_sign_in(api: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await api.post("/auth/wallet", json=body)


def refused(r: httpx.Response, problem: str) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["type"] == PROBLEM_BASE + problem, r.text


def message_like(issued: str, *, at: datetime | None = None, **changes: Any) -> str:
    """The issued message with some fields changed (what a phishing site or a replay sends)."""
    parsed = SiweMessage.from_message(issued)
    fields = {
        "domain": parsed.domain,
        "address": parsed.address,
        "statement": parsed.statement,
        "uri": parsed.uri,
        "version": parsed.version,
        "chain_id": parsed.chain_id,
        "nonce": parsed.nonce,
        "issued_at": str(parsed.issued_at),
        "expiration_time": str(parsed.expiration_time),
    }
    if at is not None:
        fields["issued_at"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        fields["expiration_time"] = (at + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields.update(changes)
    return SiweMessage(**fields).prepare_message()


async def test_a_signed_nonce_opens_a_session(api: httpx.AsyncClient) -> None:
    acct = Account.create()
    issued = await nonce_for(api, acct.address)
    assert len(issued["nonce"]) >= 16  # ≥ 64 bits of entropy
    assert acct.address in issued["message"] and issued["nonce"] in issued["message"]
    r = await post_sign_in(
        api, wallet=acct.address, signature=signed(acct, issued["message"]), nonce=issued["nonce"]
    )
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["user"]["wallet"] == acct.address and tokens["user"]["roles"] == ["participant"]
    me = await api.get("/users/me", headers=bearer(tokens))
    assert me.status_code == 200 and me.json()["wallet"] == acct.address


async def test_a_replayed_nonce_is_refused(api: httpx.AsyncClient) -> None:
    acct = Account.create()
    issued = await nonce_for(api, acct.address)
    body = {
        "wallet": acct.address,
        "signature": signed(acct, issued["message"]),
        "nonce": issued["nonce"],
    }
    assert (await post_sign_in(api, **body)).status_code == 200
    refused(await post_sign_in(api, **body), "nonce-invalid")


async def test_a_failed_attempt_burns_the_nonce(api: httpx.AsyncClient) -> None:
    acct, other = Account.create(), Account.create()
    issued = await nonce_for(api, acct.address)
    wrong = signed(other, issued["message"])  # another wallet's signature
    refused(
        await post_sign_in(api, wallet=acct.address, signature=wrong, nonce=issued["nonce"]),
        "sign-in-refused",
    )
    right = signed(acct, issued["message"])
    refused(
        await post_sign_in(api, wallet=acct.address, signature=right, nonce=issued["nonce"]),
        "nonce-invalid",
    )


async def test_an_expired_nonce_is_refused(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    acct = Account.create()
    issued = await nonce_for(api, acct.address)
    async with unit_of_work(sessions) as s:
        await s.execute(
            text(
                "UPDATE auth_nonces SET expires_at = now() - interval '1 second' WHERE nonce = :n"
            ),
            {"n": issued["nonce"]},
        )
    r = await post_sign_in(
        api, wallet=acct.address, signature=signed(acct, issued["message"]), nonce=issued["nonce"]
    )
    refused(r, "nonce-expired")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"domain": "evil.example"}, "another domain"),
        ({"uri": "https://evil.example"}, "another URI"),
        ({"chain_id": 56}, "another chain"),
    ],
)
async def test_a_message_for_another_domain_uri_or_chain_is_refused(
    api: httpx.AsyncClient, change: dict[str, Any], reason: str
) -> None:
    acct = Account.create()
    issued = await nonce_for(api, acct.address)
    message = message_like(issued["message"], **change)
    r = await post_sign_in(
        api,
        wallet=acct.address,
        signature=signed(acct, message),
        nonce=issued["nonce"],
        message=message,
    )
    refused(r, "sign-in-refused")
    assert reason in r.json()["detail"]


async def test_a_message_issued_long_ago_is_refused(api: httpx.AsyncClient) -> None:
    acct = Account.create()
    issued = await nonce_for(api, acct.address)
    message = message_like(issued["message"], at=datetime.now(UTC) - timedelta(hours=2))
    r = await post_sign_in(
        api,
        wallet=acct.address,
        signature=signed(acct, message),
        nonce=issued["nonce"],
        message=message,
    )
    refused(r, "sign-in-refused")


async def test_a_tampered_message_is_refused(api: httpx.AsyncClient) -> None:
    acct = Account.create()
    issued = await nonce_for(api, acct.address)
    signature = signed(acct, issued["message"])
    tampered = message_like(issued["message"], statement="Sign in and approve everything")
    r = await post_sign_in(
        api, wallet=acct.address, signature=signature, nonce=issued["nonce"], message=tampered
    )
    refused(r, "sign-in-refused")


async def test_a_nonce_is_the_wallets_it_was_issued_to(api: httpx.AsyncClient) -> None:
    owner, thief = Account.create(), Account.create()
    issued = await nonce_for(api, owner.address)
    message = message_like(issued["message"], address=thief.address)
    r = await post_sign_in(
        api,
        wallet=thief.address,
        signature=signed(thief, message),
        nonce=issued["nonce"],
        message=message,
    )
    refused(r, "sign-in-refused")


async def test_a_contract_wallet_signs_in_through_eip1271(
    api: httpx.AsyncClient, w3: Web3, dev_keys: tuple[str, ...]
) -> None:
    owner = Account.create()
    wallet = deploy_artifact(
        w3, "Eip1271Wallet", "test/Eip1271Wallet", owner.address, sender=w3.eth.accounts[5]
    )
    issued = await nonce_for(api, wallet.address)
    r = await post_sign_in(
        api,
        wallet=wallet.address,
        signature=signed(owner, issued["message"]),
        nonce=issued["nonce"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["user"]["wallet"] == wallet.address
    stranger = Account.create()
    issued = await nonce_for(api, wallet.address)
    r = await post_sign_in(
        api,
        wallet=wallet.address,
        signature=signed(stranger, issued["message"]),
        nonce=issued["nonce"],
    )
    refused(r, "sign-in-refused")


async def refresh(api: httpx.AsyncClient, token: str) -> httpx.Response:
    return await api.post("/auth/refresh", json={"refreshToken": token})


async def test_refresh_rotates_and_a_reused_token_revokes_the_session(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first = await sign_in(api, Account.create())
    r = await refresh(api, first["refreshToken"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refreshToken"] != first["refreshToken"]
    # Within a few seconds, the rotated token is a client's double request: refused alone.
    refused(await refresh(api, first["refreshToken"]), "refresh-token-rotated")
    r = await refresh(api, second["refreshToken"])
    assert r.status_code == 200, r.text
    third = r.json()
    # Later, a rotated token coming back means it leaked: the whole family goes.
    async with unit_of_work(sessions) as s:
        await s.execute(
            text("UPDATE refresh_tokens SET rotated_at = rotated_at - interval '1 minute'")
        )
    refused(await refresh(api, first["refreshToken"]), "refresh-token-reused")
    refused(await refresh(api, third["refreshToken"]), "refresh-token-invalid")


async def test_logout_ends_the_session(api: httpx.AsyncClient) -> None:
    tokens = await sign_in(api, Account.create())
    r = await api.post("/auth/logout", json={"refreshToken": tokens["refreshToken"]})
    assert r.status_code == 204
    refused(await refresh(api, tokens["refreshToken"]), "refresh-token-invalid")


async def test_no_refresh_outlives_the_sessions_absolute_lifetime(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tokens = await sign_in(api, Account.create())
    async with unit_of_work(sessions) as s:
        await s.execute(text("UPDATE refresh_tokens SET session_expires_at = now()"))
    refused(await refresh(api, tokens["refreshToken"]), "refresh-token-invalid")


async def test_an_expired_or_forged_access_token_is_refused(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    from backend.core.security import TokenCodec

    principal = Principal(1, Account.create().address, frozenset({Role.ADMIN}), "s")
    codec = TokenCodec(settings.jwt_secret.get_secret_value(), settings.access_token_seconds)
    expired = codec.issue(principal, now=time.time() - 2 * settings.access_token_seconds)
    forged = TokenCodec("another-secret-" + "y" * 32, 600).issue(principal)
    for token in (expired, forged, "not-a-jwt"):
        r = await api.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        refused(r, "unauthorized")
