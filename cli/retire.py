"""`regctl versions tag|archive|unarchive|delete` and `regctl gc`: a version's life after registration."""

from __future__ import annotations

import click

from regctl.cli.app import cli, client_of
from regctl.cli.catalog import json_option, versions
from regctl.cli.render import echo, emit_json
from regctl.registry.errors import InvalidInput
from regctl.registry.lineage import parse_tags
from regctl.registry.text import human_size


@versions.command("tag")
@click.argument("ref", metavar="REF")
@click.argument("pairs", nargs=-1, metavar="KEY=VALUE...")
@click.option("--remove", "remove", multiple=True, metavar="KEY", help="Remove this tag (repeatable).")
@json_option
@click.pass_context
def versions_tag(
    ctx: click.Context, ref: str, pairs: tuple[str, ...], remove: tuple[str, ...], as_json: bool
) -> None:
    """Set (KEY=VALUE) and remove (--remove KEY) tags on the version REF points at."""
    if not pairs and not remove:
        raise InvalidInput("nothing to change; give KEY=VALUE pairs to set and/or --remove KEY")
    tags = client_of(ctx).tag(ref, parse_tags(pairs), remove)
    if as_json:
        emit_json(tags)
        return
    echo(", ".join(f"{k}={v}" for k, v in tags.items()) or "(no tags)")


@versions.command("archive")
@click.argument("ref", metavar="NAME:VERSION")
@click.pass_context
def versions_archive(ctx: click.Context, ref: str) -> None:
    """Hide NAME:VERSION from NAME resolution and lists; it stays fetchable as NAME:VERSION."""
    echo(f"archived {client_of(ctx).archive(ref, True)}")


@versions.command("unarchive")
@click.argument("ref", metavar="NAME:VERSION")
@click.pass_context
def versions_unarchive(ctx: click.Context, ref: str) -> None:
    """Show an archived version again."""
    echo(f"unarchived {client_of(ctx).archive(ref, False)}")


@versions.command("delete")
@click.argument("ref", metavar="NAME:VERSION")
@click.option(
    "--force", is_flag=True, help="Also remove the aliases that point at it (recorded in their history)."
)
@json_option
@click.pass_context
def versions_delete(ctx: click.Context, ref: str, force: bool, as_json: bool) -> None:
    """Delete NAME:VERSION's rows (admin); 'regctl gc' reclaims its blobs; its number is never reused."""
    removed = client_of(ctx).delete_version(ref, force=force)
    if as_json:
        emit_json(removed)
        return
    moved = f"; removed {', '.join('@' + a for a in removed['aliases'])}" if removed["aliases"] else ""
    echo(f"deleted {removed['ref']}{moved}; 'regctl gc' reclaims its {len(removed['blobs'])} blob(s)")


@cli.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@json_option
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Delete the blobs no version names, older than an hour (admin); recorded in the audit trail."""
    done = client_of(ctx).gc(dry_run=dry_run)
    if as_json:
        emit_json(done)
        return
    for item in done["deleted"]:
        echo(item)
    verb = "would delete" if dry_run else "deleted"
    echo(
        f"{verb} {len(done['deleted'])} blob(s), {human_size(done['bytes'])}; kept {done['kept_recent']} "
        "younger than an hour",
        err=True,
    )
    aborted = done.get("aborted_uploads") or []  # a server from before 0.x answers without it
    for upload in aborted:
        echo(f"{'would abort' if dry_run else 'aborted'} incomplete upload {upload}", err=True)
