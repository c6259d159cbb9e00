"""Sign-in routes: nonce, wallet signature, refresh, logout."""

from __future__ import annotations

from fastapi import APIRouter, Response

from backend.auth import service
from backend.auth.schemas import NonceOut, RefreshIn, SignedInUser, TokensOut, WalletSignIn
from backend.core.deps import ResourcesDep, Session
from backend.core.types import Wallet

router = APIRouter(prefix="/auth", tags=["auth"])


def _out(tokens: service.SessionTokens) -> TokensOut:
    return TokensOut(
        accessToken=tokens.access_token,
        refreshToken=tokens.refresh_token,
        expiresIn=tokens.expires_in,
        user=SignedInUser(
            id=tokens.user.id,
            wallet=tokens.user.wallet,
            status=tokens.user.status,
            roles=sorted(tokens.roles),
        ),
    )


@router.get("/nonce", response_model=NonceOut)
async def nonce(wallet: Wallet, session: Session, res: ResourcesDep) -> NonceOut:
    """A single-use nonce and the exact Sign-In with Ethereum message for `wallet` to sign."""
    issued = await service.issue_nonce(session, res.settings, wallet)
    return NonceOut(nonce=issued.nonce, message=issued.message, expiresAt=issued.expires_at)


@router.post("/wallet", response_model=TokensOut)
async def wallet_sign_in(body: WalletSignIn, session: Session, res: ResourcesDep) -> TokensOut:
    """Exchange a signed sign-in message for an access token and a refresh token. The nonce
    is consumed whatever the outcome."""
    tokens = await service.sign_in(
        session,
        res,
        wallet=body.wallet,
        signature=body.signature,
        nonce=body.nonce,
        message=body.message,
    )
    return _out(tokens)


@router.post("/refresh", response_model=TokensOut)
async def refresh(body: RefreshIn, session: Session, res: ResourcesDep) -> TokensOut:
    """Rotate the refresh token. A rotated token presented again revokes the whole session."""
    return _out(await service.refresh(session, res, body.refreshToken))


@router.post("/logout", status_code=204)
async def logout(body: RefreshIn, session: Session) -> Response:
    """End the session the refresh token belongs to."""
    await service.logout(session, body.refreshToken)
    return Response(status_code=204)
