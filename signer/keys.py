"""Key backends: where the signing key lives and how a 32-byte digest becomes a signature.

Every backend returns Ethereum's 65-byte `r || s || v` with low s and v ∈ {27, 28}, which is
what `AutoPool` (OpenZeppelin ECDSA semantics) accepts.

- `LocalKey` holds a secp256k1 key in process memory (from an encrypted JSON keystore, or a raw
  hex key for local development) and signs with libsecp256k1 through coincurve.
- `AwsKmsKey` signs through a cloud KMS that keeps a secp256k1 key (AWS KMS `ECC_SECG_P256K1`,
  `ECDSA_SHA_256` with `MessageType=DIGEST`). KMS answers a DER `ECDSA-Sig-Value` with any s;
  it is converted to (r, s), s is folded to the low half, and the recovery id is found by
  recovering against the KMS key's known public key.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from coincurve import PrivateKey, PublicKey
from eth_account import Account

from backend.chain.typed_data import keccak256, to_checksum_address
from signer.settings import read_secret_file

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2
# DER SubjectPublicKeyInfo header of an uncompressed secp256k1 key (id-ecPublicKey, secp256k1)
_SPKI_SECP256K1_PREFIX = bytes.fromhex("3056301006072a8648ce3d020106052b8104000a034200")
_V = (b"\x1b", b"\x1c")


class KeyLoadError(Exception):
    """A key cannot be loaded or used."""


@runtime_checkable
class KeyBackend(Protocol):
    """What the signing service needs from a key."""

    @property
    def address(self) -> str:
        """Checksum address of the key (what the contract's `signer()` must return)."""
        ...

    @property
    def blocking(self) -> bool:
        """True when `sign_digest` does I/O (a remote KMS): the service then calls it off the
        event loop."""
        ...

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign a 32-byte digest: 65 bytes r || s || v, low s, v ∈ {27, 28}."""
        ...


def address_of(public_key: PublicKey) -> str:
    return to_checksum_address(keccak256(public_key.format(compressed=False)[1:])[12:])


class LocalKey:
    """A key in this process's memory; signs with libsecp256k1 (RFC 6979, low s)."""

    __slots__ = ("_address", "_key")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32 or not 0 < int.from_bytes(secret, "big") < SECP256K1_N:
            raise KeyLoadError("a secp256k1 private key is 32 bytes in [1, n-1]")
        self._key = PrivateKey(secret)
        self._address = address_of(self._key.public_key)

    @classmethod
    def from_hex(cls, hex_key: str) -> LocalKey:
        try:
            return cls(bytes.fromhex(hex_key.removeprefix("0x")))
        except ValueError as exc:
            raise KeyLoadError("the raw key is not 32 bytes of hex") from exc

    @classmethod
    def from_keystore(cls, path: Path, password: str) -> LocalKey:
        """Decrypt a Web3 Secret Storage (v3 JSON keystore) file (refused when group or others
        may read or write it)."""
        try:
            keyfile = json.loads(read_secret_file(path, "keystore"))
            secret = Account.decrypt(keyfile, password)
        except (OSError, ValueError, KeyError) as exc:
            raise KeyLoadError(f"cannot decrypt keystore {path}: {exc}") from exc
        return cls(bytes(secret))

    @property
    def address(self) -> str:
        return self._address

    @property
    def blocking(self) -> bool:
        return False

    def sign_digest(self, digest: bytes) -> bytes:
        sig = self._key.sign_recoverable(digest, hasher=None)
        return sig[:64] + _V[sig[64]]

    def __repr__(self) -> str:
        return f"LocalKey({self._address})"


# --- KMS --------------------------------------------------------------------------------------


def _der_length(der: bytes, i: int) -> tuple[int, int]:
    if i >= len(der):
        raise ValueError("truncated DER")
    first = der[i]
    if first < 0x80:
        return first, i + 1
    n = first & 0x7F
    if n == 0 or n > 2 or i + 1 + n > len(der):
        raise ValueError("bad DER length")
    length = int.from_bytes(der[i + 1 : i + 1 + n], "big")
    if length < 0x80:
        raise ValueError("non-minimal DER length")
    return length, i + 1 + n


def _der_integer(der: bytes, i: int) -> tuple[int, int]:
    if i >= len(der) or der[i] != 0x02:
        raise ValueError("expected a DER INTEGER")
    length, i = _der_length(der, i + 1)
    body = der[i : i + length]
    if length == 0 or len(body) != length:
        raise ValueError("truncated DER INTEGER")
    if body[0] & 0x80:
        raise ValueError("negative DER INTEGER")
    if length > 1 and body[0] == 0 and not body[1] & 0x80:
        raise ValueError("non-minimal DER INTEGER")
    return int.from_bytes(body, "big"), i + length


def decode_der_signature(der: bytes) -> tuple[int, int]:
    """(r, s) from a DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (strict)."""
    if len(der) < 8 or der[0] != 0x30:
        raise ValueError("expected a DER SEQUENCE")
    length, i = _der_length(der, 1)
    if i + length != len(der):
        raise ValueError("DER SEQUENCE length mismatch")
    r, i = _der_integer(der, i)
    s, i = _der_integer(der, i)
    if i != len(der):
        raise ValueError("trailing bytes after DER signature")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise ValueError("r or s out of range")
    return r, s


def public_key_from_kms(public_key: bytes) -> PublicKey:
    """A secp256k1 public key from KMS GetPublicKey's DER SubjectPublicKeyInfo, or from SEC1
    bytes (65 uncompressed or 33 compressed)."""
    if len(public_key) == 88 and public_key.startswith(_SPKI_SECP256K1_PREFIX):
        public_key = public_key[len(_SPKI_SECP256K1_PREFIX) :]
    return PublicKey(public_key)


def der_to_ethereum_signature(der: bytes, digest: bytes, public_key: PublicKey) -> bytes:
    """DER signature → 65-byte r || s || v: s folded to the low half (s' = n − s, which flips
    the recovery id; recovering against the known key finds the right one either way)."""
    r, s = decode_der_signature(der)
    if s > SECP256K1_HALF_N:
        s = SECP256K1_N - s
    rs = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    expected = public_key.format(compressed=False)
    for recovery_id in (0, 1):
        try:
            candidate = PublicKey.from_signature_and_message(
                rs + bytes([recovery_id]), digest, hasher=None
            )
        except ValueError:
            continue
        if candidate.format(compressed=False) == expected:
            return rs + _V[recovery_id]
    raise ValueError("the signature does not recover to the KMS public key")


class AwsKmsKey:
    """A secp256k1 key held by AWS KMS (or any KMS answering DER ECDSA signatures).

    `sign_der(digest)` performs the remote call, e.g. with boto3:
    `kms.sign(KeyId=..., Message=digest, MessageType="DIGEST",
    SigningAlgorithm="ECDSA_SHA_256")["Signature"]`; `public_key` is `GetPublicKey`'s
    `PublicKey` (DER SubjectPublicKeyInfo). No cloud SDK is imported here.
    """

    def __init__(self, sign_der: Callable[[bytes], bytes], public_key: bytes) -> None:
        self._sign_der = sign_der
        self._public_key = public_key_from_kms(public_key)
        self._address = address_of(self._public_key)

    @property
    def address(self) -> str:
        return self._address

    @property
    def blocking(self) -> bool:
        return True

    def sign_digest(self, digest: bytes) -> bytes:
        return der_to_ethereum_signature(self._sign_der(digest), digest, self._public_key)

    def __repr__(self) -> str:
        return f"AwsKmsKey({self._address})"


def load_kms_factory(spec: str) -> KeyBackend:
    """Call the `package.module:callable` named by `spec`; it returns a KeyBackend (typically an
    `AwsKmsKey` wired to boto3)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise KeyLoadError(f"kms_factory must be 'module:callable', got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attr)
    backend = factory()
    if not isinstance(backend, KeyBackend):
        raise KeyLoadError(f"{spec} did not return a KeyBackend")
    return backend
