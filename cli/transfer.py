"""`regctl export` and `regctl import`: move models between registries as one verified archive."""

from __future__ import annotations

from pathlib import Path

import click

from regctl.cli.app import cli, settings_of
from regctl.cli.catalog import json_option
from regctl.cli.render import echo, emit_json
from regctl.destination import check_destination
from regctl.registry.errors.files import ArchiveNotFile
from regctl.registry.refs import parse_ref
from regctl.registry.text import human_size


@cli.command("export")
@click.argument("ref", metavar="NAME[:VERSION|@ALIAS]")
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(path_type=Path), help="The archive to write."
)
@click.option("--create-dirs", is_flag=True, help="Create the output file's directory if it is missing.")
@json_option
@click.pass_context
def export(ctx: click.Context, ref: str, output: Path, create_dirs: bool, as_json: bool) -> None:
    """Write NAME's versions (or one version) with artifacts, reports, aliases and tags to one archive.

    Runs against the database and the store directly, like 'regctl doctor'. Every blob is verified
    against its sha256 as it is written; the archive replaces OUTPUT only once complete.
    """
    from regctl.registry.ops.export import export_models  # SQLAlchemy: never at the CLI's start

    dest = check_destination(output, create_dirs=create_dirs)
    manifest = export_models(settings_of(ctx), parse_ref(ref), dest)
    versions = [f"{m['name']}:{v['version']}" for m in manifest["models"] for v in m["versions"]]
    if as_json:
        emit_json({"output": str(dest), "versions": versions, "blobs": len(manifest["blobs"])})
        return
    size = sum(manifest["blobs"].values())
    echo(f"exported {', '.join(versions)} ({len(manifest['blobs'])} blobs, {human_size(size)}) to {dest}")


@cli.command("import")
@click.argument("archive", type=click.Path(path_type=Path))
@json_option
@click.pass_context
def import_(ctx: click.Context, archive: Path, as_json: bool) -> None:
    """Load an archive made by 'regctl export' into this registry, verifying every blob's sha256.

    Version numbers are kept where this registry never handed them out, else mapped to the next
    free ones (and said so); aliases are set where this registry has none of that name.
    """
    from regctl.registry.ops.importer import import_archive  # SQLAlchemy: never at the CLI's start

    if not archive.is_file():
        raise ArchiveNotFile(archive=archive)
    done = import_archive(settings_of(ctx), archive)
    if as_json:
        emit_json(done.to_json())
        return
    for before, after in done.versions.items():
        note = "" if before == after else f" ({before.rsplit(':', 1)[1]} is taken here)"
        echo(f"imported {before} as {after}{note}")
    for alias, what in done.aliases.items():
        echo(f"{alias}: {what}")
    echo(f"{done.blobs_added} new blob(s), {human_size(done.bytes_added)}", err=True)
