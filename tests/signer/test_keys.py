"""Key backends: local keys sign like eth-account; KMS DER signatures become Ethereum ones."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from coincurve import PrivateKey
from eth_account import Account
from eth_account.messages import encode_typed_data

from backend.chain.typed_data import Domain, DomainHasher, full_message
from signer.keys import (
    SECP256K1_HALF_N,
    SECP256K1_N,
    AwsKmsKey,
    KeyLoadError,
    LocalKey,
    decode_der_signature,
    der_to_ethereum_signature,
    public_key_from_kms,
)
from tests.signer.conftest import CONTRACT, DEV_SIGNER_KEY, registration

SPKI_PREFIX = bytes.fromhex("3056301006072a8648ce3d020106052b8104000a034200")


def der_int(n: int) -> bytes:
    body = n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")
    if body[0] & 0x80:
        body = b"\x00" + body
    return b"\x02" + bytes([len(body)]) + body


def der_sig(r: int, s: int) -> bytes:
    inner = der_int(r) + der_int(s)
    return b"\x30" + bytes([len(inner)]) + inner


def test_local_key_signs_like_eth_account() -> None:
    key = LocalKey.from_hex(DEV_SIGNER_KEY)
    domain = Domain(31337, CONTRACT)
    msg = registration()
    digest = DomainHasher(domain).digest("Registration", msg)
    expected = Account.sign_typed_data(
        DEV_SIGNER_KEY, full_message=full_message(domain, "Registration", msg)
    )
    assert key.sign_digest(digest) == bytes(expected.signature)
    assert key.address == Account.from_key(DEV_SIGNER_KEY).address
    signable = encode_typed_data(full_message=full_message(domain, "Registration", msg))
    assert Account.recover_message(signable, signature=key.sign_digest(digest)) == key.address


def test_local_key_repr_hides_the_secret() -> None:
    key = LocalKey.from_hex(DEV_SIGNER_KEY)
    assert DEV_SIGNER_KEY[2:] not in repr(key)
    assert key.address in repr(key)


def test_keystore_round_trip(tmp_path: Path) -> None:
    acct = Account.create()
    path = tmp_path / "key.json"
    path.write_text(
        json.dumps(Account.encrypt(acct.key, "correct horse", kdf="pbkdf2", iterations=1000))
    )
    path.chmod(0o600)
    assert LocalKey.from_keystore(path, "correct horse").address == acct.address
    with pytest.raises(KeyLoadError):
        LocalKey.from_keystore(path, "wrong")


@pytest.mark.parametrize("seed", range(12))
def test_kms_der_to_ethereum_signature_low_and_high_s(seed: int) -> None:
    """DER from a KMS may carry either s; the result is low-s with the right recovery id and
    equals libsecp256k1's own recoverable signature."""
    secret = PrivateKey()
    digest = os.urandom(32)
    reference = secret.sign_recoverable(digest, hasher=None)  # low s, recid
    r = int.from_bytes(reference[:32], "big")
    s = int.from_bytes(reference[32:64], "big")
    assert s <= SECP256K1_HALF_N
    expected = reference[:64] + bytes([27 + reference[64]])
    for der in (der_sig(r, s), der_sig(r, SECP256K1_N - s)):  # low-s and its high-s twin
        assert der_to_ethereum_signature(der, digest, secret.public_key) == expected


def test_coincurve_der_signatures_convert() -> None:
    secret = PrivateKey()
    digest = os.urandom(32)
    der = secret.sign(digest, hasher=None)
    sig = der_to_ethereum_signature(der, digest, secret.public_key)
    rec = secret.sign_recoverable(digest, hasher=None)
    assert sig == rec[:64] + bytes([27 + rec[64]])


def test_aws_kms_key_with_spki_public_key() -> None:
    secret = PrivateKey()
    spki = SPKI_PREFIX + secret.public_key.format(compressed=False)
    calls: list[bytes] = []

    def sign_der(digest: bytes) -> bytes:
        calls.append(digest)
        r, s = decode_der_signature(secret.sign(digest, hasher=None))
        return der_sig(r, SECP256K1_N - s)  # what a KMS may return: high s

    kms = AwsKmsKey(sign_der, spki)
    local = LocalKey(secret.secret)
    assert kms.address == local.address
    assert kms.blocking
    digest = os.urandom(32)
    assert kms.sign_digest(digest) == local.sign_digest(digest)
    assert calls == [digest]


def test_kms_signature_from_another_key_is_rejected() -> None:
    digest = os.urandom(32)
    other = PrivateKey().sign(digest, hasher=None)
    with pytest.raises(ValueError, match="recover"):
        der_to_ethereum_signature(other, digest, PrivateKey().public_key)


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x31\x06\x02\x01\x01\x02\x01\x01",  # not a SEQUENCE
        b"\x30\x07\x02\x01\x01\x02\x01\x01",  # length mismatch
        b"\x30\x06\x02\x01\x01\x02\x01\x01\x00",  # trailing byte
        b"\x30\x06\x02\x01\x81\x02\x01\x01",  # negative r
        b"\x30\x07\x02\x02\x00\x01\x02\x01\x01",  # non-minimal r
        b"\x30\x06\x02\x01\x00\x02\x01\x01",  # r = 0
        der_sig(1, SECP256K1_N),  # s out of range
    ],
)
def test_malformed_der_is_rejected(der: bytes) -> None:
    with pytest.raises(ValueError):
        decode_der_signature(der)


def test_public_key_forms() -> None:
    secret = PrivateKey()
    pub = secret.public_key
    for form in (
        SPKI_PREFIX + pub.format(compressed=False),
        pub.format(compressed=False),
        pub.format(compressed=True),
    ):
        assert public_key_from_kms(form).format() == pub.format()
