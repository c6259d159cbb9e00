"""Access tokens: a token that decoded is remembered until it expires, and refused from the
same second a fresh decode (PyJWT) refuses it; invalid tokens are never remembered."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import jwt.api_jwt
import pytest

from backend.core import security
from backend.core.security import Principal, Role, TokenCodec, Unauthorized

SECRET = "a-test-secret-of-at-least-32-bytes!"
ALICE = Principal(7, "0x" + "11" * 20, frozenset({Role.PARTICIPANT}), "family")


class _Clock:
    """Stands in for the clock both the codec and PyJWT read."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def datetime_now(self, tz: object = None) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock(time.time())
    monkeypatch.setattr(security.time, "time", clock.time)

    class _PatchedDatetime(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return clock.datetime_now(tz)

    monkeypatch.setattr(jwt.api_jwt, "datetime", _PatchedDatetime)
    return clock


def _accepted(codec: TokenCodec, token: str) -> bool:
    try:
        return codec.read(token) == ALICE
    except Unauthorized:
        return False


def test_a_remembered_token_is_refused_from_the_second_a_decode_refuses_it(
    clock: _Clock,
) -> None:
    codec = TokenCodec(SECRET, 60)
    issued = int(clock.now)
    token = codec.issue(ALICE, now=issued)
    assert _accepted(codec, token)  # decoded, now remembered
    for offset in (1, 30, 59, 59.999, 60, 61, 600):
        clock.now = issued + offset
        fresh = TokenCodec(SECRET, 60)  # nothing remembered: PyJWT decides
        assert _accepted(codec, token) == _accepted(fresh, token), offset
    assert not _accepted(codec, token)


def test_invalid_tokens_are_refused_every_time_and_not_remembered() -> None:
    codec = TokenCodec(SECRET, 60)
    forged = TokenCodec("another-secret-of-at-least-32-bytes", 60).issue(ALICE)
    for token in (forged, "not-a-jwt", forged):
        with pytest.raises(Unauthorized):
            codec.read(token)
    assert codec._read == {}


def test_the_memory_is_bounded_oldest_out() -> None:
    codec = TokenCodec(SECRET, 600)
    codec.read_cache_size = 3
    tokens = [
        codec.issue(Principal(i, ALICE.wallet, ALICE.roles, "f"), now=time.time() - i)
        for i in range(5)
    ]
    for token in tokens:
        assert codec.read(token).wallet == ALICE.wallet
    assert list(codec._read) == tokens[2:]
