"""Sign-In with Ethereum (EIP-4361) and the session it opens.

A nonce is issued with the exact message to sign (single use, short expiry) and consumed
atomically — deleted and committed — before anything is verified, so a failed attempt burns
it too. The checks the `siwe` library leaves to its caller are made here: domain, URI, chain
id, issued-at near server time, expiry, the nonce, and the message's address being the
wallet's. A smart-contract wallet's signature is checked with EIP-1271 over the async chain
client, off the event loop's critical path.

A session is a short-lived access token (JWT) and an opaque refresh token stored hashed.
Refreshing rotates the refresh token; presenting a rotated one again (after a few seconds'
grace for a client's honest double request) revokes its whole family. No rotation extends a
session past its absolute lifetime.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address
from siwe import SiweMessage
from sqlalchemy.ext.asyncio import AsyncSession

from backend.auth import repository as repo
from backend.auth.errors import (
    NonceExpired,
    NonceInvalid,
    RefreshInvalid,
    RefreshReused,
    RefreshRotated,
    SignInRefused,
)
from backend.core.db import commit
from backend.core.security import Principal, Role, wallets_of
from backend.core.settings import Settings
from backend.core.wiring import Resources
from backend.models import RefreshToken, User, UserRole
from backend.users import service as users

SIWE_VERSION = "1"
EIP1271_MAGIC = bytes.fromhex("1626ba7e")
_IS_VALID_SIGNATURE_ABI: list[dict[str, Any]] = [
    {
        "name": "isValidSignature",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "hash", "type": "bytes32"}, {"name": "signature", "type": "bytes"}],
        "outputs": [{"name": "magic", "type": "bytes4"}],
    }
]


@dataclass(frozen=True)
class IssuedNonce:
    nonce: str
    message: str
    expires_at: datetime


@dataclass(frozen=True)
class SessionTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    roles: frozenset[Role]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_nonce(session: AsyncSession, settings: Settings, wallet: str) -> IssuedNonce:
    """A fresh single-use nonce (128 bits) and the exact EIP-4361 message to sign with it."""
    now = datetime.now(UTC).replace(microsecond=0)
    expires = now + timedelta(seconds=settings.siwe_nonce_ttl_seconds)
    nonce = secrets.token_hex(16)
    message = SiweMessage(
        domain=settings.siwe_domain,
        address=wallet,
        statement=settings.siwe_statement,
        uri=settings.siwe_uri,
        version=SIWE_VERSION,
        chain_id=settings.chain_id,
        nonce=nonce,
        issued_at=_iso(now),
        expiration_time=_iso(expires),
    ).prepare_message()
    await repo.purge_expired_nonces(session, now)
    await repo.put_nonce(session, nonce, wallet, message, expires)
    return IssuedNonce(nonce, message, expires)


def _check_message(text: str, settings: Settings, wallet: str, nonce: str, now: datetime) -> None:
    try:
        message = SiweMessage.from_message(text)
    except Exception as exc:
        raise SignInRefused("the message is not an EIP-4361 sign-in message") from exc
    skew = timedelta(seconds=settings.siwe_clock_skew_seconds)
    checks = (
        (message.nonce == nonce, "the message carries another nonce"),
        (to_checksum_address(message.address) == wallet, "the message is for another wallet"),
        (message.domain == settings.siwe_domain, "the message is for another domain"),
        (message.uri == settings.siwe_uri, "the message is for another URI"),
        (int(message.chain_id) == settings.chain_id, "the message is for another chain"),
        (message.version == SIWE_VERSION, "unsupported message version"),
    )
    for ok, reason in checks:
        if not ok:
            raise SignInRefused(reason, reason=reason)
    issued = message.issued_at._datetime
    ttl = timedelta(seconds=settings.siwe_nonce_ttl_seconds)
    if not now - ttl - skew <= issued <= now + skew:
        raise SignInRefused("issued-at is too far from server time", reason="issued-at")
    if message.expiration_time is not None and message.expiration_time._datetime <= now:
        raise SignInRefused("the message has expired", reason="expired")
    if message.not_before is not None and message.not_before._datetime > now + skew:
        raise SignInRefused("the message is not valid yet", reason="not-before")


async def _signature_holds(res: Resources, wallet: str, text: str, signature: str) -> bool:
    """An externally owned account's signature (recovered), or else a contract wallet's
    (EIP-1271 `isValidSignature` of the EIP-191 hash, asked over the async client)."""
    with contextlib.suppress(Exception):  # not 65 well-formed bytes: maybe a contract's format
        if Account.recover_message(encode_defunct(text=text), signature=signature) == wallet:
            return True
    if not await res.w3.eth.get_code(to_checksum_address(wallet)):
        return False
    data = text.encode()
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data)
    contract = res.w3.eth.contract(address=to_checksum_address(wallet), abi=_IS_VALID_SIGNATURE_ABI)
    try:
        magic = await contract.functions.isValidSignature(
            digest, bytes.fromhex(signature.removeprefix("0x"))
        ).call()
    except Exception:
        return False
    return bytes(magic) == EIP1271_MAGIC


async def roles_of(session: AsyncSession, settings: Settings, wallet: str) -> frozenset[Role]:
    """Participant for everyone; staff roles from configuration and from admins' grants."""
    roles = {Role.PARTICIPANT}
    key = wallet.lower()
    for role, setting in (
        (Role.ADMIN, settings.admin_wallets),
        (Role.OPERATOR, settings.operator_wallets),
        (Role.AUDITOR, settings.auditor_wallets),
    ):
        if key in wallets_of(setting):
            roles.add(role)
    roles.update(Role(r) for r in await repo.active_grants(session, wallet))
    return frozenset(roles)


