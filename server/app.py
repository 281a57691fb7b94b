"""The FastAPI application: routers under /api/v1, JSON errors, the job-event hub and, without a broker,
the in-process job runner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from regctl.registry.settings import Settings
from regctl.server import (
    admin_api,
    artifacts_api,
    catalog_api,
    jobs_api,
    lifecycle_api,
    pages,
    register_api,
    webhooks_api,
)
from regctl.server.auth import TokenCache
from regctl.server.errors import install_error_handlers
from regctl.server.events import JobHub
from regctl.server.metrics import install_metrics
from regctl.server.verified import VerifiedBlobs

PREFIX = "/api/v1"


class Health(BaseModel):
    """The server answers."""

    status: str
    version: str


def _version() -> str:
    try:
        return version("regctl")
    except PackageNotFoundError:
        return "unknown"


def create_app(settings: Settings, *, run_jobs: bool = True, threads: int = 40) -> FastAPI:
    """The API for these settings; `run_jobs` starts the in-process runner when there is no broker.

    `threads` bounds the blocking work (database, store) done at once; the pool should match it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        from regctl.registry.db import ensure_schema

        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        ensure_schema(settings.database_url)
        hub = app.state.hub = JobHub(settings)
        hub.start()
        runner = None
        if run_jobs and settings.embedded:
            from regctl.service.runner import LocalRunner

            runner = LocalRunner(settings).start()
        try:
            yield
        finally:
            await hub.stop()
            if runner is not None:
                runner.stop()

    app = FastAPI(
        title="regctl",
        version=_version(),
        summary="A registry of PyTorch models converted to TorchScript and proven against eager PyTorch.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = TokenCache()
    install_metrics(app, settings, PREFIX)
    app.state.verified = VerifiedBlobs()
    install_error_handlers(app)
    api = APIRouter(prefix=PREFIX)

    @api.get("/health", response_model=Health, tags=["health"])
    def health() -> Health:
        """Liveness: no token needed, no database touched."""
        return Health(status="ok", version=_version())

    for module in (catalog_api, register_api, jobs_api, artifacts_api, lifecycle_api, admin_api):
        api.include_router(module.router)
    api.include_router(webhooks_api.router)
    app.include_router(api)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.HERE / "static"), name="static")
    return app
