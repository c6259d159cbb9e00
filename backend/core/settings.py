"""Settings of the API, the listener and the settlement worker (one class, env prefix AUTOPOOL_).

Secrets are `SecretStr`: they never print in a `repr`, a log line or a traceback.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTOPOOL_", env_file=".env", extra="ignore")

    # May carry a password: a secret (or leave it out of the URL and use PGPASSFILE).
    database_url: SecretStr = SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5432/autopool")
    redis_url: str = "redis://127.0.0.1:6379/0"
    rpc_url: str = "http://127.0.0.1:8545"
    chain_id: int = 31337
    contract_address: str = ""
    # Blocks behind head before an event counts as confirmed (BSC finalizes within a few).
    confirmations: int = 2
    company_wallet: str = ""
    plan_path: str = ""  # empty: the packaged plan v1
    lease_seconds: int = Field(default=600, ge=30, le=86_400)
    batch_deadline_seconds: int = Field(default=900, ge=60, le=86_400)
    max_batch_recipients: int = Field(default=200, ge=1, le=1000)
    # Signer service; the backend never holds the backend-signer key.
    signer_url: str = "http://127.0.0.1:8701"
    signer_token: SecretStr = SecretStr("")
    # The settlement sender only pays gas; it cannot move pool funds without a signed batch.
    settlement_sender_key: SecretStr = SecretStr("")
    # settlement (docs/settlement.md): batch sizing by gas, fee policy, worker schedule.
    # Gas ceiling per batch transaction: below the block's limit and BSC's per-tx cap (2^24).
    settlement_gas_ceiling: int = Field(default=15_000_000, ge=500_000, lt=2**24)
    settlement_batch_base_gas: int = Field(default=100_000, ge=21_000)
    settlement_line_gas: int = Field(default=16_000, ge=1)  # a line to an existing account
    settlement_new_account_gas: int = Field(default=25_000, ge=0)  # more for an empty account
    settlement_hostile_line_gas: int = Field(default=48_700, ge=0)  # a stipend-burning recipient
    # Share of a batch's lines (bps) given room to turn hostile after signing, on top.
    settlement_hostile_reserve_bps: int = Field(default=1_000, ge=0, le=10_000)
    settlement_bump_after_blocks: int = Field(default=3, ge=1)
    settlement_bump_bps: int = Field(default=1_250, ge=1_250, le=100_000)  # >= 12.5%
    settlement_max_gas_price_wei: int = Field(default=100 * 10**9, ge=1)
    settlement_min_gas_price_wei: int = Field(default=0, ge=0)
    settlement_interval_seconds: float = Field(default=5.0, gt=0)
    settlement_max_batches_per_cycle: int = Field(default=5, ge=1, le=100)
    settlement_max_reverts_per_batch: int = Field(default=3, ge=1)
    reconciliation_interval_seconds: float = Field(default=60.0, gt=0)
    # Treasury transfers: M (required approvals) of the N approver wallets (JSON list in env).
    treasury_approvers: list[str] = Field(default_factory=list)
    treasury_required_approvals: int = Field(default=2, ge=1)
    # Live mode polls twice a second, so an event is in the ledger within 1 s of its block
    # becoming final even without a newHeads subscription (bench_listener measures both).
    listener_poll_seconds: float = 0.5
    # When set (ws:// or wss://), the listener also subscribes to `newHeads` and syncs as soon
    # as a block arrives; polling every `listener_poll_seconds` goes on as the fallback.
    listener_ws_url: str = ""
    listener_batch_blocks: int = 2_000
    # A run of at least this many consecutive registrations/retopups in one range is settled
    # in bulk (backend.ledger.bulk: a backfill, or a busy block); a lone event goes event by
    # event (the bulk path's fixed reads cost about what one event's statements do).
    listener_bulk_min_events: int = Field(default=2, ge=1)
    # Which blocks are final: "tag" asks the node (`finalized`: BSC's fast finality, any
    # post-merge chain); "depth" counts `confirmations` below the head (the devnet and tests).
    listener_finality: Literal["depth", "tag"] = "depth"
    # How often a standby listener tries to take the leader's lock (its takeover time).
    listener_standby_poll_seconds: float = Field(default=2.0, gt=0)
    listener_max_lag_blocks: int = Field(default=20, ge=0)  # beyond the confirmation depth
    log_json: bool = True

    # --- API: sign-in (EIP-4361), tokens, roles, limits, browsers ---------------------------
    # The dapp's origin as wallets show it in the Sign-In with Ethereum message.
    siwe_domain: str = "localhost:8000"
    siwe_uri: str = "http://localhost:8000"
    siwe_statement: str = "Sign in to Autopool. This signature costs nothing and moves no funds."
    siwe_nonce_ttl_seconds: int = Field(default=300, ge=30, le=3600)
    siwe_clock_skew_seconds: int = Field(default=120, ge=0, le=900)
    # HS256 secret for access tokens; empty means a random one per process (tokens then do not
    # survive a restart nor work across replicas: set it in production).
    jwt_secret: SecretStr = SecretStr("")
    access_token_seconds: int = Field(default=600, ge=30, le=86_400)
    refresh_token_seconds: int = Field(default=14 * 86_400, ge=60)
    session_max_seconds: int = Field(default=30 * 86_400, ge=60)  # absolute session lifetime
    refresh_reuse_grace_seconds: int = Field(default=5, ge=0, le=30)
    # Wallets (comma-separated, any case) holding each staff role; admins may grant more.
    admin_wallets: str = ""
    operator_wallets: str = ""
    auditor_wallets: str = ""
    cors_origins: str = ""  # comma-separated dapp origins
    # Rate limits (the `limits` library's notation), per client IP and per signed-in wallet.
    rate_limit_default: str = "600/minute"
    rate_limit_auth: str = "30/minute"
    rate_limit_admin: str = "120/minute"
    rate_limit_wallet: str = "300/minute"
    # Lease squatting: unpaid registration leases one client IP may hold at once.
    max_live_leases_per_ip: int = Field(default=5, ge=1)
    # Registrations one API process lets reach the database at once; the rest wait their turn
    # in the process, holding no connection (the lease lock lets one through at a time anyway).
    registration_concurrency: int = Field(default=4, ge=1)
    tree_max_depth: int = Field(default=6, ge=1, le=20)

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret and len(secret.encode()) < 32:
            raise ValueError("the JWT secret must be at least 32 bytes (RFC 7518 §3.2)")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
