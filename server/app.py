"""The FastAPI application: routers under /api/v1, JSON errors, the job-event hub and the dispatcher its
requests hand jobs to (on the embedded default, the server's own runner thread).

The API's documentation (/api/v1/docs) is Swagger UI served from the installed `fastapi-offline`
package, not a CDN, so it works offline; its start-up script is a file of ours (static/docs.js), so the
page sends the same Content-Security-Policy and frame headers as the other pages.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import anyio.to_thread
import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from regctl.registry.db import ensure_schema
from regctl.registry.ops.owned import UPLOAD_PREFIX
from regctl.registry.settings import Settings
from regctl.server import (
    admin_api,
    artifacts_api,
    catalog_api,
    jobs_api,
    lifecycle_api,
    limits_api,
    pages,
    promotion_api,
    provenance_api,
    register_api,
    webhooks_api,
)
from regctl.server.auth import TokenCache
from regctl.server.errors import error_responses, install_error_handlers
from regctl.server.events import JobHub
from regctl.server.metrics import install_metrics
from regctl.server.responses import API_PREFIX as PREFIX
from regctl.server.throttle import Throttle, ThrottleMiddleware
from regctl.server.verified import SmallBlobs, VerifiedBlobs
from regctl.worker.dispatch import serving
from regctl.worker.supervisor.scratch import sweep_abandoned

log = logging.getLogger(__name__)

DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>regctl API</title>
<link rel="stylesheet" href="/docs-assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{PREFIX}/openapi.json"></div>
<script src="/docs-assets/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""


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
    """The API for these settings; with `run_jobs`, the server runs jobs itself when there is no broker.

    `threads` bounds the blocking work (database, store) done at once; the pool should match it.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        ensure_schema(settings.database_url)
        for left in sweep_abandoned(settings.work_dir, UPLOAD_PREFIX):  # a killed server's uploads
            log.warning("removed %s: an upload a server stopped receiving", left)
        hub = app.state.hub = JobHub(settings)
        hub.start()
        with serving(settings, run_jobs=run_jobs):
            try:
                yield
            finally:
                await hub.stop()

    app = FastAPI(
        title="regctl",
        version=_version(),
        summary="A registry of PyTorch models converted to TorchScript and proven against eager PyTorch.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,  # FastAPI's own page loads Swagger UI from a CDN with an inline script: see docs()
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = TokenCache()
    install_metrics(app, settings, PREFIX)
    app.state.verified = VerifiedBlobs()
    app.state.small_blobs = SmallBlobs()
    app.state.throttle = Throttle(settings)
    app.add_middleware(ThrottleMiddleware, throttle=app.state.throttle)  # outermost: before any work
    install_error_handlers(app)
    api = APIRouter(prefix=PREFIX, responses=error_responses(429))  # any route (server/throttle.py)

    @api.get("/health", response_model=Health, tags=["health"])
    def health() -> Health:
        """Liveness: no token needed, no database touched."""
        return Health(status="ok", version=_version())

    @api.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI for this API, every file from this server, with the pages' security headers."""
        return HTMLResponse(DOCS_HTML, headers=pages.HEADERS)

    for module in (
        catalog_api,
        register_api,
        jobs_api,
        artifacts_api,
        provenance_api,
        promotion_api,
        lifecycle_api,
        admin_api,
    ):
        api.include_router(module.router)
    api.include_router(webhooks_api.router)
    api.include_router(limits_api.router)
    app.include_router(api)
    app.include_router(pages.router)
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/static", StaticFiles(directory=pages.HERE / "static"), name="static")
    return app