async def _open_session(
    session: AsyncSession, res: Resources, user: User, roles: frozenset[Role], now: datetime
) -> SessionTokens:
    settings = res.settings
    family = secrets.token_hex(16)
    refresh = secrets.token_urlsafe(32)
    session_end = now + timedelta(seconds=settings.session_max_seconds)
    await repo.add_refresh(
        session,
        RefreshToken(
            user_id=user.id,
            token_hash=_hash(refresh),
            family=family,
            expires_at=min(now + timedelta(seconds=settings.refresh_token_seconds), session_end),
            session_expires_at=session_end,
        ),
    )
    access = res.tokens.issue(Principal(user.id, user.wallet, roles, family))
    return SessionTokens(access, refresh, res.tokens.lifetime, user, roles)


async def sign_in(
    session: AsyncSession,
    res: Resources,
    *,
    wallet: str,
    signature: str,
    nonce: str,
    message: str | None = None,
) -> SessionTokens:
    """Verify a signed sign-in message and open a session for `wallet`."""
    now = datetime.now(UTC)
    stored = await repo.take_nonce(session, nonce)
    await commit(session)  # the nonce is gone for good, whatever the checks below decide
    if stored is None:
        raise NonceInvalid("this nonce is unknown or was used already: ask GET /auth/nonce")
    if stored.expires_at <= now:
        raise NonceExpired("the nonce has expired: ask GET /auth/nonce again")
    if stored.wallet != wallet:
        raise SignInRefused("the nonce was issued to another wallet", reason="wallet")
    text = stored.message if message is None else message
    _check_message(text, res.settings, wallet, nonce, now)
    if not await _signature_holds(res, wallet, text, signature):
        raise SignInRefused("the signature is not the wallet's", reason="signature")
    user = await users.ensure_user(session, wallet, UserRole.USER)
    roles = await roles_of(session, res.settings, wallet)
    return await _open_session(session, res, user, roles, now)


async def refresh(session: AsyncSession, res: Resources, token: str) -> SessionTokens:
    """Rotate `token`: a new refresh token of the same family and a new access token (with
    the wallet's current roles)."""
    now = datetime.now(UTC)
    row = await repo.refresh_by_hash(session, _hash(token))
    if row is None or row.revoked_at is not None:
        raise RefreshInvalid("unknown or revoked refresh token: sign in again")
    if row.rotated_at is not None:
        if now - row.rotated_at <= timedelta(seconds=res.settings.refresh_reuse_grace_seconds):
            raise RefreshRotated("this token was rotated a moment ago: use the newest one")
        await repo.revoke_family(session, row.family, now)
        await commit(session)
        raise RefreshReused(
            "a rotated refresh token came back: every token of the session is revoked"
        )
    session_end = row.session_expires_at or row.expires_at
    if row.expires_at <= now or session_end <= now:
        raise RefreshInvalid("the session has expired: sign in again")
    user = await users.get(session, row.user_id)
    if user is None:
        raise RefreshInvalid("the session's user is gone")
    row.rotated_at = now
    fresh = secrets.token_urlsafe(32)
    await repo.add_refresh(
        session,
        RefreshToken(
            user_id=row.user_id,
            token_hash=_hash(fresh),
            family=row.family,
            expires_at=min(
                now + timedelta(seconds=res.settings.refresh_token_seconds), session_end
            ),
            session_expires_at=session_end,
        ),
    )
    roles = await roles_of(session, res.settings, user.wallet)
    access = res.tokens.issue(Principal(user.id, user.wallet, roles, row.family))
    return SessionTokens(access, fresh, res.tokens.lifetime, user, roles)


async def logout(session: AsyncSession, token: str) -> None:
    """Revoke the session `token` belongs to (every token of its family)."""
    row = await repo.refresh_by_hash(session, _hash(token))
    if row is not None:
        await repo.revoke_family(session, row.family, datetime.now(UTC))


async def grant_role(session: AsyncSession, wallet: str, role: Role, actor: str) -> dict[str, Any]:
    """Grant a staff role (idempotent); returns the before/after for the audit row."""
    if role == Role.PARTICIPANT:
        raise ValueError("every wallet is a participant")
    before = await repo.active_grant(session, wallet, role)
    if before is None:
        await repo.add_grant(session, wallet, role, actor)
    return {"before": before is not None, "after": True}


async def revoke_role(session: AsyncSession, wallet: str, role: Role, actor: str) -> dict[str, Any]:
    """Revoke a granted staff role and end the wallet's sessions (its access tokens lapse
    within their short lifetime, its refresh tokens at once)."""
    grant = await repo.active_grant(session, wallet, role)
    now = datetime.now(UTC)
    if grant is not None:
        grant.revoked_at, grant.revoked_by = now, actor
    user = await users.by_wallet(session, wallet)
    if user is not None:
        await repo.revoke_user_sessions(session, user.id, now)
    return {"before": grant is not None, "after": False}
