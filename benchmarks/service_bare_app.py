"""The baseline server of benchmarks/service.py: a bare FastAPI endpoint doing the one query behind a version.

GET /api/v1/versions/NAME:VERSION selects the model_versions row joined to its model by name and version
with SQLAlchemy and returns it as JSON; GET /api/v1/health answers without the database. No token check,
no service layer, no response model: what FastAPI, uvicorn and one PostgreSQL round trip cost on their own.
It is served the way `regctl serve` serves (cli/serve.py): one uvicorn process with the same options, the
same thread limit for blocking endpoints, and a connection pool of the same size.

    python benchmarks/service_bare_app.py --database-url postgresql+psycopg://… --port 8001 [--threads 40]
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from sqlalchemy import create_engine, text

QUERY = text(
    "SELECT m.name AS model, v.* FROM model_versions v JOIN models m ON m.id = v.model_id "
    "WHERE m.name = :name AND v.version = :version"
)


def create_app(database_url: str, threads: int) -> FastAPI:
    """The bare app on `database_url`, with `threads` worker threads and as many pooled connections."""
    # The same pool rule as registry.db.configure_pool, which `regctl serve --threads` applies.
    engine = create_engine(database_url, pool_size=threads, max_overflow=max(10, threads // 2))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield
        engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/api/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/versions/{ref}")
    def show_version(ref: str) -> dict[str, Any]:
        name, _, version = ref.partition(":")
        if not version.isdigit():
            raise HTTPException(404, "expected NAME:VERSION")
        with engine.connect() as conn:
            row = conn.execute(QUERY, {"name": name, "version": int(version)}).mappings().first()
        if row is None:
            raise HTTPException(404, f"{ref} not found")
        return dict(row)

    return app


def main() -> None:
    """Serve the bare app until SIGTERM, with the uvicorn options `regctl serve` passes."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=40)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.database_url, args.threads),
        host=args.host,
        port=args.port,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
