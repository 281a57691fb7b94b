"""`regctl tokens …`, `regctl audit`, `regctl login`, `regctl logout` and `regctl whoami`."""

from __future__ import annotations

import sys

import click

from regctl.cli.app import cli, client_of
from regctl.cli.catalog import json_option
from regctl.cli.render import echo, emit_json, table
from regctl.login import Login, check_url, config_path, forget_login, save_login
from regctl.registry.access import ROLE_RANK
from regctl.registry.requests import TokenRequest


@cli.group()
def tokens() -> None:
    """Create, list and revoke API tokens (admin). Run on the server host, 'tokens create' needs no token."""


@tokens.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(list(ROLE_RANK)), required=True)
@click.option(
    "--model", "model_pattern", help="Limit the token to models matching this name or glob (resnet*)."
)
@click.option("--expires", help="Lifetime: 12h, 90d, 2w or never [default: never].")
@json_option
@click.pass_context
def tokens_create(
    ctx: click.Context, name: str, role: str, model_pattern: str | None, expires: str | None, as_json: bool
) -> None:
    """Create a token and print it once; only its hash is kept."""
    made = client_of(ctx).create_token(TokenRequest(name, role, model_pattern=model_pattern, expires=expires))
    if as_json:
        emit_json(made.to_json())
        return
    scope = f" for models {made.token.model_pattern}" if made.token.model_pattern else ""
    until = f", expires {made.token.expires_at:%Y-%m-%d %H:%M} UTC" if made.token.expires_at else ""
    echo(f"created {role} token {name!r}{scope}{until}; it is shown only now:", err=True)
    echo(made.secret)


@tokens.command("list")
@json_option
@click.pass_context
def tokens_list(ctx: click.Context, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    found = client_of(ctx).tokens()
    if as_json:
        emit_json([t.to_json() for t in found])
        return
    table(
        None,
        ("name", "role", "models", "created", "by", "expires", "revoked", "last used"),
        [
            (
                t.name,
                t.role,
                t.model_pattern or "*",
                t.created_at,
                t.created_by,
                t.expires_at,
                t.revoked_at,
                t.last_used_at,
            )
            for t in found
        ],
    )


@tokens.command("revoke")
@click.argument("name")
@click.pass_context
def tokens_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a token; the server refuses it from the next request on."""
    info = client_of(ctx).revoke_token(name)
    echo(f"revoked token {info.name!r}")


@cli.command()
@click.option("--model", help="Only changes to this model.")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=100, show_default=True)
@json_option
@click.pass_context
def audit(ctx: click.Context, model: str | None, limit: int, as_json: bool) -> None:
    """Show the newest changes: who (token or user), what, when and from which address (admin)."""
    entries = client_of(ctx).audit(model=model, limit=limit)
    if as_json:
        emit_json([e.to_json() for e in entries])
        return
    table(
        None,
        ("at", "who", "action", "target", "from", "detail"),
        [(e.at, e.actor, e.action, e.target, e.address, _detail(e.detail)) for e in entries],
    )


def _detail(detail: dict | None) -> str | None:
    if not detail:
        return None
    return ", ".join(f"{k}={v}" for k, v in detail.items() if v is not None) or None


@cli.command()
@click.argument("url")
@click.option("--token-stdin", is_flag=True, help="Read the token from stdin instead of prompting.")
@click.pass_context
def login(ctx: click.Context, url: str, token_stdin: bool) -> None:
    """Save a server URL and token (0600) so every command goes through that server."""
    from regctl.remote import Client  # httpx: 60–90 ms, paid only by the commands that talk to a server

    url = check_url(url)
    token = sys.stdin.readline() if token_stdin else click.prompt("token", hide_input=True)
    token = token.strip()
    with Client(url, token) as client:
        who = client.whoami()
    path = save_login(Login(url, token))
    echo(f"logged in to {url} as {who.name} ({who.role}); saved to {path}")


@cli.command()
def logout() -> None:
    """Forget the saved server URL and token."""
    if forget_login():
        echo(f"removed {config_path()}")
    else:
        echo("not logged in")


@cli.command()
@json_option
@click.pass_context
def whoami(ctx: click.Context, as_json: bool) -> None:
    """Show who commands act as: a token's name and role, or the local user (direct mode)."""
    client = client_of(ctx)
    who = client.whoami()
    if as_json:
        emit_json({**who.to_json(), "mode": client.mode})
        return
    scope = f", models {who.model_pattern}" if who.model_pattern else ""
    where = f" at {client.url}" if client.mode == "remote" else " (direct)"
    echo(f"{who.name}: {who.role}{scope}{where}")
