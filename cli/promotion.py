"""`regctl alias request|approve|reject|requests`: a protected alias moved by two people."""

from __future__ import annotations

import click

from regctl.cli.app import client_of
from regctl.cli.catalog import alias, json_option
from regctl.cli.render import echo, emit_json, table
from regctl.registry.entities import PromotionRequestInfo
from regctl.registry.refs import parse_ref

note_option = click.option("--note", metavar="TEXT", help="Why you decided so (kept with the request).")


@alias.command("request")
@click.argument("target", metavar="NAME@ALIAS")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--reason", required=True, metavar="TEXT", help="What changes, and why now.")
@click.option(
    "--force",
    is_flag=True,
    help="Ask to override the promotion policy (admins only); the approver sees it, the audit records it.",
)
@json_option
@click.pass_context
def alias_request(
    ctx: click.Context, target: str, version: int, reason: str, force: bool, as_json: bool
) -> None:
    """Ask for a protected alias (prod) to move to VERSION; a different admin approves it.

    With REGCTL_PROMOTION_APPROVALS=2 this is the only way a protected alias moves. An alias has one
    pending request at a time; it expires after REGCTL_PROMOTION_REQUEST_TTL_S (3 days).
    """
    filed = client_of(ctx).request_alias(target, version, reason, force=force)
    if as_json:
        emit_json(filed.to_json())
        return
    echo(
        f"request {filed.id}: {filed.target} -> {filed.version}, pending until "
        f"{filed.expires_at:%Y-%m-%d %H:%M UTC}; another admin runs 'regctl alias approve {filed.id}'"
    )


@alias.command("approve")
@click.argument("request_id", metavar="REQUEST", type=click.IntRange(min=1))
@note_option
@json_option
@click.pass_context
def alias_approve(ctx: click.Context, request_id: int, note: str | None, as_json: bool) -> None:
    """Approve a pending request and move its alias (an admin who did not file it)."""
    approved = client_of(ctx).approve_request(request_id, note)
    if as_json:
        emit_json(approved.to_json())
        return
    was = f" (was {approved.previous})" if approved.previous else ""
    echo(f"approved request {approved.id}: {approved.target} -> {approved.version}{was}")


@alias.command("reject")
@click.argument("request_id", metavar="REQUEST", type=click.IntRange(min=1))
@note_option
@json_option
@click.pass_context
def alias_reject(ctx: click.Context, request_id: int, note: str | None, as_json: bool) -> None:
    """Reject a pending request (an admin, or its requester withdrawing it); the alias stays."""
    rejected = client_of(ctx).reject_request(request_id, note)
    if as_json:
        emit_json(rejected.to_json())
        return
    echo(f"rejected request {rejected.id}: {rejected.target} stays where it is")


@alias.command("requests")
@click.argument("name", required=False)
@click.option("--all", "everything", is_flag=True, help="Decided and expired requests too.")
@json_option
@click.pass_context
def alias_requests(ctx: click.Context, name: str | None, everything: bool, as_json: bool) -> None:
    """List pending promotion requests (of NAME, or of every model you may see), newest first."""
    model = parse_ref(name).name if name else None
    found = client_of(ctx).alias_requests(model, pending_only=not everything)
    if as_json:
        emit_json([r.to_json() for r in found])
        return
    table(
        None,
        ("id", "alias", "to", "state", "by", "reason", "expires", "decided by"),
        [_row(r) for r in found],
    )


def _row(request: PromotionRequestInfo) -> tuple[object, ...]:
    forced = " (forced)" if request.force else ""
    return (
        request.id,
        request.target,
        f"{request.version}{forced}",
        request.state,
        request.requested_by,
        request.reason,
        f"{request.expires_at:%Y-%m-%d %H:%M}",
        request.decided_by,
    )
