"""The API process: FastAPI app factory and `autopool-api` entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from web3 import AsyncHTTPProvider, AsyncWeb3

from backend.chain.contract import AutoPoolABI
from backend.chain.signer_client import SignerClient
from backend.core.context import AppContext, PayloadSigner
from backend.core.db import make_engine, make_sessionmaker, unit_of_work
from backend.core.errors import install_problem_handlers
from backend.core.logging import configure_logging
from backend.core.plans import current_plan, publish_plan
from backend.core.settings import Settings, get_settings
from backend.treasury.router import router as treasury_router
from backend.users.router import router as users_router


def create_app(settings: Settings | None = None, signer: PayloadSigner | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        sessions = make_sessionmaker(engine)
        client = signer or SignerClient(settings.signer_url, settings.signer_token)
        plan = current_plan(settings.plan_path)
        async with unit_of_work(sessions) as session:
            plan_hash = await publish_plan(session, plan)
        app.state.ctx = AppContext(
            settings=settings,
            sessions=sessions,
            signer=client,
            abi=AutoPoolABI(settings.contract_address),
            plan=plan,
            plan_hash=plan_hash,
            w3=AsyncWeb3(AsyncHTTPProvider(settings.rpc_url)),
        )
        try:
            yield
        finally:
            if isinstance(client, SignerClient) and signer is None:
                await client.aclose()
            await engine.dispose()

    configure_logging(json=settings.log_json)
    app = FastAPI(title="Autopool API", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app)
    app.include_router(users_router)
    app.include_router(treasury_router)

    @app.get("/health", tags=["monitoring"])
    async def health() -> dict[str, str]:
        async with unit_of_work(app.state.ctx.sessions) as session:
            await session.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/metrics", tags=["monitoring"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def run() -> None:
    import uvicorn

    settings = get_settings()
    uvicorn.run(create_app(settings), host="127.0.0.1", port=8000)
