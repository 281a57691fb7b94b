"""`regctl submit` and `regctl jobs …`: queueing, listing, watching, cancelling and retrying jobs."""

from __future__ import annotations

import click

from regctl.cli.app import cli, client_of
from regctl.cli.catalog import json_option
from regctl.cli.follow import start_and_follow, watch
from regctl.cli.render import echo, emit_json, fields, table
from regctl.registry.requests import SubmitRequest
from regctl.registry.timeline import timeline


@cli.command()
@click.argument("ref", metavar="NAME:VERSION")
@click.option(
    "--job",
    "kind",
    type=click.Choice(["convert", "validate"]),
    required=True,
    help="convert: make the TorchScript artifact; validate: re-run the battery on the existing one.",
)
@click.option("--method", type=click.Choice(["auto", "trace", "script"]), help="Override the spec's method.")
@click.option(
    "--device", type=click.Choice(["cpu", "cuda"]), help="Override the spec's device (picks the queue)."
)
@click.option("--wait", is_flag=True, help="Follow the job and exit with its outcome (0 ok, 1 failed).")
@json_option
@click.pass_context
def submit(
    ctx: click.Context, ref: str, kind: str, method: str | None, device: str | None, wait: bool, as_json: bool
) -> None:
    """Queue a convert or validate job for an existing version."""
    client = client_of(ctx)
    job = client.submit(SubmitRequest(ref, kind, method=method, device=device))
    code = start_and_follow(client, [job], wait=wait, quiet=as_json)
    if as_json:
        emit_json(client.job(job.id).to_json())
    ctx.exit(code)


@cli.group()
def jobs() -> None:
    """List, inspect, follow, cancel and retry jobs."""


@jobs.command("list")
@click.option("--state", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("--model", help="Only jobs of this model.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@click.pass_context
def jobs_list(ctx: click.Context, state: str | None, model: str | None, limit: int, as_json: bool) -> None:
    """List the newest jobs first."""
    found = client_of(ctx).jobs(state=state, model=model, limit=limit)
    if as_json:
        emit_json([j.to_json() for j in found])
        return
    table(
        None,
        ("id", "version", "kind", "state", "queue", "attempts", "progress", "error"),
        [
            (
                j.id,
                f"{j.model}:{j.version}",
                j.kind,
                j.state,
                j.queue,
                f"{j.attempts}/{j.max_attempts}",
                j.progress,
                (j.error or "")[:80] or None,
            )
            for j in found
        ],
    )


@jobs.command("show")
@click.argument("job_id", type=int, metavar="ID")
@json_option
@click.pass_context
def jobs_show(ctx: click.Context, job_id: int, as_json: bool) -> None:
    """Show a job: state, attempts, worker, timings and error."""
    job = client_of(ctx).job(job_id)
    if as_json:
        emit_json(job.to_json())
        return
    fields(
        f"job {job.id}",
        [
            ("version", f"{job.model}:{job.version}"),
            ("kind", job.kind),
            ("state", job.state),
            ("queue", job.queue),
            ("method", job.method),
            ("attempts", f"{job.attempts}/{job.max_attempts}"),
            ("worker", job.worker),
            ("progress", job.progress),
            ("created", job.created_at),
            ("started", job.started_at),
            ("finished", job.finished_at),
            ("heartbeat", job.heartbeat_at),
            ("error", job.error),
            *[(f"  {entry['stage']}", _stage_time(entry)) for entry in timeline(job)],
        ],
    )


def _stage_time(entry: dict) -> str:
    """When a stage began, and how long it lasted (nothing for the final entry, '…' while it runs)."""
    began = entry["at"].strftime("%H:%M:%S")
    if entry["final"]:
        return began
    return f"{began}  {entry['seconds']:.1f}s" if entry["seconds"] is not None else f"{began}  …"


@jobs.command("watch")
@click.argument("job_id", type=int, metavar="ID")
@click.pass_context
def jobs_watch(ctx: click.Context, job_id: int) -> None:
    """Follow a job (and the validate job a convert leads to); exit 0 when it succeeds, 1 when it fails."""
    client = client_of(ctx)
    ctx.exit(watch(client, client.job(job_id)))


@jobs.command("cancel")
@click.argument("job_id", type=int, metavar="ID")
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: int) -> None:
    """Cancel a job: a queued one is skipped; a running one stops at its next stage boundary."""
    job = client_of(ctx).cancel(job_id)
    echo(f"job {job.id} {'cancelled' if job.state == 'cancelled' else 'will stop at its next stage'}")


@jobs.command("retry")
@click.argument("job_id", type=int, metavar="ID")
@click.option("--wait", is_flag=True, help="Follow the job and exit with its outcome.")
@click.pass_context
def jobs_retry(ctx: click.Context, job_id: int, wait: bool) -> None:
    """Queue a failed or cancelled job again as a new attempt."""
    client = client_of(ctx)
    ctx.exit(start_and_follow(client, [client.retry(job_id)], wait=wait))
