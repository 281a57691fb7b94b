"""`regctl webhooks …`: signed POSTs to other systems when versions settle, jobs fail or aliases move."""

from __future__ import annotations

import click

from regctl.cli.app import cli, client_of
from regctl.cli.catalog import json_option
from regctl.cli.render import echo, emit_json, table
from regctl.registry.requests import WebhookRequest


@cli.group()
def webhooks() -> None:
    """Add, list and remove webhooks, and see their deliveries (admin).

    \b
    Events: version.ready, version.failed, alias.moved, job.failed, alias.requested, alias.approved,
    alias.rejected.
    Receivers check X-Regctl-Signature with regctl.webhook_signature.verify_signature.
    """


@webhooks.command("add")
@click.argument("url")
@click.option(
    "--events",
    required=True,
    help="Comma-separated: version.ready, version.failed, alias.moved, job.failed, alias.requested, "
    "alias.approved, alias.rejected.",
)
@click.option("--model", "model_pattern", help="Only models matching this name or glob (resnet*).")
@json_option
@click.pass_context
def webhooks_add(ctx: click.Context, url: str, events: str, model_pattern: str | None, as_json: bool) -> None:
    """Add a webhook and print its signing secret once; deliveries are signed with it."""
    made = client_of(ctx).add_webhook(WebhookRequest(url, events.split(","), model_pattern=model_pattern))
    if as_json:
        emit_json(made.to_json())
        return
    hook = made.webhook
    scope = f" for models {hook.model_pattern}" if hook.model_pattern else ""
    echo(
        f"added webhook {hook.id} ({', '.join(hook.events)}{scope}); its signing secret is shown only now:",
        err=True,
    )
    echo(made.secret)


@webhooks.command("list")
@click.option("--removed", is_flag=True, help="Include removed webhooks.")
@json_option
@click.pass_context
def webhooks_list(ctx: click.Context, removed: bool, as_json: bool) -> None:
    """List webhooks (never their secrets)."""
    found = client_of(ctx).webhooks(removed=removed)
    if as_json:
        emit_json([w.to_json() for w in found])
        return
    table(
        None,
        ("id", "url", "events", "models", "created", "by", "removed"),
        [
            (
                w.id,
                w.url,
                ",".join(w.events),
                w.model_pattern or "*",
                w.created_at,
                w.created_by,
                w.removed_at,
            )
            for w in found
        ],
    )


@webhooks.command("remove")
@click.argument("webhook_id", metavar="ID", type=click.IntRange(min=1))
@click.pass_context
def webhooks_remove(ctx: click.Context, webhook_id: int) -> None:
    """Remove a webhook: no new deliveries, its unsent ones fail; its deliveries stay listed."""
    info = client_of(ctx).remove_webhook(webhook_id)
    echo(f"removed webhook {info.id} ({info.url})")


@webhooks.command("deliveries")
@click.argument("webhook_id", metavar="ID", type=click.IntRange(min=1))
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True)
@json_option
@click.pass_context
def webhooks_deliveries(ctx: click.Context, webhook_id: int, limit: int, as_json: bool) -> None:
    """Show a webhook's newest deliveries: state, attempts, the last status code and error."""
    found = client_of(ctx).webhook_deliveries(webhook_id, limit=limit)
    if as_json:
        emit_json([d.to_json() for d in found])
        return
    table(
        None,
        ("id", "event", "ref", "state", "tries", "status", "ms", "error", "next try"),
        [
            (
                d.id,
                d.event,
                f"{d.model}:{d.version}" if d.version is not None else d.model,
                d.state,
                d.attempts,
                d.last_status,
                d.history[-1].duration_ms if d.history else None,
                d.last_error,
                d.next_attempt_at,
            )
            for d in found
        ],
    )


@webhooks.command("redeliver")
@click.argument("delivery_id", metavar="DELIVERY_ID", type=click.IntRange(min=1))
@click.pass_context
def webhooks_redeliver(ctx: click.Context, delivery_id: int) -> None:
    """Send a delivery again now (without a broker, before this command exits; at most 10 s)."""
    info = client_of(ctx).redeliver(delivery_id)
    echo(f"delivery {info.id} ({info.event}) is due again now; attempt {info.attempts + 1} follows")
