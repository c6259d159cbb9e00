"""The signer's own configuration (environment prefix `AUTOPOOL_SIGNER_`).

The policy lives here, in the signer's process, not in the backend: a compromised backend can
ask for anything, but it cannot widen what the signer agrees to sign.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backend.chain.typed_data import PRIMARY_TYPES, TypedDataError, parse_address

MIN_TOKEN_LENGTH = 32
WEI_PER_BNB = 10**18


class SignerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AUTOPOOL_SIGNER_", env_file=".env", extra="ignore", frozen=True
    )

    # --- key ------------------------------------------------------------------------------
    key_backend: Literal["keystore", "raw", "kms"] = "keystore"
    keystore_path: Path | None = None
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    raw_key: SecretStr | None = None  # development only; the service warns loudly
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

    # --- policy ---------------------------------------------------------------------------
    allowed_types: Annotated[tuple[str, ...], NoDecode] = PRIMARY_TYPES
    max_deadline_window_seconds: int = Field(default=3600, gt=0)
    max_batch_total_wei: int = Field(default=1_000 * WEI_PER_BNB, ge=0)
    max_batch_recipients: int = Field(default=200, gt=0)
    rolling_24h_cap_wei: int = Field(default=10_000 * WEI_PER_BNB, ge=0)
    # `limits` notation, several separated by ";" e.g. "50/second;1000/minute"
    rate_limit_registration: str = "100/second"
    rate_limit_retopup: str = "100/second"
    rate_limit_payout_batch: str = "10/minute"

    # --- audit ----------------------------------------------------------------------------
    audit_log_path: Path = Path("signer-audit.jsonl")
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
            if self.chain_id == 56:
                raise ValueError("key_backend=raw is for local development; refused on chain 56")
        elif self.kms_factory is None:
            raise ValueError("key_backend=kms needs AUTOPOOL_SIGNER_KMS_FACTORY (module:callable)")
        if self.auth_token is None and self.auth_token_file is None:
            raise ValueError("set AUTOPOOL_SIGNER_AUTH_TOKEN_FILE or AUTOPOOL_SIGNER_AUTH_TOKEN")
        return self

    def token(self) -> str:
        """The shared bearer token (from the file when both are set)."""
        if self.auth_token_file is not None:
            token = self.auth_token_file.read_text().strip()
        else:
            assert self.auth_token is not None
            token = self.auth_token.get_secret_value()
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the auth token must be at least {MIN_TOKEN_LENGTH} characters")
        return token

    def keystore_secret(self) -> str:
        if self.keystore_password_file is not None:
            return self.keystore_password_file.read_text().rstrip("\r\n")
        assert self.keystore_password is not None
        return self.keystore_password.get_secret_value()

    def rate_limits(self) -> dict[str, str]:
        return {
            "Registration": self.rate_limit_registration,
            "Retopup": self.rate_limit_retopup,
            "PayoutBatch": self.rate_limit_payout_batch,
        }
