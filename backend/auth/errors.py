"""Sign-in errors. All are 401: the caller is not (or no longer) signed in."""

from backend.core.security import Unauthorized


class NonceInvalid(Unauthorized):
    type = "nonce-invalid"
    title = "Unknown or already used sign-in nonce"


class NonceExpired(Unauthorized):
    type = "nonce-expired"
    title = "The sign-in nonce has expired"


class SignInRefused(Unauthorized):
    """The message or its signature does not hold; `reason` says which check failed."""

    type = "sign-in-refused"
    title = "The sign-in message or signature is not valid"


class RefreshInvalid(Unauthorized):
    type = "refresh-token-invalid"
    title = "Unknown, expired or revoked refresh token"


class RefreshRotated(Unauthorized):
    type = "refresh-token-rotated"
    title = "This refresh token was just rotated: use the newest one"


class RefreshReused(Unauthorized):
    type = "refresh-token-reused"
    title = "A rotated refresh token was presented again: the session is revoked"
