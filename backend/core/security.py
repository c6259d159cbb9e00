"""Who is calling: signed-in wallets, their roles, and the short-lived access tokens that
carry them (JWT, HS256). Refresh tokens and sign-in live in backend/auth/."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from backend.core.errors import AppError


class Role(StrEnum):
    PARTICIPANT = "participant"
    """Any signed-in wallet: reads and acts on its own data only."""
    AUDITOR = "auditor"
    """Reads everything, changes nothing."""
    OPERATOR = "operator"
    """Runs payouts and the treasury's day to day (build, sign, submit, retry, replay)."""
    ADMIN = "admin"
    """Everything an operator does, plus freezes, roles, plan versions, manual placement."""


READERS = frozenset({Role.AUDITOR, Role.OPERATOR, Role.ADMIN})
OPERATORS = frozenset({Role.OPERATOR, Role.ADMIN})


class Unauthorized(AppError):
    status = 401
    type = "unauthorized"
    title = "Sign in first"


class Forbidden(AppError):
    status = 403
    type = "forbidden"
    title = "Not allowed for this wallet"


@dataclass(frozen=True)
class Principal:
    user_id: int
    wallet: str
    roles: frozenset[Role]
    session: str  # the refresh-token family this access token was issued under

    def can(self, roles: frozenset[Role]) -> bool:
        return bool(self.roles & roles)

    def may_read(self, user_id: int) -> bool:
        """A participant reads its own data; auditors, operators and admins read anyone's."""
        return user_id == self.user_id or self.can(READERS)


class TokenCodec:
    """Issues and checks access tokens. A missing secret gets a random one per process."""

    algorithm = "HS256"
    read_cache_size = 4096

    def __init__(self, secret: str, lifetime_seconds: int) -> None:
        self._secret = secret or secrets.token_urlsafe(32)
        self.lifetime = lifetime_seconds
        # token -> (who, expiry): what `read` decoded, kept until the token expires.
        self._read: dict[str, tuple[Principal, int]] = {}

    def issue(self, principal: Principal, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "sub": principal.wallet,
            "uid": principal.user_id,
            "roles": sorted(principal.roles),
            "sid": principal.session,
            "iat": issued,
            "exp": issued + self.lifetime,
            "typ": "access",
        }
        return jwt.encode(claims, self._secret, algorithm=self.algorithm)

    def read(self, token: str) -> Principal:
        """Who `token` signs in (401 when it is not a valid, unexpired access token).

        A token that decoded is remembered until it expires: its claims are signed, so they
        cannot change, and its expiry is checked on every read, so it is refused at the same
        second as a decoded one would be. Access tokens are never revoked, they lapse (sign-out
        and role changes revoke refresh tokens): nothing else can make a remembered token
        invalid. Only valid tokens are remembered, at most `read_cache_size` (oldest first
        out)."""
        remembered = self._read.get(token)
        if remembered is not None:
            principal, expires = remembered
            if expires > time.time():  # PyJWT's rule: expired once exp <= now
                return principal
            del self._read[token]
            raise Unauthorized("the access token has expired: refresh it")
        principal, expires = self._decode(token)
        if len(self._read) >= self.read_cache_size:
            del self._read[next(iter(self._read))]
        self._read[token] = (principal, expires)
        return principal

    def _decode(self, token: str) -> tuple[Principal, int]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self.algorithm],
                options={"require": ["sub", "uid", "exp", "iat", "sid"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("the access token has expired: refresh it") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("the access token is not valid") from exc
        if claims.get("typ") != "access":
            raise Unauthorized("not an access token")
        try:
            roles = frozenset(Role(r) for r in claims.get("roles", []))
        except ValueError as exc:
            raise Unauthorized("the access token names an unknown role") from exc
        principal = Principal(int(claims["uid"]), str(claims["sub"]), roles, str(claims["sid"]))
        return principal, int(claims["exp"])


def wallets_of(setting: str) -> set[str]:
    """A comma-separated wallet list, lower-cased for comparison."""
    return {w.strip().lower() for w in setting.split(",") if w.strip()}
