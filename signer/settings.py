"""The signer's own configuration (environment prefix `AUTOPOOL_SIGNER_`).

The policy lives here, in the signer's process, not in the backend: a compromised backend can
ask for anything, but it cannot widen what the signer agrees to sign.

Secrets are `SecretStr` (never in a repr, a log line or a traceback). A secret read from a file
(keystore, its password, the bearer token) is refused when the file is readable or writable by
anyone but its owner.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backend.chain.typed_data import PRIMARY_TYPES, TypedDataError, parse_address

MIN_TOKEN_LENGTH = 32
WEI_PER_BNB = 10**18
# Chain ids of local development chains (Anvil/Hardhat 31337, Ganache 1337): the only ones on
# which a raw private key from the environment is accepted.
DEVNET_CHAIN_IDS = frozenset({31337, 1337})
DEFAULT_STATE_DIR = Path("/var/lib/autopool-signer")
AUDIT_LOG_NAME = "audit.jsonl"


class SecretFileError(ValueError):
    """A secret file is missing, unreadable, or readable/writable by others."""


def read_secret_file(path: Path, what: str) -> str:
    """The text of a file holding a secret, refused when its mode lets anyone but its owner
    read or write it (`chmod 600`)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SecretFileError(f"{what} {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise SecretFileError(f"{what} {path} is not a regular file")
    loose = stat.S_IMODE(info.st_mode) & 0o077
    if loose:
        raise SecretFileError(
            f"{what} {path} has mode {stat.S_IMODE(info.st_mode):o}: group or others may read "
            f"or write it; run `chmod 600 {path}`"
        )
    return path.read_text()


class SignerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUTOPOOL_SIGNER_", env_file=".env", extra="ignore", frozen=True
    )

    # --- key ------------------------------------------------------------------------------
    key_backend: Literal["keystore", "raw", "kms"] = "keystore"
    keystore_path: Path | None = None
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    raw_key: SecretStr | None = None  # local devnets only; the service warns loudly
    kms_factory: str | None = None  # "package.module:callable" returning a KeyBackend

    # --- caller authentication ------------------------------------------------------------
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None

    # --- domain ---------------------------------------------------------------------------
    chain_id: int = Field(gt=0)
    contract_address: str

    # If set, the signer checks at start that the chain id and the contract's DOMAIN_SEPARATOR()
    # match its configuration (and warns when the contract's signer() is another address).
    rpc_url: str | None = None

    # --- ledger (read-only role) and the signer's own state (schema `signer`) -------------
    # asyncpg DSN of the `autopool_signer` role; it may carry a password, hence SecretStr.
    database_url: SecretStr = SecretStr("postgresql://autopool_signer@127.0.0.1:5432/autopool")
    database_pool_size: int = Field(default=4, ge=1, le=64)
    # A ledger check that has no answer within this time is refused (fail closed).
    database_timeout_ms: int = Field(default=1000, gt=0)
    # A reward signed out in a batch may go into another batch only once the first batch's
    # deadline is this far in the past (block time may lag the signer's clock).
    batch_reuse_grace_seconds: int = Field(default=300, ge=0)

    # --- policy ---------------------------------------------------------------------------
    allowed_types: Annotated[tuple[str, ...], NoDecode] = PRIMARY_TYPES
    max_deadline_window_seconds: int = Field(default=3600, gt=0)
    max_batch_total_wei: int = Field(default=200 * WEI_PER_BNB, ge=0)
    max_batch_recipients: int = Field(default=200, gt=0)
    rolling_24h_cap_wei: int = Field(default=1_000 * WEI_PER_BNB, ge=0)
    # `limits` notation, several separated by ";" e.g. "50/second;1000/minute"
    rate_limit_registration: str = "100/second"
    rate_limit_retopup: str = "100/second"
    rate_limit_payout_batch: str = "10/minute"

    # --- audit ----------------------------------------------------------------------------
    # Absolute paths only: a relative one would depend on the directory the signer was started
    # from (and a start from elsewhere would begin an empty log).
    state_dir: Path = DEFAULT_STATE_DIR
    audit_log_path: Path | None = None  # default: <state_dir>/audit.jsonl
    # A reply always waits until its record is written (survives a crash of the process).
    # interval: fdatasync every audit_fsync_interval_ms in the background (a host crash loses at
    # most that window); always: a reply also waits for its fdatasync (group commit);
    # never: leave it to the OS. See docs/signer.md "Audit log".
    audit_fsync: Literal["always", "interval", "never"] = "interval"
    audit_fsync_interval_ms: int = Field(default=20, gt=0)

    # --- serving --------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8701, ge=0, le=65535)
    socket_path: Path | None = None  # a Unix socket instead of TCP
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("allowed_types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("allowed_types")
    @classmethod
    def _known_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(PRIMARY_TYPES))
        if unknown:
            raise ValueError(f"unknown payload types {unknown}; known: {list(PRIMARY_TYPES)}")
        return value

    @field_validator("contract_address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            parse_address(value, "contract_address")
        except TypedDataError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("state_dir", "audit_log_path")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError(f"{value} is relative: give an absolute path")
        return value

    @field_validator("database_url")
    @classmethod
    def _asyncpg_dsn(cls, value: SecretStr) -> SecretStr:
        dsn = value.get_secret_value()
        for prefix in ("postgresql+asyncpg://", "postgres://"):
            if dsn.startswith(prefix):
                dsn = "postgresql://" + dsn.removeprefix(prefix)
        if not dsn.startswith("postgresql://"):
            raise ValueError("database_url must be a postgresql:// URL")
        return SecretStr(dsn)

    @model_validator(mode="after")
    def _key_source(self) -> SignerSettings:
        if self.key_backend == "keystore":
            if self.keystore_path is None:
                raise ValueError("key_backend=keystore needs AUTOPOOL_SIGNER_KEYSTORE_PATH")
            if self.keystore_password is None and self.keystore_password_file is None:
                raise ValueError(
                    "key_backend=keystore needs AUTOPOOL_SIGNER_KEYSTORE_PASSWORD_FILE "
                    "or AUTOPOOL_SIGNER_KEYSTORE_PASSWORD"
                )
        elif self.key_backend == "raw":
            if self.raw_key is None:
                raise ValueError("key_backend=raw needs AUTOPOOL_SIGNER_RAW_KEY")
            if self.chain_id not in DEVNET_CHAIN_IDS:
                raise ValueError(
                    f"key_backend=raw (a private key in the environment) is for local devnets "
                    f"only (chain ids {sorted(DEVNET_CHAIN_IDS)}); refused on chain "
                    f"{self.chain_id}: use an encrypted keystore or a KMS"
                )
        elif self.kms_factory is None:
            raise ValueError("key_backend=kms needs AUTOPOOL_SIGNER_KMS_FACTORY (module:callable)")
        if self.auth_token is None and self.auth_token_file is None:
            raise ValueError("set AUTOPOOL_SIGNER_AUTH_TOKEN_FILE or AUTOPOOL_SIGNER_AUTH_TOKEN")
        return self

    @property
    def audit_log(self) -> Path:
        """Where the audit log is: AUDIT_LOG_PATH, or `audit.jsonl` in the state directory."""
        return self.audit_log_path or self.state_dir / AUDIT_LOG_NAME

    @property
    def deployment(self) -> str:
        """What the signer's persistent state is keyed by: the contract it signs for."""
        return f"{self.chain_id}:{self.contract_address.lower()}"

    def dsn(self) -> str:
        return self.database_url.get_secret_value()

    def token(self) -> str:
        """The shared bearer token (from the file when both are set)."""
        if self.auth_token_file is not None:
            token = read_secret_file(self.auth_token_file, "auth token file").strip()
        else:
            assert self.auth_token is not None
            token = self.auth_token.get_secret_value()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the auth token must be at least {MIN_TOKEN_LENGTH} characters")
        return token

    def keystore_secret(self) -> str:
        if self.keystore_password_file is not None:
            return read_secret_file(self.keystore_password_file, "keystore password file").rstrip(
                "\r\n"
            )
        assert self.keystore_password is not None
        return self.keystore_password.get_secret_value()

    def rate_limits(self) -> dict[str, str]:
        return {
            "Registration": self.rate_limit_registration,
            "Retopup": self.rate_limit_retopup,
            "PayoutBatch": self.rate_limit_payout_batch,
        }
