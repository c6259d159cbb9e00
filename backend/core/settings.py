"""Settings of the API, the listener and the settlement worker (one class, env prefix AUTOPOOL_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUTOPOOL_", env_file=".env", extra="ignore")

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/autopool"
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
    # Signer service (issue 5); the backend never holds the backend-signer key.
    signer_url: str = "http://127.0.0.1:8701"
    signer_token: str = ""
    # The settlement sender only pays gas; it cannot move pool funds without a signed batch.
    settlement_sender_key: str = ""
    listener_poll_seconds: float = 1.0
    listener_batch_blocks: int = 2_000
    log_json: bool = True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
