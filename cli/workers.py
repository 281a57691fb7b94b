"""`regctl worker`, `regctl beat` and `regctl reconcile`: running the distributed service."""

from __future__ import annotations

import os

import click

from regctl.cli.app import cli, settings_of
from regctl.cli.catalog import json_option
from regctl.cli.render import echo, emit_json
from regctl.cli.sandbox import checked_protections
from regctl.worker.dispatch import Dispatcher, require_broker
from regctl.worker.queues import WEBHOOK_QUEUE, parse_queues


def _broker(ctx: click.Context) -> Dispatcher:
    """The broker's dispatcher for the command's settings (InvalidInput when they name no broker)."""
    return require_broker(settings_of(ctx))


@cli.command()
@click.option(
    "--queues",
    default="cpu",
    show_default=True,
    help="Comma-separated queues to consume: cpu, gpu, webhooks (see --webhooks).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    help="Pool processes [default: CPU cores; on gpu, one per visible GPU].",
)
@click.option(
    "--loglevel",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option("--hostname", help="Celery node name [default: regctl-QUEUES@HOST].")
@click.option(
    "--webhooks/--no-webhooks",
    default=True,
    show_default=True,
    help="Also deliver webhooks (the webhooks queue); a POST holds a pool process for at most 10 s.",
)
@click.pass_context
def worker(
    ctx: click.Context,
    queues: str,
    concurrency: int | None,
    loglevel: str,
    hostname: str | None,
    webhooks: bool,
) -> None:
    """Start a worker (prefork pool) that converts and validates jobs from the given queues.

    A gpu worker refuses to start without CUDA unless REGCTL_GPU_ON_CPU=1 maps the gpu queue onto
    the CPU (for tests and CPU-only development).
    """
    # Here, not at the top: the database layer, Celery and the sandbox probe stay out of the CLI's
    # start-up (tests/test_cli_imports.py), and so does subprocess (runtime: 2 of its 38 ms, measured).
    from regctl.registry.db import ensure_schema
    from regctl.registry.provenance.signing_keys import signing_line
    from regctl.worker.dispatch.publishing import app_for
    from regctl.worker.runtime import CONCURRENCY_ENV, GPUS_ENV, QUEUES_ENV, plan_gpu_worker
    from regctl.worker.supervisor.extras import format_lines
    from regctl.worker.supervisor.probe import describe

    broker = _broker(ctx)
    settings = broker.settings
    named = parse_queues(queues)
    names = (*named, WEBHOOK_QUEUE) if webhooks and WEBHOOK_QUEUE not in named else named
    processes, gpus = plan_gpu_worker(names, concurrency, settings.gpu_on_cpu)
    ensure_schema(settings.database_url)
    broker.preflight()
    for line in [*describe(checked_protections(settings)), *format_lines(), signing_line(settings)]:
        echo(line, err=True)
    # Children rebuild their settings from the environment; make it say exactly what ours say.
    os.environ.update(settings.to_env())
    os.environ.update(
        {QUEUES_ENV: ",".join(names), CONCURRENCY_ENV: str(processes), GPUS_ENV: ",".join(gpus)}
    )
    app_for(settings).worker_main(
        [
            "worker",
            "--queues",
            ",".join(names),
            "--concurrency",
            str(processes),
            "--pool",
            "prefork",
            "--loglevel",
            loglevel.upper(),
            "--hostname",
            hostname or f"regctl-{'-'.join(named)}@%h",
            "--without-mingle",
            "--without-gossip",
            "--task-events",
        ]
    )


@cli.command()
@click.option(
    "--loglevel",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.pass_context
def beat(ctx: click.Context, loglevel: str) -> None:
    """Run Celery beat, which schedules the reconciler every REGCTL_RECONCILE_INTERVAL seconds."""
    from regctl.worker.dispatch.publishing import app_for  # Celery: not at the CLI's start-up

    broker = _broker(ctx)
    broker.preflight()
    settings = broker.settings
    os.environ.update(settings.to_env())
    settings.home.mkdir(parents=True, exist_ok=True)
    app_for(settings).start(
        ["beat", "--loglevel", loglevel.upper(), "--schedule", str(settings.home / "celerybeat-schedule")]
    )


@cli.command()
@click.option(
    "--queued-older-than",
    type=float,
    help="Re-send queued jobs published longer ago than this many seconds [default: REGCTL_QUEUED_TIMEOUT].",
)
@json_option
@click.pass_context
def reconcile(ctx: click.Context, queued_older_than: float | None, as_json: bool) -> None:
    """Run one reconciler pass now: re-queue jobs whose worker stopped, re-send jobs the broker lost."""
    from regctl.worker.reconciler import reconcile as run_reconcile  # Celery: not at the CLI's start-up

    broker = _broker(ctx)
    broker.preflight()
    report = run_reconcile(broker.settings, queued_older_than)
    if as_json:
        emit_json(report.to_json())
        return
    echo(
        f"re-queued {len(report.requeued)} stale, failed {len(report.failed)} past the attempt cap, "
        f"re-sent {len(report.republished)} queued job(s), handed on {len(report.webhooks)} due "
        "webhook deliveries"
    )
