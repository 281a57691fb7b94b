"""`regctl serve`: the HTTP API for a team, on the registry's database and store."""

from __future__ import annotations

import click

from regctl.cli.app import cli, settings_of


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8000, show_default=True)
@click.option(
    "--forwarded-allow-ips",
    default="",
    help="Proxies whose X-Forwarded-For / X-Forwarded-Proto are trusted (a TLS-terminating proxy), "
    "comma-separated; none by default, so no client can write its own address into the audit trail.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1, max=512),
    default=40,
    show_default=True,
    help="Threads serving blocking work (database, store); the database pool matches it.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.pass_context
def serve(
    ctx: click.Context, host: str, port: int, forwarded_allow_ips: str, threads: int, log_level: str
) -> None:
    """Serve the registry over HTTP under /api/v1 (OpenAPI at /api/v1/openapi.json).

    Clients need a URL and a token ('regctl tokens create'), never the database or store credentials.
    Without a broker, the server runs queued jobs itself, in sandboxed child processes.
    """
    # The server, uvicorn and the database layer (700–900 ms together) load for `serve` alone.
    import uvicorn

    from regctl.registry.db import ensure_schema
    from regctl.registry.engines import configure_pool
    from regctl.server.app import create_app
    from regctl.server.protocol import with_header_timeout

    settings = settings_of(ctx)
    configure_pool(threads)
    ensure_schema(settings.database_url)
    app = create_app(settings, threads=threads)
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=bool(forwarded_allow_ips.strip()),
        forwarded_allow_ips=forwarded_allow_ips or None,
        log_level=log_level,
        access_log=log_level == "debug",
        timeout_graceful_shutdown=10,
        http=with_header_timeout(settings.header_timeout),  # a slowloris client is cut off
    )
