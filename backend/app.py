"""The API process: `create_app` (routers, middleware, error handlers) and `autopool-api`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backend.admin.router import router as admin_router
from backend.auth.router import router as auth_router
from backend.core.db import unit_of_work
from backend.core.deps import limit_by_ip
from backend.core.errors import PROBLEM_RESPONSES, declare_problem_json, install_problem_handlers
from backend.core.http import RequestContext
from backend.core.logging import configure_logging
from backend.core.settings import Settings, get_settings
from backend.core.wiring import PayloadSigner, build_resources
from backend.live.router import router as live_router
from backend.monitoring.router import router as monitoring_router
from backend.payouts.router import router as payouts_router
from backend.plan_versions import service as plan_versions
from backend.plan_versions.router import router as plan_router
from backend.pool.router import router as pool_router
from backend.rewards.router import router as rewards_router
from backend.treasury.router import router as treasury_router
from backend.users.router import router as users_router

# A request's route is found by trying each router's routes in this order: the most requested
# first (probes, the dapp's reads), the admin's last.
ROUTERS = (
    monitoring_router,
    users_router,
    auth_router,
    pool_router,
    plan_router,
    rewards_router,
    payouts_router,
    treasury_router,
    admin_router,
    live_router,
)

# The web pages' build (`make compile`: web/build.mjs), one folder per page.
WEB_DIST = Path(__file__).resolve().parents[1] / "web" / "dist"
PAGES = ("admin", "app")


def mount_pages(app: FastAPI, root: Path = WEB_DIST) -> None:
    """The admin console at /admin and the reference dapp page at /app, served from their
    build on the API's own origin (the pages call the API and its WebSocket there). A page
    that is not built answers 404 with the command that builds it."""
    for page in PAGES:
        folder = root / page
        if (folder / "index.html").is_file():
            app.mount(f"/{page}", StaticFiles(directory=folder, html=True), name=f"page-{page}")
        else:

            async def not_built() -> PlainTextResponse:
                return PlainTextResponse("the web pages are not built: run `make compile`", 404)

            app.add_api_route(f"/{page}", not_built, include_in_schema=False)


def create_app(settings: Settings | None = None, signer: PayloadSigner | None = None) -> FastAPI:
    """The API. `signer` replaces the signer service's client (tests); by default the app
    talks to the signer service at `settings.signer_url`."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Pooled connections are checked without a round trip (backend.core.db.make_engine).
        resources = build_resources(settings, signer=signer, liveness="closed")
        try:
            async with unit_of_work(resources.sessions) as session:
                await plan_versions.publish(session, resources.plan)
            app.state.resources = resources
            # What start-up allocated (modules, models, ABI tables) is long-lived: out of the
            # cyclic collector's reach, a full collection scans only what requests allocated.
            gc.freeze()
            yield
        finally:
            await resources.aclose()

    configure_logging(json=settings.log_json)
    app = FastAPI(
        title="Autopool API",
        version="0.2.0",
        description="Settlement backend of the Autopool contract. Amounts are wei, as decimal "
        "strings. Errors are RFC 9457 problem documents with a stable `type`.",
        lifespan=lifespan,
        dependencies=[Depends(limit_by_ip)],
        responses=PROBLEM_RESPONSES,
    )
    install_problem_handlers(app)
    fastapi_openapi = app.openapi
    app.openapi = lambda: declare_problem_json(fastapi_openapi())  # type: ignore[method-assign]
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/metrics", tags=["monitoring"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    mount_pages(app)

    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContext)
    return app


def run() -> None:
    import uvicorn

    settings = get_settings()
    uvicorn.run(create_app(settings), host="127.0.0.1", port=8000)
